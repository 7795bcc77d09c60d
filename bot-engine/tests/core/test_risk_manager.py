"""Pre-trade risk checks: each check passing and failing on its own, several failing at once,
values exactly at the limits, the daily loss helper, and `Decimal` exactness."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from app.core.risk_manager import (
    CHECKS,
    EntryRequest,
    OpenPosition,
    RiskContext,
    RiskDecision,
    RiskLimits,
    check_entry,
    daily_loss_limit_reached,
)
from app.models import UserRiskSettings

SYMBOL = "BTC/USDT:USDT"

# The defaults of `user_risk_settings`.
LIMITS = RiskLimits(
    max_position_size_usd=Decimal("1000.00"),
    max_leverage=10,
    max_open_positions=5,
    max_daily_trades=50,
    max_daily_loss_percent=Decimal("10.00"),
    max_portfolio_exposure_percent=Decimal("80.00"),
    default_risk_per_trade_percent=Decimal("2.00"),
    require_stop_loss=True,
)
# A fresh day on a 10,000 USDT account with nothing open.
CTX = RiskContext(
    equity=Decimal("10000"),
    open_positions=(),
    trades_today=0,
    realized_pnl_today=Decimal("0"),
)
# 0.01 BTC at 50,000 = 500 USDT, 5x, stop below the entry.
ENTRY = EntryRequest(
    symbol=SYMBOL,
    side="long",
    quantity=Decimal("0.01"),
    entry_price=Decimal("50000"),
    leverage=5,
    stop_loss=Decimal("49000"),
)


def small(symbol: str, side: str = "long") -> OpenPosition:
    """A 1 USDT position: counts as open, adds next to nothing to the exposure."""
    return OpenPosition(symbol, side, Decimal("0.001"), Decimal("1000"))


def five_others() -> tuple[OpenPosition, ...]:
    return tuple(small(f"ALT{i}/USDT:USDT") for i in range(5))


def decide(
    entry: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    ctx: dict[str, Any] | None = None,
) -> RiskDecision:
    return check_entry(
        replace(ENTRY, **(entry or {})),
        replace(LIMITS, **(limits or {})),
        replace(CTX, **(ctx or {})),
    )


def test_checks_are_eight_in_a_fixed_order() -> None:
    assert CHECKS == (
        "position_size",
        "leverage",
        "open_positions",
        "daily_trades",
        "daily_loss",
        "portfolio_exposure",
        "stop_loss",
        "duplicate_position",
    )


def test_an_entry_within_every_limit_passes() -> None:
    decision = decide()
    assert decision.passed is True
    assert decision.failed_check is None
    assert decision.reason is None
    assert decision.reasons == {}
    assert list(decision.checks) == list(CHECKS)
    assert all(decision.checks.values())


@pytest.mark.parametrize(
    ("check", "entry", "limits", "ctx", "reason"),
    [
        pytest.param(
            "position_size",
            {"quantity": Decimal("0.025")},  # 1,250 USDT
            {},
            {},
            "position 1,250.00 USDT exceeds your maximum of 1,000.00 USDT",
            id="position_size",
        ),
        pytest.param(
            "leverage",
            {"leverage": 20},
            {},
            {},
            "leverage 20x exceeds your maximum of 10x",
            id="leverage",
        ),
        pytest.param(
            "open_positions",
            {},
            {},
            {"open_positions": five_others()},
            "you already have 5 open positions, your maximum is 5",
            id="open_positions",
        ),
        pytest.param(
            "open_positions",
            {},
            {"max_open_positions": 1},
            {"open_positions": (small("ETH/USDT:USDT"),)},
            "you already have 1 open position, your maximum is 1",
            id="open_positions-singular",
        ),
        pytest.param(
            "daily_trades",
            {},
            {},
            {"trades_today": 50},
            "you have already made 50 trades today, your daily maximum is 50",
            id="daily_trades",
        ),
        pytest.param(
            "daily_loss",
            {},
            {},
            # started the day at 10,000, lost 1,200: 12 %
            {"equity": Decimal("8800"), "realized_pnl_today": Decimal("-1200")},
            "today's realized loss of 1,200.00 USDT is 12.00% of your equity at the start of "
            "the day (10,000.00 USDT), which reaches your daily loss limit of 10.00%",
            id="daily_loss",
        ),
        pytest.param(
            "portfolio_exposure",
            {},
            {},
            # 2 ETH at 3,800 = 7,600 open + 500 = 8,100: 81 % of 10,000
            {
                "open_positions": (
                    OpenPosition("ETH/USDT:USDT", "short", Decimal(2), Decimal(3800)),
                )
            },
            "your open positions and this one would total 8,100.00 USDT, 81.00% of your equity "
            "of 10,000.00 USDT, above your maximum exposure of 80.00%",
            id="portfolio_exposure",
        ),
        pytest.param(
            "stop_loss",
            {"stop_loss": None},
            {},
            {},
            "your risk settings require a stop loss and this alert has none: add stop_loss to "
            "the alert message",
            id="stop_loss",
        ),
        pytest.param(
            "duplicate_position",
            {},
            {},
            {"open_positions": (OpenPosition(SYMBOL, "long", Decimal("0.001"), Decimal(50000)),)},
            "you already have an open long position in BTC/USDT:USDT",
            id="duplicate_position",
        ),
        pytest.param(
            "duplicate_position",
            {"side": "short", "stop_loss": Decimal("51000")},
            {},
            {"open_positions": (OpenPosition(SYMBOL, "short", Decimal("0.001"), Decimal(50000)),)},
            "you already have an open short position in BTC/USDT:USDT",
            id="duplicate_position-short",
        ),
    ],
)
def test_each_check_fails_on_its_own(
    check: str,
    entry: dict[str, Any],
    limits: dict[str, Any],
    ctx: dict[str, Any],
    reason: str,
) -> None:
    decision = decide(entry, limits, ctx)
    assert decision.passed is False
    assert decision.failed_check == check
    assert decision.reason == reason
    assert decision.reasons == {check: reason}
    assert decision.checks == {name: name != check for name in CHECKS}


@pytest.mark.parametrize(
    ("entry", "limits", "ctx"),
    [
        pytest.param({}, {"require_stop_loss": False}, {}, id="stop-required-and-given"),
        pytest.param({"stop_loss": None}, {"require_stop_loss": False}, {}, id="stop-optional"),
        pytest.param(
            {},
            {},
            {"open_positions": (OpenPosition(SYMBOL, "short", Decimal("0.001"), Decimal(50000)),)},
            id="opposite-side-same-symbol",
        ),
        pytest.param(
            {},
            {},
            {"open_positions": (small("ETH/USDT:USDT", "long"),)},
            id="same-side-other-symbol",
        ),
        pytest.param(
            {},
            {},
            {"equity": Decimal("10500"), "realized_pnl_today": Decimal("500")},
            id="a-profitable-day",
        ),
        pytest.param(
            {},
            {},
            {"equity": Decimal("1000"), "realized_pnl_today": Decimal("1500")},
            id="profit-larger-than-start-equity",
        ),
    ],
)
def test_each_check_passes(
    entry: dict[str, Any], limits: dict[str, Any], ctx: dict[str, Any]
) -> None:
    decision = decide(entry, limits, ctx)
    assert decision.passed is True, decision.reasons


# Boundaries: maxima may be reached (≤), counts must stay below their maximum before the entry
# (<), the daily loss limit is reached AT the limit (loss % < max passes).
@pytest.mark.parametrize(
    ("check", "entry", "ctx", "passed"),
    [
        pytest.param("position_size", {"quantity": Decimal("0.02")}, {}, True, id="size=max"),
        pytest.param(
            "position_size", {"quantity": Decimal("0.0200000001")}, {}, False, id="size>max"
        ),
        pytest.param("leverage", {"leverage": 10}, {}, True, id="leverage=max"),
        pytest.param("leverage", {"leverage": 11}, {}, False, id="leverage>max"),
        pytest.param(
            "open_positions",
            {},
            {"open_positions": five_others()[:4]},
            True,
            id="4-open-of-5",
        ),
        pytest.param(
            "open_positions", {}, {"open_positions": five_others()}, False, id="5-open-of-5"
        ),
        pytest.param("daily_trades", {}, {"trades_today": 49}, True, id="49-trades-of-50"),
        pytest.param("daily_trades", {}, {"trades_today": 50}, False, id="50-trades-of-50"),
        pytest.param(
            "daily_loss",
            {},
            {"equity": Decimal("9000.01"), "realized_pnl_today": Decimal("-999.99")},
            True,
            id="loss-just-below-limit",
        ),
        pytest.param(
            "daily_loss",
            {},
            {"equity": Decimal("9000"), "realized_pnl_today": Decimal("-1000")},
            False,
            id="loss-exactly-at-limit",
        ),
        pytest.param(
            "portfolio_exposure",
            {},
            # 7,500 open + 500 = 8,000 = exactly 80 %
            {"open_positions": (OpenPosition("ETH/USDT:USDT", "long", Decimal(2), Decimal(3750)),)},
            True,
            id="exposure=max",
        ),
        pytest.param(
            "portfolio_exposure",
            {},
            {
                "open_positions": (
                    OpenPosition("ETH/USDT:USDT", "long", Decimal(2), Decimal("3750.00000001")),
                )
            },
            False,
            id="exposure>max",
        ),
    ],
)
def test_boundaries(check: str, entry: dict[str, Any], ctx: dict[str, Any], passed: bool) -> None:
    decision = decide(entry, {}, ctx)
    assert decision.checks[check] is passed
    assert decision.passed is passed


def test_the_size_message_never_rounds_an_excess_away() -> None:
    decision = decide({"quantity": Decimal("0.0200000001")})  # 1,000.0005 USDT
    assert decision.reason == "position 1,000.01 USDT exceeds your maximum of 1,000.00 USDT"


def test_leverage_does_not_reduce_exposure() -> None:
    # 8,100 USDT of notional at 10x needs 810 USDT of margin, and is still 81 % exposure.
    open_eth = (OpenPosition("ETH/USDT:USDT", "long", Decimal(2), Decimal(3800)),)
    for leverage in (1, 10):
        decision = decide({"leverage": leverage}, {}, {"open_positions": open_eth})
        assert decision.checks["portfolio_exposure"] is False
        assert decision.details["exposure_percent"] == "81.00"


def test_several_failures_are_all_reported_and_the_first_is_named() -> None:
    decision = decide({"leverage": 20, "stop_loss": None}, {}, {"trades_today": 50})
    assert decision.passed is False
    assert decision.failed_check == "leverage"
    assert decision.reason == "leverage 20x exceeds your maximum of 10x"
    assert list(decision.reasons) == ["leverage", "daily_trades", "stop_loss"]
    assert [name for name, ok in decision.checks.items() if not ok] == list(decision.reasons)


def test_all_eight_can_fail_at_once() -> None:
    # 9,000 equity after a 1,000 loss (10 %), a 6,000 USDT long BTC already open plus four
    # 1 USDT others (5 open), and a 1,250 USDT long BTC at 20x without a stop: 7,254 = 80.6 %.
    positions = (
        OpenPosition(SYMBOL, "long", Decimal("0.12"), Decimal("50000")),
        *five_others()[:4],
    )
    decision = decide(
        {"quantity": Decimal("0.025"), "leverage": 20, "stop_loss": None},
        {},
        {
            "equity": Decimal("9000"),
            "realized_pnl_today": Decimal("-1000"),
            "open_positions": positions,
            "trades_today": 50,
        },
    )
    assert decision.passed is False
    assert decision.failed_check == "position_size"
    assert list(decision.reasons) == list(CHECKS)
    assert not any(decision.checks.values())
    assert decision.details["exposure_percent"] == "80.60"


@pytest.mark.parametrize("equity", [Decimal("0"), Decimal("-50")])
def test_no_equity_fails_the_checks_that_divide_by_it(equity: Decimal) -> None:
    decision = decide(ctx={"equity": equity})
    failed = [name for name, ok in decision.checks.items() if not ok]
    assert failed == ["daily_loss", "portfolio_exposure"]
    assert decision.reason == (
        f"your account equity is {equity:.2f} USDT: no new position can be opened"
    )
    assert "exposure_percent" not in decision.details


@pytest.mark.parametrize(
    ("equity", "pnl", "reached"),
    [
        pytest.param("10000", "0", False, id="flat"),
        pytest.param("10500", "500", False, id="profit"),
        pytest.param("9000.01", "-999.99", False, id="below"),
        pytest.param("9000", "-1000", True, id="at"),
        pytest.param("8000", "-2000", True, id="above"),
        pytest.param("0", "0", False, id="no-equity-no-loss"),
        pytest.param("-100", "-50", True, id="negative-start"),
    ],
)
def test_daily_loss_limit_reached(equity: str, pnl: str, reached: bool) -> None:
    ctx = replace(CTX, equity=Decimal(equity), realized_pnl_today=Decimal(pnl))
    assert daily_loss_limit_reached(LIMITS, ctx) is reached


def test_details_are_exact_strings_that_serialise_to_json() -> None:
    decision = decide(
        ctx={
            "equity": Decimal("9500"),
            "realized_pnl_today": Decimal("-500"),
            "open_positions": (
                OpenPosition("ETH/USDT:USDT", "short", Decimal("0.5"), Decimal(3000)),
            ),
            "trades_today": 3,
        }
    )
    assert decision.passed is True
    assert all(isinstance(v, str) for v in decision.details.values())
    assert json.loads(json.dumps(decision.details)) == decision.details
    assert decision.details == {
        "notional": "500.00",
        "max_position_size_usd": "1000.00",
        "leverage": "5",
        "max_leverage": "10",
        "open_positions": "1",
        "max_open_positions": "5",
        "trades_today": "3",
        "max_daily_trades": "50",
        "equity": "9500",
        "realized_pnl_today": "-500",
        "start_of_day_equity": "10000",
        "daily_loss_percent": "5.00",
        "max_daily_loss_percent": "10.00",
        "exposure_usd": "2000.00",
        "exposure_percent": "21.05",
        "max_portfolio_exposure_percent": "80.00",
        "stop_loss": "49000",
        "require_stop_loss": "true",
    }


def test_exposure_is_summed_exactly() -> None:
    # 0.1 + 0.2 style sums: exact in Decimal, so exactly 80 % passes.
    positions = tuple(
        OpenPosition(f"ALT{i}/USDT:USDT", "long", Decimal("0.1"), Decimal("0.3")) for i in range(3)
    )
    decision = check_entry(
        replace(ENTRY, quantity=Decimal("0.71"), entry_price=Decimal("1")),
        LIMITS,
        replace(CTX, equity=Decimal("1"), open_positions=positions),
    )
    # In floats 0.1 * 0.3 is 0.030000000000000002 and the total would exceed 80 %.
    assert decision.details["exposure_usd"] == "0.80"
    assert decision.details["exposure_percent"] == "80.00"
    assert decision.checks["portfolio_exposure"] is True


def test_limits_from_the_settings_row() -> None:
    row = UserRiskSettings(
        user_id="u1",
        max_position_size_usd=Decimal("2500.00"),
        max_leverage=3,
        max_open_positions=2,
        max_daily_trades=7,
        max_daily_loss_percent=Decimal("4.50"),
        max_portfolio_exposure_percent=Decimal("60.00"),
        default_risk_per_trade_percent=Decimal("1.25"),
        require_stop_loss=False,
    )
    assert RiskLimits.from_row(row) == RiskLimits(
        max_position_size_usd=Decimal("2500.00"),
        max_leverage=3,
        max_open_positions=2,
        max_daily_trades=7,
        max_daily_loss_percent=Decimal("4.50"),
        max_portfolio_exposure_percent=Decimal("60.00"),
        default_risk_per_trade_percent=Decimal("1.25"),
        require_stop_loss=False,
    )


@pytest.mark.parametrize(
    ("base", "changes", "error"),
    [
        pytest.param(LIMITS, {"max_position_size_usd": 1000.0}, TypeError, id="float-limit"),
        pytest.param(LIMITS, {"max_leverage": True}, TypeError, id="bool-leverage"),
        pytest.param(LIMITS, {"require_stop_loss": 1}, TypeError, id="int-flag"),
        pytest.param(CTX, {"equity": 10000.0}, TypeError, id="float-equity"),
        pytest.param(CTX, {"realized_pnl_today": Decimal("NaN")}, ValueError, id="nan"),
        pytest.param(CTX, {"open_positions": []}, TypeError, id="list-positions"),
        pytest.param(ENTRY, {"entry_price": 50000.0}, TypeError, id="float-price"),
        pytest.param(ENTRY, {"stop_loss": 49000.0}, TypeError, id="float-stop"),
        pytest.param(ENTRY, {"side": "buy"}, ValueError, id="entry-side"),
        pytest.param(small("X"), {"quantity": Decimal("-1")}, ValueError, id="negative-qty"),
        pytest.param(small("X"), {"quantity": 1.0}, TypeError, id="float-qty"),
        pytest.param(small("X"), {"side": "sell"}, ValueError, id="position-side"),
    ],
)
def test_floats_and_malformed_values_are_refused(
    base: Any, changes: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        replace(base, **changes)


def test_every_computed_number_is_a_decimal() -> None:
    position = OpenPosition("ETH/USDT:USDT", "long", Decimal(2), Decimal(3800))
    assert type(position.notional) is Decimal
    assert type(ENTRY.notional) is Decimal
    assert ENTRY.notional == Decimal("500.00")
