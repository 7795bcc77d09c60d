"""The engine served over real sockets by uvicorn (with the engine's WebSocket protocol), and a
WebSocket client for tests built on the `websockets` library."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.api.ws_server import EngineWebSocketProtocol
from app.embedded.ports import free_port

RECV_TIMEOUT_S = 10.0
# What a dashboard follows: everything of its user except prices.
DASHBOARD_TOPICS = ("signals", "trades", "positions")


class LocalServer(uvicorn.Server):
    """uvicorn serving on `port` of 127.0.0.1."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.port = config.port


@asynccontextmanager
async def served(app: FastAPI, **config: Any) -> AsyncIterator[LocalServer]:
    """Serve an app whose lifespan already ran on a free loopback port."""
    port = free_port()
    server = LocalServer(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,
            ws=EngineWebSocketProtocol,
            **config,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


def ws_url(server: LocalServer, token: str | None = None) -> str:
    url = f"ws://127.0.0.1:{server.port}/ws/connect"
    return url if token is None else f"{url}?token={token}"


class WsClient:
    """A connected client that collects every message it receives; with `answer_pings` it
    answers the server's heartbeat `ping` as a dashboard does (needed past WS_HEARTBEAT_S)."""

    def __init__(self, connection: ClientConnection, *, answer_pings: bool = False) -> None:
        self.connection = connection
        self.answer_pings = answer_pings
        self.messages: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                message = orjson.loads(raw)
                if self.answer_pings and message.get("type") == "ping":
                    await self.connection.send('{"type":"pong"}')
                async with self._arrived:
                    self.messages.append(message)
                    self._arrived.notify_all()
        except ConnectionClosed:
            pass
        finally:
            async with self._arrived:
                self._arrived.notify_all()

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.connection.send(
            message if isinstance(message, str) else orjson.dumps(message).decode()
        )

    async def wait_for(
        self, match: Callable[[dict[str, Any]], bool], *, timeout_s: float = RECV_TIMEOUT_S
    ) -> dict[str, Any]:
        """The first message (received so far or later) that `match`es."""
        async with asyncio.timeout(timeout_s):
            async with self._arrived:
                while True:
                    for message in self.messages:
                        if match(message):
                            return message
                    if self._reader.done():
                        raise AssertionError(f"closed before a match; got {self.messages}")
                    await self._arrived.wait()

    async def next_of(self, message_type: str, **data: Any) -> dict[str, Any]:
        def match(m: dict[str, Any]) -> bool:
            return m["type"] == message_type and all(
                m.get("data", {}).get(k) == v for k, v in data.items()
            )

        return await self.wait_for(match)

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] in types]

    async def closed(self, timeout_s: float = RECV_TIMEOUT_S) -> tuple[int | None, str]:
        """(close code, reason) once the server closed the connection."""
        async with asyncio.timeout(timeout_s):
            await self.connection.wait_closed()
        await self._reader
        close = self.connection.protocol.close_rcvd
        return (close.code, close.reason) if close else (None, "")

    async def aclose(self) -> None:
        await self.connection.close()
        await self._reader


async def open_dashboard(client: WsClient, topics: Iterable[str] = DASHBOARD_TOPICS) -> None:
    """What a dashboard does once connected: wait for `connected`, then subscribe to each
    topic and wait until the hub confirms it (events after that reach this client)."""
    await client.next_of("connected")
    for topic in topics:
        await client.send({"type": "subscribe", "topic": topic})
        await client.next_of("subscribed", topic=topic)


@asynccontextmanager
async def ws_client(
    url: str, *, subprotocols: list[str] | None = None, answer_pings: bool = False, **options: Any
) -> AsyncIterator[WsClient]:
    async with connect(url, subprotocols=subprotocols, open_timeout=10,  # type: ignore[arg-type]
                       **options) as connection:  # fmt: skip
        client = WsClient(connection, answer_pings=answer_pings)
        try:
            yield client
        finally:
            await client.aclose()
