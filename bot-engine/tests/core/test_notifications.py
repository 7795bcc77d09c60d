"""What a finished signal or a triggered stop tells the user: the kind, the words, and the
dedupe key that makes a notice derived twice count once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from app.core.notifications import Notice, daily_summary_notice, protection_notice, signal_notice

ENTRY = {
    "entry_order": {"filled_quantity": "0.01500000", "avg_fill_price": "65065.00000000"},
    "stop_loss_order": {"stop_price": "64000.00000000"},
    "take_profit_order": {"stop_price": "68000.00000000"},
}


def _signal(status: str, result: dict[str, Any], *, reason: str | None = None,
            check: str | None = None, kind: str = "long_entry") -> Notice | None:  # fmt: skip
    return signal_notice("u1", "s1", kind, "BTCUSDT", status, reason, result, check)


def test_an_executed_entry_names_size_price_stop_and_target() -> None:
    notice = _signal("executed", ENTRY)
    assert notice == Notice(
        user_id="u1",
        type="trade_executed",
        title="Opened long BTCUSDT",
        message="0.015 BTCUSDT at 65065, stop 64000, target 68000",
        dedupe_key="signal:s1:executed",
        related_type="signal",
        related_id="s1",
    )


def test_an_entry_closed_at_once_says_why() -> None:
    reason = "stop_loss 64000 could not be placed (would trigger immediately); position closed"
    notice = _signal("executed", {"entry_order": ENTRY["entry_order"]}, reason=reason)
    assert notice is not None
    assert notice.message == f"0.015 BTCUSDT at 65065. {reason}"


def test_an_exit_tells_the_realised_pnl_with_its_sign() -> None:
    close = {"filled_quantity": "0.015", "avg_fill_price": "66000", "realized_pnl": "13.3155"}
    notice = _signal("executed", {"close_order": close}, kind="long_exit")
    assert notice is not None and notice.type == "position_closed"
    assert notice.title == "Closed long BTCUSDT"
    assert notice.message == "0.015 at 66000, realised PnL +13.32 USDT"
    loss = _signal("executed", {"close_order": {**close, "realized_pnl": "-2.5"}},
                   kind="short_exit")  # fmt: skip
    assert loss is not None and loss.title == "Closed short BTCUSDT"
    assert loss.message.endswith("realised PnL -2.50 USDT")


def test_rejections_tell_the_reason_and_the_daily_loss_limit_is_its_own_kind() -> None:
    plain = _signal("rejected", {}, reason="leverage 100 exceeds your maximum of 10",
                    check="max_leverage")  # fmt: skip
    assert plain is not None and plain.type == "signal_rejected"
    assert plain.message == "leverage 100 exceeds your maximum of 10"
    assert plain.dedupe_key == "signal:s1:rejected"
    limit = _signal("rejected", {}, reason="today's loss reached 5%", check="daily_loss")
    assert limit is not None and limit.type == "daily_loss_limit"
    assert limit.message == "New entries are refused until tomorrow (UTC). today's loss reached 5%"


def test_failures_are_told_and_skips_are_not() -> None:
    failed = _signal("failed", {}, reason="no active API key for binance")
    assert failed is not None and failed.type == "trade_failed"
    assert _signal("skipped", {}, reason="no open long position") is None


def test_a_triggered_stop_or_target_is_told_once_per_order() -> None:
    trade = {"id": "t1", "symbol": "ETHUSDT", "filled_quantity": Decimal("0.30000000"),
             "avg_fill_price": Decimal("3400.00000000"), "realized_pnl": Decimal("-30.1"),
             "client_order_id": "jtabcs"}  # fmt: skip
    stop = protection_notice("u1", trade, "s")
    assert (stop.type, stop.title) == ("stop_loss_hit", "Stop loss hit on ETHUSDT")
    assert stop.message == "0.3 ETHUSDT at 3400, realised PnL -30.10 USDT"
    assert stop.dedupe_key == "trade:jtabcs:filled" and stop.related_id == "t1"
    target = protection_notice("u1", trade, "t")
    assert (target.type, target.title) == ("take_profit_hit", "Take profit hit on ETHUSDT")


def test_a_notice_travels_through_stream_fields_unchanged() -> None:
    notice = daily_summary_notice(
        "u1",
        "2026-11-30",
        {"signals": 3, "rejected": 1, "fills": 4, "realized": Decimal("12.5"),
         "open_positions": 2},
    )  # fmt: skip
    encoded = {k.encode(): v.encode() for k, v in notice.fields().items()}
    assert Notice.from_fields(encoded) == notice
    assert notice.message == (
        "3 signals (1 rejected), 4 fills, realised PnL +12.50 USDT, 2 positions open"
    )
