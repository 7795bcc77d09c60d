"""What the pipeline announces, seen by a WebSocket client: an alert's signal, its orders and
its position in the order they happened; a stop loss filling on the exchange; prices and
unrealised PnL from the price updater; and the notices handed to the notifier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from app.core.events import WANTED_PRICES_KEY
from app.core.notifications import NOTICE_STREAM
from app.exchanges.ticker_stream import StreamingTickerFeed
from app.workers.pipeline import trigger_round
from app.workers.price_updater import LEASE_KEY, PriceUpdater, StreamFeedFactory, hold_lease
from tests.exchange_sim.binance_public import BinancePublicServer
from tests.exchange_sim.binance_ws import BinanceWsServer
from tests.support.pipeline import SLIPPAGE, Harness, eventually
from tests.support.ws import LocalServer, WsClient, served, ws_client, ws_url

pytest_plugins = ("tests.support.pipeline",)

LONG = {"action": "long_entry", "symbol": "BTCUSDT", "price": "65000", "stop_loss": "64000",
        "take_profit": "68000"}  # fmt: skip
USER_TOPICS = ("signals", "trades", "positions")


@pytest.fixture
async def server(harness: Harness) -> AsyncIterator[LocalServer]:
    async with served(harness.app) as running:
        yield running


async def _subscribed(client: WsClient, *topics: str) -> None:
    await client.next_of("connected")
    for topic in topics:
        await client.send({"type": "subscribe", "topic": topic})
        await client.next_of("subscribed", topic=topic)


def _story(client: WsClient) -> list[tuple[str, str]]:
    """(type, what) of the user events received, in order."""
    told = []
    for m in client.messages:
        data = m.get("data", {})
        if m["type"] in ("signal_received", "signal_update"):
            told.append((m["type"], data["status"]))
        elif m["type"] in ("trade_executed", "trade_update"):
            told.append((m["type"], data["client_order_id"][-1]))
        elif m["type"] == "position_update":
            told.append((m["type"], data["status"]))
    return told


def _updater(harness: Harness, stream_feed: StreamFeedFactory) -> PriceUpdater:
    """The harness's price updater: paper prices from its manual feed, live ones from
    `stream_feed`."""
    return PriceUpdater(
        harness.app.state.pg,
        harness.app.state.redis,
        harness.pipeline.events,
        paper_feed=harness.feed,
        stream_feed=stream_feed,
        default_exchange="paper",
        interval_s=0.05,
        owner="test-updater",
    )


async def _notices(redis: Redis) -> list[dict[str, str]]:
    entries: Any = await redis.xrange(NOTICE_STREAM)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in entries]


async def test_an_alert_is_told_in_the_order_it_happened(
    harness: Harness, server: LocalServer
) -> None:
    trader = await harness.account()
    async with ws_client(ws_url(server, harness.factory.access_token(trader.user))) as ws:
        await _subscribed(ws, *USER_TOPICS)
        body = (await harness.alert(trader.token, **LONG)).json()
        await ws.next_of("signal_update", id=body["signal_id"])
    assert _story(ws) == [
        ("signal_received", "queued"),
        ("trade_executed", "e"),
        ("trade_update", "s"),
        ("trade_update", "t"),
        ("position_update", "open"),
        ("signal_update", "executed"),
    ]
    entry = ws.of_type("trade_executed")[0]["data"]
    assert entry["signal_id"] == body["signal_id"]
    assert Decimal(entry["avg_fill_price"]) == Decimal("65000") * (1 + SLIPPAGE)
    position = ws.of_type("position_update")[0]["data"]
    assert position["quantity"] == "0.01500000" and position["side"] == "long"
    (notice,) = await _notices(harness.app.state.redis)
    assert notice["type"] == "trade_executed"
    assert notice["title"] == "Opened long BTCUSDT"
    assert notice["message"].startswith("0.015 BTCUSDT at 65065")
    assert notice["dedupe_key"] == f"signal:{body['signal_id']}:executed"


async def test_a_stop_loss_hit_is_told_with_the_closed_position(
    harness: Harness, server: LocalServer
) -> None:
    trader = await harness.account()
    body = (await harness.alert(trader.token, **LONG)).json()
    await harness.settled(body["signal_id"], trader.auth)
    async with ws_client(ws_url(server, harness.factory.access_token(trader.user))) as ws:
        await _subscribed(ws, "trades", "positions")
        harness.feed.set("BTCUSDT", Decimal("63900"))
        assert await trigger_round(harness.pipeline) == 1
        closed = await ws.next_of("position_update", status="closed")
    assert ("trade_executed", "s") in _story(ws)
    assert Decimal(closed["data"]["realized_pnl"]) < 0
    kinds = [n["type"] for n in await _notices(harness.app.state.redis)]
    assert kinds == ["trade_executed", "stop_loss_hit"]


async def test_a_rejected_alert_is_told_with_its_reason(
    harness: Harness, server: LocalServer
) -> None:
    trader = await harness.account()
    async with ws_client(ws_url(server, harness.factory.access_token(trader.user))) as ws:
        await _subscribed(ws, "signals")
        body = (await harness.alert(trader.token, **{**LONG, "leverage": 100})).json()
        update = await ws.next_of("signal_update", id=body["signal_id"])
    assert update["data"]["status"] == "rejected"
    assert "leverage" in update["data"]["status_reason"]
    (notice,) = await _notices(harness.app.state.redis)
    assert notice["type"] == "signal_rejected"
    assert notice["message"] == update["data"]["status_reason"]


async def test_the_price_updater_publishes_prices_and_unrealised_pnl(
    harness: Harness, server: LocalServer
) -> None:
    trader = await harness.account()
    body = (await harness.alert(trader.token, **LONG)).json()
    await harness.settled(body["signal_id"], trader.auth)
    (position,) = await harness.positions(trader.auth, "open")
    entry = Decimal(position["entry_price"])

    def no_stream(exchange: str) -> Any:
        raise AssertionError(f"paper only here, asked for {exchange}")

    updater = _updater(harness, no_stream)
    async with ws_client(ws_url(server, harness.factory.access_token(trader.user))) as ws:
        await _subscribed(ws, "positions", "prices:ETHUSDT")
        await eventually(
            lambda: harness.app.state.redis.zscore(WANTED_PRICES_KEY, "ETHUSDT"),
            lambda score: score is not None,
            what="ETHUSDT watched",
        )
        assert await updater.round() == 2  # BTCUSDT (open position), ETHUSDT (watched)
        assert await updater.round() == 0  # nothing moved: nothing sent again
        harness.feed.set("BTCUSDT", Decimal("66000"))
        assert await updater.round() == 1
        marked = await ws.wait_for(
            lambda m: (
                m["type"] == "position_update" and m["data"]["current_price"] == "66000.00000000"
            )
        )
        eth = await ws.next_of("price_update", symbol="ETHUSDT")
    assert Decimal(marked["data"]["unrealized_pnl"]) == (Decimal("66000") - entry) * Decimal(
        "0.015"
    )
    assert eth["data"] == {"symbol": "ETHUSDT", "exchange": "paper", "price": "3500"}
    assert ws.of_type("price_update") == [eth]  # BTCUSDT prices were not subscribed
    (stored,) = await harness.positions(trader.auth, "open")
    assert Decimal(stored["current_price"]) == Decimal("66000")


async def test_one_process_holds_the_price_lease(harness: Harness) -> None:
    redis = harness.app.state.redis
    assert await hold_lease(redis, LEASE_KEY, "a", 5000)
    assert await hold_lease(redis, LEASE_KEY, "a", 5000)  # renewed by its holder
    assert not await hold_lease(redis, LEASE_KEY, "b", 5000)
    await redis.delete(LEASE_KEY)
    assert await hold_lease(redis, LEASE_KEY, "b", 5000)


async def test_live_positions_are_marked_from_the_exchanges_stream(
    harness: Harness, server: LocalServer
) -> None:
    trader = await harness.account()
    async with harness.app.state.pg.acquire() as conn:
        await conn.execute(
            "INSERT INTO real_positions (user_id, exchange, symbol, side, entry_price, quantity, "
            "leverage) VALUES ($1, 'binance', 'BTCUSDT', 'short', 65000, 0.5, 1)",
            trader.user.id,
        )
    with BinancePublicServer() as rest, BinanceWsServer() as stream:
        feeds: list[StreamingTickerFeed] = []

        def binance_stream(exchange: str) -> StreamingTickerFeed:
            assert exchange == "binance"
            feeds.append(StreamingTickerFeed(exchange, ws_url=stream.url,
                                             rest_urls=rest.api_urls, timeout_ms=3000))  # fmt: skip
            return feeds[-1]

        updater = _updater(harness, binance_stream)
        try:
            async with ws_client(ws_url(server, harness.factory.access_token(trader.user))) as ws:
                await _subscribed(ws, "positions", "prices")
                assert await updater.round() == 0  # now following BTCUSDT; no tick yet
                await eventually(
                    lambda: _subscribed_upstream(stream), bool, what="stream subscribed"
                )
                stream.push_ticker("BTCUSDT", Decimal("64000.5"))
                await eventually(updater.round, lambda moved: moved == 1, what="tick priced")
                marked = await ws.next_of("position_update", current_price="64000.50000000")
                price = await ws.next_of("price_update", exchange="binance")
        finally:
            await updater.close()
    assert Decimal(marked["data"]["unrealized_pnl"]) == (Decimal("65000") - Decimal("64000.5")) * (
        Decimal("0.5")
    )
    assert price["data"] == {"symbol": "BTCUSDT", "exchange": "binance", "price": "64000.5"}
    assert feeds and not feeds[0].followed  # closed


async def _subscribed_upstream(stream: BinanceWsServer) -> bool:
    return stream.subscribed("BTCUSDT")
