"""Reconciliation of live accounts with the database, against the emulated exchanges: what
happened while the engine was away is recorded with its real PnL, orders left in doubt by a
crash are resolved, positions nobody ordered are recorded, a refused key is marked, and the
syncer runs at startup without being asked."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from app.config import Settings
from app.workers.position_syncer import LEADER_KEY, leads_round, run_position_syncer, sync_all
from tests.conftest import SecretsSeen
from tests.support.live import Exchange, LiveTrader, traded
from tests.support.pipeline import Harness, eventually

pytest_plugins = ("tests.support.pipeline", "tests.support.live")
pytestmark = pytest.mark.usefixtures("quick_lookups")

D = Decimal
BTC = "BTC/USDT:USDT"
LONG = {"action": "long_entry", "symbol": "BTCUSDT", "stop_loss": "63000",
        "take_profit": "68000", "qty": "0.015"}  # fmt: skip


@pytest.fixture(scope="module")
def settings(live_settings: Settings) -> Settings:
    return live_settings


async def sync(harness: Harness) -> list[str]:
    report = await sync_all(
        harness.pipeline.executor, harness.pipeline.adapters, harness.app.state.pg
    )
    return report.failed


async def long_position(harness: Harness, exchange: Exchange, live: LiveTrader) -> dict[str, Any]:
    response = await harness.alert(live.trader.token, **LONG, exchange=exchange.name)
    signal = await harness.settled(response.json()["signal_id"], live.auth)
    assert signal["status"] == "executed", signal
    return signal


async def test_a_partial_close_by_hand_then_the_stop_add_up_to_the_positions_pnl(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    live = await traded(harness, exchange, secrets_seen)
    await long_position(harness, exchange, live)
    exchange.set_price("66000")
    client = exchange.website(live.api_key, live.secret)
    try:
        await client.create_order(BTC, "market", "sell", 0.005, None, {})
    finally:
        await client.close()
    assert await sync(harness) == []
    [position] = await harness.positions(live.auth, "open")
    assert D(position["quantity"]) == D("0.01")
    trades = (await harness.client.get("/api/trades", headers=live.auth)).json()["items"]
    [by_hand] = [t for t in trades if t["signal_id"] is None]
    assert D(by_hand["realized_pnl"]) == (D("66000") - D("65000")) * D("0.005")

    exchange.set_price("62900")  # the stop, sized 0.015, reduces what is left: 0.01
    assert exchange.position(live.api_key) == 0
    assert await sync(harness) == []
    [closed] = await harness.positions(live.auth, "closed")
    expected = D("1000") * D("0.005") + (D("62900") - D("65000")) * D("0.01")
    assert D(closed["realized_pnl"]) == expected == exchange.realized(live.api_key)
    assert exchange.resting(live.api_key) == []


async def test_orders_left_in_doubt_by_a_crash_are_resolved(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    live = await traded(harness, exchange, secrets_seen)
    pool = harness.app.state.pg
    insert = """
        INSERT INTO real_trades (user_id, exchange, symbol, side, order_type, quantity, status,
                                 client_order_id)
        VALUES ($1, $2, 'BTCUSDT', 'buy', 'market', 0.01, 'pending', $3)
    """
    # The process died after sending the first order, and before sending the second.
    await pool.execute(insert, live.trader.user.id, exchange.name, "jtcrashsent0000000000000e")
    await pool.execute(insert, live.trader.user.id, exchange.name, "jtcrashlost0000000000000e")
    client = exchange.website(live.api_key, live.secret)
    try:
        await client.create_order(
            BTC, "market", "buy", 0.01, None, {"clientOrderId": "jtcrashsent0000000000000e"}
        )
    finally:
        await client.close()

    assert await sync(harness) == []
    rows = await pool.fetch(
        "SELECT client_order_id, status, filled_quantity, avg_fill_price FROM real_trades"
        " WHERE user_id = $1 ORDER BY client_order_id",
        live.trader.user.id,
    )
    by_id = {r["client_order_id"]: r for r in rows}
    sent = by_id["jtcrashsent0000000000000e"]
    assert sent["status"] == "filled" and sent["filled_quantity"] == D("0.01")
    assert sent["avg_fill_price"] == D("65000")
    assert by_id["jtcrashlost0000000000000e"]["status"] == "failed"
    [position] = await harness.positions(live.auth, "open")
    assert D(position["quantity"]) == D("0.01") and position["side"] == "long"


async def test_a_position_opened_on_the_exchange_is_recorded(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    live = await traded(harness, exchange, secrets_seen)
    client = exchange.website(live.api_key, live.secret)
    try:
        await client.create_order(BTC, "market", "sell", 0.01, None, {})
    finally:
        await client.close()
    assert await sync(harness) == []
    [position] = await harness.positions(live.auth, "open")
    assert position["side"] == "short" and D(position["quantity"]) == D("0.01")
    assert position["signal_id"] is None and position["exchange"] == exchange.name


async def test_a_refused_key_is_marked_and_the_other_accounts_still_sync(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    revoked = await traded(harness, exchange, secrets_seen)
    healthy = await traded(harness, exchange, secrets_seen)
    await long_position(harness, exchange, revoked)
    await long_position(harness, exchange, healthy)
    exchange.server.add_account(revoked.api_key, "a-new-secret-the-engine-does-not-have")
    exchange.set_price("62900")  # the healthy account's stop fires

    failed = await sync(harness)
    assert failed == [f"{revoked.trader.user.id}/{exchange.name}: authentication_failed"]
    [key] = (await harness.client.get("/api/exchange-keys", headers=revoked.auth)).json()
    assert key["is_valid"] is False
    [closed] = await harness.positions(healthy.auth, "closed")
    assert D(closed["realized_pnl"]) == (D("62900") - D("65000")) * D("0.015")


async def test_the_syncer_reconciles_at_startup_on_its_own(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    live = await traded(harness, exchange, secrets_seen)
    await long_position(harness, exchange, live)
    exchange.set_price("62900")
    syncer = asyncio.create_task(
        run_position_syncer(
            harness.pipeline.executor, harness.pipeline.adapters, harness.app.state.pg, 3600
        )
    )
    try:
        closed = await eventually(
            lambda: harness.positions(live.auth, "closed"), bool, what="position not closed"
        )
    finally:
        syncer.cancel()
        await asyncio.gather(syncer, return_exceptions=True)
    assert D(closed[0]["realized_pnl"]) == (D("62900") - D("65000")) * D("0.015")


async def test_one_process_of_all_leads_each_round(harness: Harness) -> None:
    redis = harness.app.state.redis
    await redis.delete(LEADER_KEY)
    taken = await asyncio.gather(*(leads_round(redis, 1.0) for _ in range(5)))
    assert sorted(taken) == [False, False, False, False, True]
    await eventually(lambda: leads_round(redis, 1.0), bool, what="round not free again")
