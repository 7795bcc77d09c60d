"""The signal pipeline end to end: webhook → signal → queue → executor → paper exchange →
trades and positions, observed through the REST API. Prices come from a ManualPriceFeed so
fills and PnL are exact."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from app.exchanges.base import OrderRequest, OrderSide, OrderType
from app.workers.pipeline import trigger_round
from tests.support.pipeline import SLIPPAGE, Harness

pytest_plugins = ("tests.support.pipeline",)


LONG = {"action": "long_entry", "symbol": "BTCUSDT", "price": "65000", "stop_loss": "64000",
        "take_profit": "68000"}  # fmt: skip


async def test_entry_opens_a_sized_position_with_protection(harness: Harness) -> None:
    token, auth = await harness.trader()
    response = await harness.alert(token, **LONG)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "queued"

    signal = await harness.settled(body["signal_id"], auth)
    assert signal["status"] == "executed", signal

    (position,) = await harness.positions(auth, "open")
    # 2 % of 10,000 USDT risked over a 1,000 USDT stop = 0.2 BTC, capped at 1,000 USDT
    # (max_position_size_usd) = 0.01538… BTC, rounded down to the 0.001 step.
    assert Decimal(position["quantity"]) == Decimal("0.015")
    assert position["side"] == "long"
    assert Decimal(position["entry_price"]) == Decimal("65000") * (1 + SLIPPAGE)
    trades = {t["client_order_id"][-1]: t for t in await harness.trades(auth, body["signal_id"])}
    assert set(trades) == {"e", "s", "t"}
    assert trades["e"]["status"] == "filled"
    assert trades["s"]["status"] == "open" and Decimal(trades["s"]["price"]) == Decimal("64000")
    assert trades["t"]["status"] == "open" and Decimal(trades["t"]["quantity"]) == Decimal("0.015")


async def test_exit_closes_with_exact_realized_pnl(harness: Harness) -> None:
    token, auth = await harness.trader()
    entry = (await harness.alert(token, **LONG)).json()
    await harness.settled(entry["signal_id"], auth)
    harness.feed.set("BTCUSDT", Decimal("66000"))
    exit_ = (await harness.alert(token, action="long_exit", symbol="BINANCE:BTCUSDT.P")).json()
    signal = await harness.settled(exit_["signal_id"], auth)
    assert signal["status"] == "executed", signal

    assert await harness.positions(auth, "open") == []
    (closed,) = await harness.positions(auth, "closed")
    entry_price = Decimal("65000") * (1 + SLIPPAGE)
    exit_price = Decimal("66000") * (1 - SLIPPAGE)
    assert Decimal(closed["realized_pnl"]) == (exit_price - entry_price) * Decimal("0.015")
    trades = await harness.trades(auth, entry["signal_id"])
    protective = [t for t in trades if t["client_order_id"][-1] in "st"]
    assert {t["status"] for t in protective} == {"canceled"}


async def test_opposite_entry_flips_the_position(harness: Harness) -> None:
    token, auth = await harness.trader()
    await harness.settled((await harness.alert(token, **LONG)).json()["signal_id"], auth)
    short = {"action": "short_entry", "symbol": "BTCUSDT", "price": "65000",
             "stop_loss": "66000", "take_profit": "60000"}  # fmt: skip
    signal = await harness.settled((await harness.alert(token, **short)).json()["signal_id"], auth)
    assert signal["status"] == "executed", signal
    (open_,) = await harness.positions(auth, "open")
    (closed,) = await harness.positions(auth, "closed")
    assert open_["side"] == "short"
    assert closed["side"] == "long"


async def test_same_direction_entry_is_rejected_as_duplicate(harness: Harness) -> None:
    token, auth = await harness.trader()
    await harness.settled((await harness.alert(token, **LONG)).json()["signal_id"], auth)
    again = await harness.alert(token, **{**LONG, "price": "65010"})
    signal = await harness.settled(again.json()["signal_id"], auth)
    assert signal["status"] == "rejected"
    assert "BTCUSDT" in signal["status_reason"]
    assert len(await harness.positions(auth, "open")) == 1


async def test_exit_with_nothing_open_is_skipped(harness: Harness) -> None:
    token, auth = await harness.trader()
    response = await harness.alert(token, action="short_exit", symbol="ETHUSDT")
    signal = await harness.settled(response.json()["signal_id"], auth)
    assert signal["status"] == "skipped"
    assert "no open short position on ETHUSDT" in signal["status_reason"]


async def test_a_skipped_exit_reconciles_a_position_closed_behind_its_back(
    harness: Harness,
) -> None:
    trader = await harness.account()
    entry = (await harness.alert(trader.token, **LONG)).json()
    assert (await harness.settled(entry["signal_id"], trader.auth))["status"] == "executed"
    # The position is closed on the exchange without the engine reconciling it (as when a
    # worker dies between a stop's fill and its sync).
    paper = harness.pipeline.adapters.paper(trader.user.id)
    for order in await paper.get_open_orders("BTCUSDT"):
        await paper.cancel_order("BTCUSDT", order_id=order.order_id)
    await paper.create_order(
        OrderRequest(symbol="BTCUSDT", side=OrderSide.SELL, type=OrderType.MARKET,
                     quantity=Decimal("0.015"), client_order_id="manual-close",
                     reduce_only=True)
    )  # fmt: skip
    assert len(await harness.positions(trader.auth, "open")) == 1

    exit_ = (await harness.alert(trader.token, action="long_exit", symbol="BTCUSDT")).json()
    signal = await harness.settled(exit_["signal_id"], trader.auth)
    assert signal["status"] == "skipped"
    assert await harness.positions(trader.auth, "open") == []
    (closed,) = await harness.positions(trader.auth, "closed")
    assert closed["closed_at"] is not None


async def test_missing_stop_loss_is_rejected_when_required(harness: Harness) -> None:
    token, auth = await harness.trader()
    no_stop = {"action": "long_entry", "symbol": "ETHUSDT", "price": "3500", "qty": "0.1"}
    signal = await harness.settled(
        (await harness.alert(token, **no_stop)).json()["signal_id"], auth
    )
    assert signal["status"] == "rejected"
    assert "stop" in signal["status_reason"].lower()
    assert await harness.positions(auth, "open") == []


async def test_free_tier_alert_is_logged_not_executed(harness: Harness) -> None:
    token, auth = await harness.trader(tier="free")
    response = await harness.alert(token, **LONG)
    assert response.status_code == 200
    assert response.json()["status"] == "logged"
    signal = (await harness.client.get(f"/api/signals/{response.json()['signal_id']}",
                                       headers=auth)).json()  # fmt: skip
    assert signal["status"] == "logged"
    assert await harness.trades(auth, response.json()["signal_id"]) == []


async def test_the_same_alert_three_times_at_once_is_one_order(harness: Harness) -> None:
    token, auth = await harness.trader()
    alert = {**LONG, "alert_id": "tv-alert-777"}
    responses = await asyncio.gather(*(harness.alert(token, **alert) for _ in range(3)))
    bodies = [r.json() for r in responses]
    assert sorted(b["status"] for b in bodies) == ["duplicate", "duplicate", "queued"]
    assert len({b["signal_id"] for b in bodies}) == 1
    await harness.settled(bodies[0]["signal_id"], auth)
    entries = [t for t in await harness.trades(auth, bodies[0]["signal_id"])
               if t["client_order_id"].endswith("e")]  # fmt: skip
    assert len(entries) == 1


async def test_same_payload_without_alert_id_is_a_duplicate_inside_the_window(
    harness: Harness,
) -> None:
    token, _ = await harness.trader()
    first = (await harness.alert(token, **LONG)).json()
    second = (await harness.alert(token, **LONG)).json()
    assert second == {**first, "status": "duplicate", "message": second["message"]}


async def test_stop_loss_fires_when_the_price_crosses(harness: Harness) -> None:
    token, auth = await harness.trader()
    entry = (await harness.alert(token, **LONG)).json()
    await harness.settled(entry["signal_id"], auth)
    harness.feed.set("BTCUSDT", Decimal("63900"))
    assert await trigger_round(harness.pipeline) == 1
    assert await harness.positions(auth, "open") == []
    (closed,) = await harness.positions(auth, "closed")
    assert Decimal(closed["realized_pnl"]) < 0
    trades = {t["client_order_id"][-1]: t for t in await harness.trades(auth, entry["signal_id"])}
    assert trades["s"]["status"] == "filled"
    assert trades["t"]["status"] == "canceled"


async def test_signals_of_one_symbol_execute_in_arrival_order(harness: Harness) -> None:
    token, auth = await harness.trader()
    actions = ["long_entry", "long_exit"] * 10
    responses = []
    for i, action in enumerate(actions):  # sequential sends: a known arrival order
        fields = {"action": action, "symbol": "ETHUSDT", "alert_id": f"seq-{i}"}
        if action == "long_entry":
            fields.update(price="3500", stop_loss="3400")
        responses.append((await harness.alert(token, **fields)).json())
    settled = [await harness.settled(r["signal_id"], auth) for r in responses]
    # Executed in order, every entry is followed by the exit that closes it.
    assert [s["status"] for s in settled] == ["executed"] * 20
    assert len(await harness.positions(auth, "closed")) == 10
