"""The WebSocket hub of one API process: its open connections, and the fan-out that brings
events published by any process (through Redis pub/sub) to the sockets of their user.

- One pub/sub connection per process. A user's channel is subscribed while that user has a
  socket here, and a new socket is told `connected` only once the subscription is confirmed,
  so it misses nothing published after that. Prices arrive on one shared channel.
- Each connection has a bounded send queue drained by its own sender task, the only writer
  of the socket. Delivering never waits: a client whose queue is full is too slow and is
  disconnected (4008); the others are not held up.
- Every server message carries the connection's sequence number (`seq`, from 1, no gaps): the
  hub serializes an event once and splices the number in front of it per connection.
- When the pub/sub connection is lost, the hub reconnects and resubscribes; the sockets then
  get a `resync` message, since events of the gap are gone (the REST API has the record).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from app.core.events import PRICE_CHANNEL, WANTED_PRICES_KEY, EventType, user_channel
from app.logging.logger import get_logger

log = get_logger("websocket")

# Close codes (4000-4999 are the application's own; see docs/api/websocket.md).
CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN = 1013
CLOSE_UNAUTHORIZED = 4001
CLOSE_HEARTBEAT = 4002
CLOSE_FORBIDDEN = 4003
CLOSE_TOO_SLOW = 4008
CLOSE_TOO_MANY = 4029

SUBSCRIBE_TIMEOUT_S = 5.0
# How long a closing frame may take to reach a client before its transport is dropped.
CLOSE_TIMEOUT_S = 1.0
# Symbols watched here are announced to the price updater for this long, refreshed at a third.
WANTED_TTL_S = 60.0

# Which subscription topic a user event belongs to.
TOPIC_OF = {
    EventType.SIGNAL_RECEIVED.value: "signals",
    EventType.SIGNAL_UPDATE.value: "signals",
    EventType.TRADE_EXECUTED.value: "trades",
    EventType.TRADE_UPDATE.value: "trades",
    EventType.POSITION_UPDATE.value: "positions",
}

Send = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]


def control(message_type: str, data: dict[str, Any] | None = None) -> str:
    """A message of the hub itself (connected, subscribed, pong, error, …) without `seq`."""
    body: dict[str, Any] = {"type": message_type, "ts": datetime.now(UTC)}
    if data is not None:
        body["data"] = data
    return orjson.dumps(body, option=orjson.OPT_UTC_Z).decode()


@dataclass(eq=False)
class Connection:
    """One client socket. `send` and `close` talk to it; `send_nowait` writes at once when the
    socket can take it (False when it cannot); `abort` drops its transport."""

    user_id: str
    send: Send
    close: Close
    queue_size: int
    abort: Callable[[], None] | None = None
    send_nowait: Callable[[str], bool] | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    topics: set[str] = field(default_factory=set)
    seq: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    _queue: asyncio.Queue[str] = field(init=False)
    _sender: asyncio.Task[None] | None = None
    _sending: bool = False  # the sender holds a message it is writing

    def __post_init__(self) -> None:
        self._queue = asyncio.Queue(self.queue_size)

    def start(self) -> None:
        self._sender = asyncio.create_task(self._send_loop(), name=f"ws-send-{self.id}")

    def deliver(self, body: str) -> bool:
        """Queue one message (`body` is a JSON object without `seq`); False when the client is
        too far behind to take it."""
        if self.closed.is_set():
            return True
        self.seq += 1
        text = f'{{"seq":{self.seq},{body[1:]}'
        # Nothing ahead of it: write now, without waking the sender (the common case).
        idle = not self._sending and self._queue.empty()
        if idle and self.send_nowait is not None and self.send_nowait(text):
            return True
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            self.seq -= 1
            return False
        return True

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def _send_loop(self) -> None:
        while True:
            text = await self._queue.get()
            self._sending = True
            try:
                await self.send(text)
            finally:
                self._sending = False

    async def shut(self, code: int, reason: str) -> None:
        """Stop sending and close the socket with `code`; a client that cannot even take the
        closing frame within CLOSE_TIMEOUT_S loses its transport."""
        if self.closed.is_set():
            return
        self.closed.set()
        self.close_code = code
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.close(code, reason)
        except TimeoutError:
            if self.abort is not None:
                self.abort()
        except Exception as exc:  # already gone: nothing more to close
            log.debug("ws_close_failed", error_type=type(exc).__name__)

    async def stop(self) -> None:
        """Stop the sender (the client is gone, or the socket was closed)."""
        self.closed.set()
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)


async def _cancel(task: asyncio.Task[None], timeout_s: float = 5.0) -> None:
    """Cancel `task` and wait for it. redis-py's reads may swallow a cancellation (a timeout
    inside them on Python 3.11), so it is repeated until the task has ended."""
    deadline = time.monotonic() + timeout_s
    while not task.done() and time.monotonic() < deadline:
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: an error while stopping is not worth a warning


class FanoutUnavailable(Exception):
    """Redis pub/sub could not be reached: the socket cannot be served now."""


class Hub:
    def __init__(self, redis: Redis, *, max_per_user: int) -> None:
        self.redis = redis
        self.max_per_user = max_per_user
        self.by_user: dict[str, set[Connection]] = defaultdict(set)
        self.delivered = 0
        self.too_slow = 0
        self._pubsub: PubSub = redis.pubsub()
        self._lock = asyncio.Lock()  # one subscribe/unsubscribe on the wire at a time
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._price_watchers: set[Connection] = set()
        self._reader: asyncio.Task[None] | None = None
        self._announcer: asyncio.Task[None] | None = None
        self._stopping = False
        self._connections = 0  # sockets registered here (a count: logged on every connect)
        self._background: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start the fan-out; it connects (and keeps reconnecting) in the background, so the
        API starts even while Redis is down."""
        self._reader = asyncio.create_task(self._read_loop(), name="ws-fanout")
        self._announcer = asyncio.create_task(self._announce_loop(), name="ws-wanted-prices")

    async def stop(self) -> None:
        """Close every socket with 1001 and the pub/sub connection."""
        connections = [c for conns in self.by_user.values() for c in conns]
        await asyncio.gather(
            *(c.shut(CLOSE_GOING_AWAY, "server shutting down") for c in connections)
        )
        self._stopping = True
        for task in (self._reader, self._announcer):
            if task is not None:
                await _cancel(task)
        try:
            # The reader is gone, so the socket can be closed and waited for (aclose() alone
            # does not wait, and the transport would outlive the event loop).
            if self._pubsub.connection is not None:
                await self._pubsub.connection.disconnect()
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        except (RedisError, OSError) as exc:
            log.debug("pubsub_close_failed", error_type=type(exc).__name__)

    @property
    def connection_count(self) -> int:
        return self._connections

    # ----------------------------------------------------------------- connections
    def has_room(self, user_id: str) -> bool:
        return len(self.by_user.get(user_id, ())) < self.max_per_user

    async def register(self, conn: Connection) -> None:
        """Add a socket; returns once its user's events are flowing to this process."""
        channel = user_channel(conn.user_id)
        first = not self.by_user.get(conn.user_id)
        self.by_user[conn.user_id].add(conn)
        self._connections += 1
        conn.start()
        try:
            if first:
                await self._subscribe(channel)
            await self._await_confirmation(channel)
        except (RedisError, OSError, TimeoutError) as exc:
            self.by_user[conn.user_id].discard(conn)
            self._connections -= 1
            raise FanoutUnavailable(type(exc).__name__) from exc
        log.info("ws_connected", connection_id=conn.id, connections=self.connection_count)

    async def unregister(self, conn: Connection) -> None:
        users = self.by_user.get(conn.user_id)
        if users is None or conn not in users:
            return
        users.discard(conn)
        self._connections -= 1
        self._price_watchers.discard(conn)
        if not users:
            del self.by_user[conn.user_id]
            try:
                async with self._lock:
                    if conn.user_id not in self.by_user:  # nobody came back meanwhile
                        await self._pubsub.unsubscribe(user_channel(conn.user_id))
            except (RedisError, OSError) as exc:  # resubscription after a reconnect skips it
                log.debug("unsubscribe_failed", error_type=type(exc).__name__)
        log.info("ws_disconnected", connection_id=conn.id, close_code=conn.close_code,
                 connections=self.connection_count)  # fmt: skip

    def topics_changed(self, conn: Connection, subscribed: str | None = None) -> None:
        """Call after `conn.topics` changed (`subscribed`: the topic just added): price
        delivery follows, and a newly watched symbol is announced to the price updater."""
        if any(t == "prices" or t.startswith("prices:") for t in conn.topics):
            self._price_watchers.add(conn)
        else:
            self._price_watchers.discard(conn)
        if subscribed is not None and subscribed.startswith("prices:"):
            self._spawn(self._announce([subscribed.split(":", 1)[1]]))

    def deliver(self, conn: Connection, body: str) -> None:
        if conn.deliver(body):
            self.delivered += 1
            return
        self.too_slow += 1
        log.warning("ws_client_too_slow", connection_id=conn.id, backlog=conn.backlog)
        self._spawn(conn.shut(CLOSE_TOO_SLOW, "too slow: send queue full"))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, holding a reference until it is done."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ----------------------------------------------------------------- fan-out
    async def _subscribe(self, channel: str) -> None:
        async with self._lock:
            future = self._confirm.get(channel)
            if future is None or future.done():
                self._confirm[channel] = asyncio.get_running_loop().create_future()
            await self._pubsub.subscribe(channel)

    async def _await_confirmation(self, channel: str) -> None:
        future = self._confirm.get(channel)
        if future is not None:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await asyncio.shield(future)

    async def _read_loop(self) -> None:
        lost = False
        connected = False
        delay = 0.2
        while not self._stopping:
            try:
                if not connected:  # the first subscription opens the pub/sub connection
                    await self._subscribe(PRICE_CHANNEL)
                    connected = True
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                if not lost:
                    log.warning("ws_fanout_lost", error_type=type(exc).__name__)
                lost = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if lost:
                lost, delay = False, 0.2
                log.info("ws_fanout_restored")
                self._broadcast(control("resync", {"reason": "real-time events were missed"}))
            if message is not None:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message["channel"].decode()
        if kind == "subscribe":
            future = self._confirm.get(channel)
            if future is not None and not future.done():
                future.set_result(None)
            return
        if kind != "message":
            return
        raw: bytes = message["data"]
        body = raw.decode()
        if channel == PRICE_CHANNEL:
            self._deliver_price(body, orjson.loads(raw))
            return
        user_id = channel.rsplit(":", 1)[1]
        connections = self.by_user.get(user_id)
        if not connections:
            return
        event_type = orjson.loads(raw)["type"]
        topic = TOPIC_OF.get(event_type)
        for conn in list(connections):
            if topic is None or topic in conn.topics:
                self.deliver(conn, body)

    def _deliver_price(self, body: str, event: dict[str, Any]) -> None:
        symbol_topic = "prices:" + str(event["data"]["symbol"])
        for conn in list(self._price_watchers):
            if "prices" in conn.topics or symbol_topic in conn.topics:
                self.deliver(conn, body)

    def _broadcast(self, body: str) -> None:
        for connections in list(self.by_user.values()):
            for conn in list(connections):
                self.deliver(conn, body)

    # ----------------------------------------------------------------- watched symbols
    def _watched_symbols(self) -> set[str]:
        return {
            topic.split(":", 1)[1]
            for conn in self._price_watchers
            for topic in conn.topics
            if topic.startswith("prices:")
        }

    async def _announce(self, symbols: list[str]) -> None:
        """Tell the price updater to price `symbols` for the next WANTED_TTL_S."""
        if not symbols:
            return
        now = time.time()
        try:
            await self.redis.zadd(WANTED_PRICES_KEY, dict.fromkeys(symbols, now + WANTED_TTL_S))
        except (RedisError, OSError) as exc:
            log.warning("wanted_prices_not_announced", error_type=type(exc).__name__)
            return

    async def _announce_loop(self) -> None:
        while True:
            await asyncio.sleep(WANTED_TTL_S / 3)
            await self._announce(sorted(self._watched_symbols()))
