"""`/ws/connect` over real sockets (uvicorn with the engine's protocol, the `websockets`
client): authentication, the message protocol, sequence numbers, per-user fan-out through
Redis pub/sub, topic filtering, slow and dead clients, token expiry and shutdown."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.config import Settings
from app.core import events
from app.core.events import EventType
from app.core.ws_hub import Hub
from app.embedded import redis as embedded_redis
from app.embedded.ports import free_port
from tests.conftest import Factory, make_settings, running_app
from tests.support.pipeline import eventually
from tests.support.ws import LocalServer, WsClient, served, ws_client, ws_url


@pytest.fixture
async def server(app: FastAPI, clean_state: None) -> AsyncIterator[LocalServer]:
    async with served(app) as running:
        yield running


@asynccontextmanager
async def _engine(
    settings: Settings, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, LocalServer]]:
    """An engine of its own (settings changed by `overrides`), served on a free port."""
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    db, redis = settings.DATABASE_URL.get_secret_value(), settings.REDIS_URL.get_secret_value()
    variant = make_settings(db, redis, settings.LOCAL_DIR, **overrides)
    async with running_app(variant) as app, served(app) as server:
        yield app, server


async def _publish(app: FastAPI, user_id: str, kind: EventType, data: dict[str, Any]) -> None:
    """As a worker would: straight onto the user's Redis channel."""
    await events.publish(app.state.redis, events.user_channel(user_id), kind, data)


async def _connected(client: WsClient) -> dict[str, Any]:
    return await client.next_of("connected")


def _sequence(client: WsClient) -> list[int]:
    return [m["seq"] for m in client.messages]


# --------------------------------------------------------------------------- authentication
async def test_query_token_connects_and_names_the_user(
    server: LocalServer, factory: Factory
) -> None:
    user = await factory.user()
    async with ws_client(ws_url(server, factory.access_token(user))) as client:
        hello = await _connected(client)
    assert hello["seq"] == 1
    assert hello["ts"].endswith("Z")
    assert hello["data"]["user_id"] == user.id
    assert "prices:<SYMBOL>" in hello["data"]["topics"]


async def test_subprotocol_token_connects_and_is_not_echoed(
    server: LocalServer, factory: Factory
) -> None:
    user = await factory.user()
    token = factory.access_token(user)
    async with ws_client(ws_url(server), subprotocols=["bearer", token]) as client:
        await _connected(client)
        assert client.connection.subprotocol == "bearer"


@pytest.mark.parametrize("how", ["query", "subprotocol", "none"])
async def test_a_bad_token_is_closed_with_4001(
    server: LocalServer, factory: Factory, how: str
) -> None:
    user = await factory.user()
    forged = factory.access_token(user)[:-4] + "AAAA"
    factory.secrets.add(forged)
    url = ws_url(server, forged) if how == "query" else ws_url(server)
    protocols = ["bearer", forged] if how == "subprotocol" else None
    async with ws_client(url, subprotocols=protocols) as client:
        code, _reason = await client.closed()
    assert code == 4001
    assert client.messages == []


async def test_a_token_of_no_account_is_closed_with_4003(
    server: LocalServer, app: FastAPI, factory: Factory
) -> None:
    token = app.state.local_issuer.mint("nobody-here", ttl_s=600)
    factory.secrets.add(token)
    async with ws_client(ws_url(server, token)) as client:
        code, _ = await client.closed()
    assert code == 4003


async def test_the_socket_closes_when_the_token_expires(
    server: LocalServer, app: FastAPI, factory: Factory
) -> None:
    user = await factory.user()
    token = app.state.local_issuer.mint(user.id, ttl_s=2)
    factory.secrets.add(token)
    async with ws_client(ws_url(server, token)) as client:
        await _connected(client)
        code, reason = await client.closed(timeout_s=10)
    assert (code, reason) == (4001, "token expired")


