"""A local stand-in for Binance USDⓈ-M futures market streams (ticker events), as ccxt.pro's
`binanceusdm` uses them (read from ccxt 4.5.90, `ccxt/pro/binance.py`):

- ccxt takes `urls['api']['ws']['linear']` (`wss://fstream.binance.com/ws`) and, since it ends
  in `/ws`, routes ticker streams to `<base>/market/ws/<n>` (`get_ws_url` with the category
  of `get_future_ws_category('ticker')`), one connection per symbol (`<n>` is a stream index).
  Point it here with `urls['api']['ws']['linear'] = server.url` (`ws://127.0.0.1:<port>/ws`).
  Connections to `/market/ws[/...]` and the legacy `/ws[/...]` are accepted; other paths 404.
- Live subscriptions: `{"method": "SUBSCRIBE", "params": ["btcusdt@ticker"], "id": 1}` is
  answered `{"result": null, "id": 1}`; `UNSUBSCRIBE` likewise; `LIST_SUBSCRIPTIONS` answers
  the connection's streams. A malformed request gets Binance's `{"error": {"code", "msg"}}`.
- `<symbol>@ticker` pushes raw `24hrTicker` events (`e`, `E`, `s`, `p`, `P`, `w`, `c`, `Q`,
  `o`, `h`, `l`, `v`, `q`, `O`, `C`, `F`, `L`, `n`: USDⓈ-M tickers carry no bid/ask) and
  `<symbol>@miniTicker` `24hrMiniTicker` events (ccxt's default for `watch_tickers`), only
  when the test calls `push_ticker` (Binance sends them every 500 ms / 1 s).
- Keep-alive as Binance does it: the server sends a ping frame every `ping_interval_s`
  (Binance: 3 minutes) and disconnects a client whose pong does not come within
  `ping_timeout_s` (Binance: 10 minutes); client pings are answered with pongs.

`BackgroundWsServer`, the lifecycle shared with the Bybit stand-in, runs a `websockets` server
on a free loopback port with its own event loop in a background thread; a test drives it from
its own loop through blocking calls (`push_ticker`, `drop_connections`) and reads what it
recorded (`subscriptions`, `connections`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

T = TypeVar("T")

CALL_TIMEOUT_S = 5.0  # a blocking call into the server's loop that takes longer is a bug


@dataclass(frozen=True)
class SubscriptionRequest:
    """One (un)subscribe request a client sent, as received."""

    connection: int  # connections are numbered 1, 2, ... in the order they were opened
    action: str  # "subscribe" | "unsubscribe"
    topics: tuple[str, ...]  # Binance stream names or Bybit topics


@dataclass(eq=False)
class Peer:
    """One open client connection."""

    number: int
    path: str
    ws: ServerConnection
    topics: set[str] = field(default_factory=set)
    pongs: int = 0  # answers to the server's ping frames


class BackgroundWsServer:
    """A websockets server on a free loopback port, served by its own event loop in a daemon
    thread. Subclasses say which paths they accept (`accepts`), answer client messages
    (`on_message`, on the server's loop) and name their ticker topics (`ticker_topic`)."""

    def __init__(self, *, ping_interval_s: float | None, ping_timeout_s: float) -> None:
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._lock = threading.Lock()  # guards what the test thread reads
        self._peers: dict[int, Peer] = {}
        self._numbers = itertools.count(1)
        self._opened = 0
        self._subscriptions: list[SubscriptionRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing: set[asyncio.Task[None]] = set()  # server-initiated closes under way

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(),), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout=CALL_TIMEOUT_S):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def stop(self) -> None:
        """Close every connection (1001 going away) and the listening socket."""
        if self._thread is None:
            self._sock.close()
            return
        assert self._loop is not None and self._stopping is not None
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=CALL_TIMEOUT_S * 3)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server: Server
        async with serve(
            self._serve,
            sock=self._sock,
            process_request=self._check_path,
            ping_interval=None,  # keep-alive is the subclass's protocol (see _keepalive)
        ) as server:
            self._ready.set()
            await self._stopping.wait()
            server.close()  # leaving the block waits for every handler to finish

    # ------------------------------------------------------------------ what tests read
    @property
    def subscriptions(self) -> list[SubscriptionRequest]:
        with self._lock:
            return list(self._subscriptions)

    @property
    def connections(self) -> list[str]:
        """Paths of the open connections, oldest first."""
        with self._lock:
            return [peer.path for peer in self._peers.values()]

    @property
    def connections_opened(self) -> int:
        with self._lock:
            return self._opened

    @property
    def pongs(self) -> int:
        """Pongs the open connections sent in answer to the server's pings."""
        with self._lock:
            return sum(peer.pongs for peer in self._peers.values())

    def subscribed(self, symbol: str) -> bool:
        """Whether an open connection follows `symbol`'s ticker."""
        topic = self.ticker_topic(symbol)
        with self._lock:
            return any(topic in peer.topics for peer in self._peers.values())

    def subscribe_requests(self, symbol: str) -> int:
        """How many subscribe requests named `symbol`'s ticker, on any connection ever."""
        topic = self.ticker_topic(symbol)
        return sum(1 for r in self.subscriptions if r.action == "subscribe" and topic in r.topics)

    # ------------------------------------------------------------------ what tests do
    def drop_connections(self, *, abrupt: bool = False) -> int:
        """Disconnect every client: a close frame 1001 (going away, as at a server restart)
        or, `abrupt`, a dropped TCP connection. Returns how many were dropped.

        The closing handshakes finish in the background: the clients answer them on the
        test's loop, which this call blocks."""

        async def drop() -> int:
            with self._lock:
                peers = list(self._peers.values())
            for peer in peers:
                if abrupt:
                    peer.ws.transport.abort()
                else:
                    closing = asyncio.create_task(peer.ws.close(1001, "going away"))
                    self._closing.add(closing)
                    closing.add_done_callback(self._closing.discard)
            return len(peers)

        return self._call(drop)

    def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn()` on the server's loop and wait for its result (from the test's thread)."""
        if self._loop is None or self._thread is None:
            raise RuntimeError(f"{type(self).__name__} is not running")

        async def run() -> T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(CALL_TIMEOUT_S)

    async def _broadcast(self, topic: str, message: Callable[[Peer], dict[str, Any]]) -> int:
        """Send `message(peer)` to every connection subscribed to `topic`; how many got it."""
        with self._lock:
            peers = [peer for peer in self._peers.values() if topic in peer.topics]
        sent = 0
        for peer in peers:
            try:
                await self.send(peer, message(peer))
            except ConnectionClosed:
                continue
            sent += 1
        return sent

    # ------------------------------------------------------------------ for subclasses
    def accepts(self, path: str) -> bool:
        raise NotImplementedError

    def ticker_topic(self, symbol: str) -> str:
        raise NotImplementedError

    async def on_message(self, peer: Peer, text: str) -> None:
        raise NotImplementedError

    async def send(self, peer: Peer, message: dict[str, Any]) -> None:
        await peer.ws.send(json.dumps(message, separators=(",", ":")))

    def record(self, peer: Peer, action: str, topics: Iterable[str]) -> None:
        with self._lock:
            self._subscriptions.append(SubscriptionRequest(peer.number, action, tuple(topics)))

    def set_topics(self, peer: Peer, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        with self._lock:
            peer.topics.update(add)
            peer.topics.difference_update(remove)

    # ------------------------------------------------------------------ connections
    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if self.accepts(path):
            return None
        return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")

    async def _serve(self, ws: ServerConnection) -> None:
        peer = Peer(next(self._numbers), ws.request.path if ws.request else "", ws)
        with self._lock:
            self._peers[peer.number] = peer
            self._opened += 1
        keepalive = asyncio.create_task(self._keepalive(peer)) if self.ping_interval_s else None
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode()
                await self.on_message(peer, text)
        except ConnectionClosed:
            pass
        finally:
            if keepalive is not None:
                keepalive.cancel()
                await asyncio.wait([keepalive])
            with self._lock:
                del self._peers[peer.number]

    async def _keepalive(self, peer: Peer) -> None:
        assert self.ping_interval_s is not None
        while True:
            await asyncio.sleep(self.ping_interval_s)
            try:
                pong = await peer.ws.ping()
                await asyncio.wait_for(pong, timeout=self.ping_timeout_s)
            except TimeoutError:
                await peer.ws.close(1011, "keepalive ping timeout")
                return
            except ConnectionClosed:
                return
            with self._lock:
                peer.pongs += 1


# Binance's error codes for malformed stream requests.
UNKNOWN_PROPERTY, INVALID_VALUE, INVALID_REQUEST, INVALID_JSON = 0, 1, 2, 3
_ROUTES = ("/market/ws", "/ws")
_MINI_TICKER_FIELDS = ("E", "s", "c", "o", "h", "l", "v", "q")


class BinanceWsServer(BackgroundWsServer):
    """Binance USDⓈ-M futures market streams (24h tickers) on a free loopback port. The ping
    settings apply to connections opened after they are set."""

    def __init__(self, *, ping_interval_s: float = 180.0, ping_timeout_s: float = 600.0) -> None:
        super().__init__(ping_interval_s=ping_interval_s, ping_timeout_s=ping_timeout_s)
        self._stats: dict[str, _Stats] = {}  # per symbol, on the server's loop
        self._trade_ids = itertools.count(1)

    @property
    def url(self) -> str:
        """What replaces ccxt's `urls['api']['ws']['linear']` (`wss://fstream.binance.com/ws`)."""
        return f"ws://127.0.0.1:{self.port}/ws"

    def accepts(self, path: str) -> bool:
        return any(path == route or path.startswith(route + "/") for route in _ROUTES)

    def ticker_topic(self, symbol: str) -> str:
        return f"{symbol.lower()}@ticker"

    def push_ticker(self, symbol: str, price: Decimal) -> int:
        """A trade at `price` on `symbol`: its `24hrTicker` event goes to every connection
        subscribed to `<symbol>@ticker`. Returns how many connections it was sent to."""

        async def push() -> int:
            stats = self._stats.setdefault(symbol, _Stats(open=price, high=price, low=price))
            stats.trade(price, next(self._trade_ids))
            event = stats.event(symbol, price, _now_ms())
            mini = {key: event[key] for key in _MINI_TICKER_FIELDS} | {"e": "24hrMiniTicker"}
            sent = await self._broadcast(self.ticker_topic(symbol), lambda _peer: event)
            return sent + await self._broadcast(f"{symbol.lower()}@miniTicker", lambda _: mini)

        return self._call(push)

    async def on_message(self, peer: Peer, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError as exc:
            await self._error(peer, INVALID_JSON, f"Invalid JSON: {exc}", None)
            return
        if not isinstance(request, dict):
            await self._error(peer, INVALID_REQUEST, "Invalid request: expected an object", None)
            return
        request_id = request.get("id")
        if not (request_id is None or isinstance(request_id, int | str)) or isinstance(
            request_id, bool
        ):
            await self._error(peer, INVALID_VALUE, "Invalid value type: id", None)
            return
        method = request.get("method")
        if method == "LIST_SUBSCRIPTIONS":
            await self.send(peer, {"result": sorted(peer.topics), "id": request_id})
            return
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            await self._error(
                peer, INVALID_REQUEST, f"Invalid request: method {method!r}", request_id
            )
            return
        streams = request.get("params")
        if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
            await self._error(peer, INVALID_VALUE, "Invalid value type: params", request_id)
            return
        if method == "SUBSCRIBE":
            self.record(peer, "subscribe", streams)
            self.set_topics(peer, add=streams)
        else:
            self.record(peer, "unsubscribe", streams)
            self.set_topics(peer, remove=streams)
        await self.send(peer, {"result": None, "id": request_id})

    async def _error(self, peer: Peer, code: int, message: str, request_id: object) -> None:
        await self.send(peer, {"error": {"code": code, "msg": message}, "id": request_id})


@dataclass
class _Stats:
    """A symbol's rolling 24 h statistics, as far as the pushed trades make them."""

    open: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal = Decimal(0)
    quote_volume: Decimal = Decimal(0)
    first_id: int = 0
    last_id: int = 0
    count: int = 0
    quantity: Decimal = Decimal("0.010")

    def trade(self, price: Decimal, trade_id: int) -> None:
        self.high, self.low = max(self.high, price), min(self.low, price)
        self.volume += self.quantity
        self.quote_volume += self.quantity * price
        self.first_id = self.first_id or trade_id
        self.last_id = trade_id
        self.count += 1

    def event(self, symbol: str, price: Decimal, now_ms: int) -> dict[str, Any]:
        change = price - self.open
        percent = (change / self.open * 100).quantize(Decimal("0.001"))
        weighted = (self.quote_volume / self.volume).quantize(price) if self.volume else price
        return {
            "e": "24hrTicker",
            "E": now_ms,
            "s": symbol,
            "p": str(change),
            "P": str(percent),
            "w": str(weighted),
            "c": str(price),
            "Q": str(self.quantity),
            "o": str(self.open),
            "h": str(self.high),
            "l": str(self.low),
            "v": str(self.volume),
            "q": str(self.quote_volume),
            "O": now_ms - 86_400_000,
            "C": now_ms,
            "F": self.first_id,
            "L": self.last_id,
            "n": self.count,
        }


def _now_ms() -> int:
    return int(time.time() * 1000)
