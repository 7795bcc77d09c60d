"""The caller's positions over REST, and closing one by hand through the pipeline.

A close queues a manual exit signal; to observe it while it is still pending, a test holds
the executor's (user, symbol) lock, which is what keeps a worker from executing it.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import update

from app.models import TradingSignal
from app.models.signal import TERMINAL_STATUSES
from tests.support.pipeline import SLIPPAGE, Harness, Trader, eventually

pytest_plugins = ("tests.support.pipeline",)

LONG = {"action": "long_entry", "symbol": "BTCUSDT", "price": "65000", "stop_loss": "64000",
        "take_profit": "68000"}  # fmt: skip
SHORT_ETH = {"action": "short_entry", "symbol": "ETHUSDT", "price": "3500", "stop_loss": "3600"}
POSITION_MONEY = (
    "quantity", "entry_price", "current_price", "stop_loss", "take_profit", "unrealized_pnl",
    "realized_pnl", "margin", "liquidation_price",
)  # fmt: skip


async def entered(harness: Harness, trader: Trader, **alert: Any) -> dict[str, Any]:
    """The open position an executed entry alert made."""
    signal_id = (await harness.alert(trader.token, **alert)).json()["signal_id"]
    signal = await harness.settled(signal_id, trader.auth)
    assert signal["status"] == "executed", signal
    (position,) = [
        p for p in await harness.positions(trader.auth, "open") if p["signal_id"] == signal_id
    ]
    return position


async def position(harness: Harness, trader: Trader, position_id: str) -> dict[str, Any]:
    response = await harness.client.get(f"/api/positions/{position_id}", headers=trader.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def close(harness: Harness, trader: Trader, position_id: str) -> dict[str, Any]:
    response = await harness.client.post(f"/api/positions/{position_id}/close", headers=trader.auth)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "queued"
    return body


async def closed(harness: Harness, trader: Trader, position_id: str) -> dict[str, Any]:
    return await eventually(
        lambda: position(harness, trader, position_id),
        lambda body: body["status"] == "closed",
        what=f"position {position_id} not closed",
    )


async def test_positions_are_listed_newest_first_and_filtered(harness: Harness) -> None:
    trader = await harness.account()
    btc = await entered(harness, trader, **LONG)
    eth = await entered(harness, trader, **SHORT_ETH)
    exit_ = (await harness.alert(trader.token, action="short_exit", symbol="ETHUSDT")).json()
    assert (await harness.settled(exit_["signal_id"], trader.auth))["status"] == "executed"
    client, auth = harness.client, trader.auth

    async def listed(**params: Any) -> list[str]:
        response = await client.get("/api/positions", params=params, headers=auth)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["items"]]

    assert await listed() == [eth["id"], btc["id"]]
    assert await listed(status="open") == [btc["id"]]
    assert await listed(status="closed") == [eth["id"]]
    assert await listed(symbol="btcusdt") == [btc["id"]]
    assert await listed(symbol="EthUsdt", status="closed") == [eth["id"]]
    assert await listed(symbol="BTCUSDT", status="closed") == []

    first = (await client.get("/api/positions", params={"limit": 1}, headers=auth)).json()
    assert [p["id"] for p in first["items"]] == [eth["id"]]
    rest = await client.get(
        "/api/positions", params={"limit": 1, "cursor": first["next_cursor"]}, headers=auth
    )
    assert [p["id"] for p in rest.json()["items"]] == [btc["id"]]
    assert rest.json()["next_cursor"] is None

    bad = await client.get("/api/positions", params={"status": "pending"}, headers=auth)
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "status"

    items = (await client.get("/api/positions", headers=auth)).json()["items"]
    for item in items:
        for name in POSITION_MONEY:
            assert item[name] is None or isinstance(item[name], str), (name, item[name])
        assert item == await position(harness, trader, item["id"])
    eth_closed = await position(harness, trader, eth["id"])
    assert eth_closed["side"] == "short"
    assert eth_closed["closed_at"] is not None
    assert Decimal(eth_closed["unrealized_pnl"]) == 0
    assert eth_closed["unrealized_pnl"] == "0.00000000"


async def test_closing_a_position_by_hand(harness: Harness) -> None:
    trader = await harness.account()
    opened = await entered(harness, trader, **LONG)
    quantity = Decimal(opened["quantity"])
    harness.feed.set("BTCUSDT", Decimal("66000"))

    async with harness.pipeline.executor.key_lock(trader.user.id, "BTCUSDT"):
        first, second = await asyncio.gather(
            close(harness, trader, opened["id"]), close(harness, trader, opened["id"])
        )
        again = await close(harness, trader, opened["id"])
        assert first["signal_id"] == second["signal_id"] == again["signal_id"]
        pending = await harness.signal(first["signal_id"], trader.auth)
        assert pending["status"] == "queued"
        assert pending["source"] == "manual"
        assert pending["signal_type"] == "long_exit"
        assert pending["symbol"] == "BTCUSDT"
        assert pending["raw_payload"]["position_id"] == opened["id"]
        assert (await position(harness, trader, opened["id"]))["status"] == "open"

    signal = await harness.settled(first["signal_id"], trader.auth)
    assert signal["status"] == "executed", signal
    done = await closed(harness, trader, opened["id"])
    entry_price = Decimal("65000") * (1 + SLIPPAGE)
    exit_price = Decimal("66000") * (1 - SLIPPAGE)
    assert Decimal(done["realized_pnl"]) == (exit_price - entry_price) * quantity
    assert done["closed_at"] is not None
    assert await harness.positions(trader.auth, "open") == []
    (close_order,) = await harness.trades(trader.auth, first["signal_id"])
    assert close_order["client_order_id"].endswith("c")
    assert close_order["side"] == "sell" and close_order["reduce_only"] is True
    assert close_order["status"] == "filled"
    assert Decimal(close_order["filled_quantity"]) == quantity
    manual = await harness.client.get(
        "/api/signals", params={"status": "executed"}, headers=trader.auth
    )
    assert [s["source"] for s in manual.json()["items"]] == ["manual", "tradingview"]

    refused = await harness.client.post(f"/api/positions/{opened['id']}/close", headers=trader.auth)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "position_closed"
    assert refused.json()["error"]["field"] == "position_id"


async def test_closing_a_short_position_buys_it_back(harness: Harness) -> None:
    trader = await harness.account()
    opened = await entered(harness, trader, **SHORT_ETH)
    harness.feed.set("ETHUSDT", Decimal("3400"))
    requested = await close(harness, trader, opened["id"])
    signal = await harness.settled(requested["signal_id"], trader.auth)
    assert signal["status"] == "executed" and signal["signal_type"] == "short_exit"
    done = await closed(harness, trader, opened["id"])
    entry_price = Decimal("3500") * (1 - SLIPPAGE)
    exit_price = Decimal("3400") * (1 + SLIPPAGE)
    expected = (entry_price - exit_price) * Decimal(opened["quantity"])
    assert expected > 0
    assert Decimal(done["realized_pnl"]) == expected


async def test_a_failed_close_does_not_block_the_next(harness: Harness) -> None:
    trader = await harness.account()
    opened = await entered(harness, trader, **LONG)
    async with harness.pipeline.executor.key_lock(trader.user.id, "BTCUSDT"):
        failed = await close(harness, trader, opened["id"])
        # What the consumer does to a signal whose execution failed too many times.
        async with harness.app.state.sessionmaker() as session:
            await session.execute(
                update(TradingSignal)
                .where(TradingSignal.id == uuid.UUID(failed["signal_id"]))
                .values(status="failed", status_reason="execution failed 5 times; gave up")
            )
            await session.commit()
    assert (await harness.signal(failed["signal_id"], trader.auth))["status"] == "failed"
    assert (await position(harness, trader, opened["id"]))["status"] == "open"

    retried = await close(harness, trader, opened["id"])
    assert retried["signal_id"] != failed["signal_id"]
    signal = await harness.settled(retried["signal_id"], trader.auth)
    assert signal["status"] == "executed", signal
    await closed(harness, trader, opened["id"])


async def test_another_users_position_is_not_found(harness: Harness) -> None:
    alice, bob = await harness.account(), await harness.account()
    opened = await entered(harness, alice, **LONG)
    client = harness.client

    seen = await client.get(f"/api/positions/{opened['id']}", headers=bob.auth)
    assert seen.status_code == 404
    assert seen.json()["error"] == {
        "code": "not_found", "message": "position not found", "field": "position_id"
    }  # fmt: skip
    closing = await client.post(f"/api/positions/{opened['id']}/close", headers=bob.auth)
    assert closing.status_code == 404
    assert closing.json()["error"]["code"] == "not_found"
    for status in ("open", "closed"):
        assert await harness.positions(bob.auth, status) == []
    listed = await client.get("/api/positions", params={"symbol": "BTCUSDT"}, headers=bob.auth)
    assert listed.json()["items"] == []

    # Nothing was queued for either user, and Alice's position is untouched.
    assert (await client.get("/api/signals", headers=bob.auth)).json()["items"] == []
    alice_signals = (await client.get("/api/signals", headers=alice.auth)).json()["items"]
    assert [s["source"] for s in alice_signals] == ["tradingview"]
    assert all(s["status"] in TERMINAL_STATUSES for s in alice_signals)
    assert (await position(harness, alice, opened["id"]))["status"] == "open"


async def test_unknown_or_malformed_position_ids(harness: Harness) -> None:
    trader = await harness.account()
    client = harness.client
    for method in ("GET", "POST"):
        suffix = "/close" if method == "POST" else ""
        missing = await client.request(
            method, f"/api/positions/{uuid.uuid4()}{suffix}", headers=trader.auth
        )
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        bad = await client.request(method, f"/api/positions/nope{suffix}", headers=trader.auth)
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "position_id"
    unauthenticated = await client.post(f"/api/positions/{uuid.uuid4()}/close")
    assert unauthenticated.status_code == 401


async def test_closing_needs_no_webhook_token(harness: Harness) -> None:
    """A close is a REST action of the signed-in user: webhook tokens play no part."""
    trader = await harness.account()
    opened = await entered(harness, trader, **LONG)
    tokens = await harness.client.get("/api/webhook-tokens", headers=trader.auth)
    for token in tokens.json():
        revoked = await harness.client.delete(
            f"/api/webhook-tokens/{token['id']}", headers=trader.auth
        )
        assert revoked.status_code == 200
    requested = await close(harness, trader, opened["id"])
    assert (await harness.settled(requested["signal_id"], trader.auth))["status"] == "executed"
    await closed(harness, trader, opened["id"])