async def test_connections_per_user_are_capped(settings: Settings, factory: Factory) -> None:
    async with _engine(settings, WS_MAX_CONNECTIONS_PER_USER=2) as (_app, server):
        user = await factory.user()
        url = ws_url(server, factory.access_token(user))
        async with ws_client(url) as one:
            await _connected(one)
            async with ws_client(url) as two:
                await _connected(two)
                async with ws_client(url) as three:
                    code, _ = await three.closed()
    assert code == 4029


# --------------------------------------------------------------------------- protocol
async def test_protocol_answers_and_errors_keep_the_connection(
    server: LocalServer, factory: Factory
) -> None:
    user = await factory.user()
    async with ws_client(ws_url(server, factory.access_token(user))) as client:
        await _connected(client)
        await client.send({"type": "ping"})
        await client.next_of("pong")
        await client.send("{not json")
        assert (await client.next_of("error", code="invalid_json"))["data"]["message"]
        await client.send("[1, 2]")
        await client.next_of("error", code="invalid_message")
        await client.send({"type": "dance"})
        unknown = await client.next_of("error", code="unknown_type")
        assert unknown["data"]["field"] == "type"
        await client.send({"type": "subscribe", "topic": "gossip"})
        refused = await client.next_of("error", code="unknown_topic")
        assert refused["data"]["topic"] == "gossip"
        await client.send({"type": "subscribe"})
        await client.wait_for(
            lambda m: m["type"] == "error" and "topic" in m["data"] and m["data"]["topic"] is None
        )
        await client.send({"type": "subscribe", "topic": "prices:BINANCE:btcusdt.p"})
        await client.next_of("subscribed", topic="prices:BTCUSDT")
        await client.send({"type": "unsubscribe", "topic": "prices:BTCUSDT"})
        await client.next_of("unsubscribed", topic="prices:BTCUSDT")
        await client.send({"type": "ping"})
        await client.wait_for(lambda m: m["type"] == "pong" and m["seq"] > 5)
    seq = _sequence(client)
    assert seq == list(range(1, len(seq) + 1))  # per connection, from 1, no gaps


async def test_events_reach_only_their_user_and_only_subscribed_topics(
    server: LocalServer, app: FastAPI, factory: Factory
) -> None:
    alice, bob = await factory.user(), await factory.user()
    async with (
        ws_client(ws_url(server, factory.access_token(alice))) as a,
        ws_client(ws_url(server, factory.access_token(alice))) as a2,
        ws_client(ws_url(server, factory.access_token(bob))) as b,
    ):
        for client in (a, a2, b):
            await _connected(client)
            await client.send({"type": "subscribe", "topic": "trades"})
            await client.next_of("subscribed", topic="trades")
        await _publish(app, alice.id, EventType.POSITION_UPDATE, {"id": "p-1"})  # not subscribed
        await _publish(
            app, alice.id, EventType.TRADE_EXECUTED, {"id": "t-1", "fee": Decimal("0.1")}
        )
        await _publish(app, bob.id, EventType.TRADE_EXECUTED, {"id": "t-2"})
        await _publish(app, alice.id, EventType.NOTIFICATION, {"id": "n-1"})  # always delivered
        for client in (a, a2):
            await client.next_of("notification", id="n-1")
        await b.next_of("trade_executed", id="t-2")
        # Bob's marker arrived after Alice's events were published; none of them reached him.
        await _publish(app, bob.id, EventType.NOTIFICATION, {"id": "n-2"})
        await b.next_of("notification", id="n-2")
    for client in (a, a2):
        kinds = [(m["type"], m.get("data", {}).get("id")) for m in client.messages[2:]]
        assert kinds == [("trade_executed", "t-1"), ("notification", "n-1")]
        assert client.messages[2]["data"]["fee"] == "0.1"  # money travels as a string
    assert [m["data"]["id"] for m in b.of_type("trade_executed", "notification")] == ["t-2", "n-2"]


