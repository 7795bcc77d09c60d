"""`GET /api/account/summary`: the dashboard's equity, today's PnL and open positions, from the
paper account and the recorded trades, scoped to the caller."""

from __future__ import annotations

from decimal import Decimal

from tests.support.pipeline import Harness

pytest_plugins = ("tests.support.pipeline",)

LONG = {"action": "long_entry", "symbol": "BTCUSDT", "price": "65000", "stop_loss": "64000",
        "take_profit": "68000"}  # fmt: skip


async def test_a_new_account_shows_its_starting_balance(harness: Harness) -> None:
    trader = await harness.account()
    response = await harness.client.get("/api/account/summary", headers=trader.auth)
    assert response.status_code == 200, response.text
    body = response.json()
    starting = harness.app.state.settings.PAPER_STARTING_BALANCE
    assert body["exchange"] == "paper"
    assert Decimal(body["equity"]) == Decimal(body["wallet_balance"]) == starting
    assert (body["open_positions"], body["trades_today"]) == (0, 0)
    assert Decimal(body["unrealized_pnl"]) == Decimal(body["realized_pnl_today"]) == 0


async def test_an_open_then_closed_position_moves_the_figures(harness: Harness) -> None:
    harness.app.state.paper_feed = harness.feed  # the summary marks at the pipeline's prices
    trader = await harness.account()
    other = await harness.account()
    signal_id = (await harness.alert(trader.token, **LONG)).json()["signal_id"]
    assert (await harness.settled(signal_id, trader.auth))["status"] == "executed"

    harness.feed.set("BTCUSDT", Decimal("66000"))
    body = (await harness.client.get("/api/account/summary", headers=trader.auth)).json()
    (position,) = await harness.positions(trader.auth, "open")
    assert (body["open_positions"], body["trades_today"]) == (1, 1)
    assert Decimal(body["unrealized_pnl"]) == Decimal(position["unrealized_pnl"] or 0)
    (entry,) = [t for t in await harness.trades(trader.auth, signal_id) if not t["reduce_only"]]
    # Equity marks at the feed's price now: wallet (after the entry's fee) + (66000 - entry) x qty.
    gain = (Decimal("66000") - Decimal(entry["avg_fill_price"])) * Decimal(entry["quantity"])
    assert Decimal(body["equity"]) == Decimal(body["wallet_balance"]) + gain
    assert Decimal(body["wallet_balance"]) == (
        harness.app.state.settings.PAPER_STARTING_BALANCE - Decimal(entry["fee"])
    )

    closing = await harness.client.post(
        f"/api/positions/{position['id']}/close", headers=trader.auth
    )
    assert closing.status_code == 202
    await harness.settled(closing.json()["signal_id"], trader.auth)
    after = (await harness.client.get("/api/account/summary", headers=trader.auth)).json()
    assert after["open_positions"] == 0
    assert after["trades_today"] == 1  # the close is reduce-only: not an entry
    assert Decimal(after["realized_pnl_today"]) > 0
    assert Decimal(after["equity"]) == Decimal(after["wallet_balance"])

    untouched = (await harness.client.get("/api/account/summary", headers=other.auth)).json()
    assert (untouched["open_positions"], untouched["trades_today"]) == (0, 0)


async def test_live_exchanges_have_no_equity_and_unknown_ones_are_refused(
    harness: Harness,
) -> None:
    trader = await harness.account()
    live = await harness.client.get("/api/account/summary?exchange=binance", headers=trader.auth)
    assert live.status_code == 200
    assert (live.json()["exchange"], live.json()["equity"]) == ("binance", None)

    unknown = await harness.client.get("/api/account/summary?exchange=kraken", headers=trader.auth)
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "exchange"
    assert "kraken" in unknown.json()["error"]["message"]


async def test_the_summary_needs_a_token(harness: Harness) -> None:
    assert (await harness.client.get("/api/account/summary")).status_code == 401