async def test_a_webhook_alert_is_announced_to_its_user(
    server: LocalServer, client: Any, factory: Factory
) -> None:
    user = await factory.user()
    token = await factory.webhook_token(user)
    async with ws_client(ws_url(server, factory.access_token(user))) as ws:
        await _connected(ws)
        await ws.send({"type": "subscribe", "topic": "signals"})
        await ws.next_of("subscribed")
        response = await client.post(
            "/api/webhooks/tradingview",
            json={
                "token": token,
                "action": "long_entry",
                "symbol": "BINANCE:ETHUSDT.P",
                "price": "3500",
                "stop_loss": "3400",
            },
        )
        assert response.status_code == 200
        received = await ws.next_of("signal_received", id=response.json()["signal_id"])
    assert received["data"]["symbol"] == "ETHUSDT"
    assert received["data"]["status"] == "queued"
    assert received["data"]["price"] == "3500.00000000"


async def test_prices_reach_subscribers_of_the_symbol_or_of_all_prices(
    server: LocalServer, app: FastAPI, factory: Factory
) -> None:
    user = await factory.user()
    token = factory.access_token(user)
    async with (
        ws_client(ws_url(server, token)) as btc,
        ws_client(ws_url(server, token)) as everything,
        ws_client(ws_url(server, token)) as none,
    ):
        for ws, topic in ((btc, "prices:BTCUSDT"), (everything, "prices")):
            await _connected(ws)
            await ws.send({"type": "subscribe", "topic": topic})
            await ws.next_of("subscribed")
        await _connected(none)
        wanted = await eventually(
            lambda: app.state.redis.zscore(events.WANTED_PRICES_KEY, "BTCUSDT"),
            lambda score: score is not None,
            what="BTCUSDT announced to the price updater",
        )
        assert wanted > 0
        publisher = events.EventPublisher(app.state.redis)
        runner = asyncio.create_task(publisher.run())
        try:
            publisher.emit_price({"symbol": "ETHUSDT", "exchange": "paper", "price": Decimal("1")})
            publisher.emit_price({"symbol": "BTCUSDT", "exchange": "paper", "price": Decimal("2")})
            await btc.next_of("price_update", symbol="BTCUSDT")
            await everything.next_of("price_update", symbol="BTCUSDT")
        finally:
            runner.cancel()
        await none.send({"type": "ping"})
        await none.next_of("pong")
    assert [m["data"]["symbol"] for m in btc.of_type("price_update")] == ["BTCUSDT"]
    assert [m["data"]["symbol"] for m in everything.of_type("price_update")] == [
        "ETHUSDT",
        "BTCUSDT",
    ]
    assert none.of_type("price_update") == []


# --------------------------------------------------------------------------- slow and dead clients
def _stalled_client(port: int, token: str) -> socket.socket:
    """A client that completes the handshake and then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/connect?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


def _wait_closed(sock: socket.socket) -> None:
    """Read what the server had sent until the connection ends (EOF or reset)."""
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    finally:
        sock.close()


async def test_a_stalled_client_is_dropped_while_a_healthy_one_keeps_receiving(
    settings: Settings, factory: Factory
) -> None:
    async with _engine(settings, WS_SEND_QUEUE_SIZE=16) as (small_queues, server):
        hub: Hub = small_queues.state.hub
        user = await factory.user()
        token = factory.access_token(user)
        stalled = await asyncio.to_thread(_stalled_client, server.port, token)
        async with ws_client(ws_url(server, token)) as healthy:
            await _connected(healthy)
            await eventually(lambda: _count(hub), lambda n: n == 2, what="both connected")
            padding = "x" * 8192
            for n in range(400):
                await _publish(small_queues, user.id, EventType.NOTIFICATION,
                               {"n": n, "padding": padding})  # fmt: skip
            await healthy.wait_for(lambda m: m.get("data", {}).get("n") == 399)
            await eventually(lambda: _count(hub), lambda n: n == 1, what="stalled dropped")
            assert hub.too_slow >= 1
            await asyncio.to_thread(_wait_closed, stalled)
    received = [m["data"]["n"] for m in healthy.of_type("notification")]
    assert received == list(range(400))
    assert _sequence(healthy) == list(range(1, len(healthy.messages) + 1))


async def _count(hub: Hub) -> int:
    return hub.connection_count


async def test_a_silent_client_is_closed_after_a_missed_heartbeat(
    settings: Settings, factory: Factory
) -> None:
    async with _engine(settings, WS_HEARTBEAT_S=0.3) as (_app, server):
        user = await factory.user()
        url = ws_url(server, factory.access_token(user))
        async with ws_client(url) as silent, ws_client(url) as polite:
            await _connected(polite)

            def pings_beyond(seen: int) -> Callable[[dict[str, Any]], bool]:
                return lambda _message: len(polite.of_type("ping")) > seen

            async def answer_pings() -> None:
                for seen in itertools.count():
                    await polite.wait_for(pings_beyond(seen))
                    await polite.send({"type": "pong"})

            answering = asyncio.create_task(answer_pings())
            try:
                code, reason = await silent.closed()
                await polite.wait_for(lambda m: len(polite.of_type("ping")) >= 4)
                # still open after 4 heartbeats
                assert not polite.connection.protocol.close_rcvd
            finally:
                answering.cancel()
    assert (code, reason) == (4002, "heartbeat timeout")
    assert silent.of_type("ping")


async def test_shutdown_closes_sockets_with_1001(settings: Settings, factory: Factory) -> None:
    async with _engine(settings) as (_app, server):
        user = await factory.user()
        async with ws_client(ws_url(server, factory.access_token(user))) as client:
            await _connected(client)
            server.should_exit = True
            code, _ = await client.closed()
    assert code == 1001


async def test_redis_publishing_needs_no_subscriber(app: FastAPI) -> None:
    # Events for a user with no socket anywhere are simply not delivered.
    redis: Redis = app.state.redis
    receivers = await redis.publish(events.user_channel("nobody"), b"{}")
    assert receivers == 0


async def test_a_dead_peer_is_found_by_protocol_pings(app: FastAPI, factory: Factory) -> None:
    # A peer that never answers a ping (gone without a FIN, or frozen) is closed by the server.
    hub: Hub = app.state.hub
    async with served(app, ws_ping_interval=0.2, ws_ping_timeout=0.2) as server:
        user = await factory.user()
        before = hub.connection_count
        frozen = await asyncio.to_thread(_stalled_client, server.port, factory.access_token(user))
        await eventually(lambda: _count(hub), lambda n: n == before + 1, what="connected")
        await asyncio.to_thread(_wait_closed, frozen)
        await eventually(lambda: _count(hub), lambda n: n == before, what="dead peer dropped")


async def test_sockets_outlive_a_redis_restart_and_are_told_to_resync(
    settings: Settings, factory: Factory, tmp_path: Path
) -> None:
    port = free_port()
    embedded_redis.start(tmp_path / "redis", port, persistent=False)
    try:
        async with _engine(settings, REDIS_URL=f"redis://127.0.0.1:{port}/0") as (app, server):
            user = await factory.user()
            async with ws_client(ws_url(server, factory.access_token(user))) as ws:
                await _connected(ws)
                await ws.send({"type": "subscribe", "topic": "trades"})
                await ws.next_of("subscribed")
                embedded_redis.stop(tmp_path / "redis")
                embedded_redis.start(tmp_path / "redis", port, persistent=False)
                await ws.next_of("resync")
                # Resubscribed: what is published now still arrives.
                await _publish(app, user.id, EventType.TRADE_EXECUTED, {"id": "after"})
                await ws.next_of("trade_executed", id="after")
    finally:
        embedded_redis.stop(tmp_path / "redis")
