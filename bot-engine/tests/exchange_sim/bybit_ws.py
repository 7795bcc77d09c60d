"""A local stand-in for Bybit's v5 public linear stream (tickers), as ccxt.pro's `bybit` uses
it (read from ccxt 4.5.90, `ccxt/pro/bybit.py`):

- ccxt connects to `urls['api']['ws']['public']['linear']`
  (`wss://stream.{hostname}/v5/public/linear`), one connection for every linear symbol. Point
  it here with that key set to `server.url` (`ws://127.0.0.1:<port>/v5/public/linear`).
- `{"op": "subscribe", "args": ["tickers.BTCUSDT"], "req_id": "1"}` is answered
  `{"success": true, "ret_msg": "", "conn_id": ..., "req_id": "1", "op": "subscribe"}`; a
  topic already subscribed on the connection fails the request
  (`"error:already subscribed,topic:..."`), one of no known channel too
  (`"error:handler not found,topic:..."`). `unsubscribe` answers the same way.
- A ticker topic gets a `snapshot` (every field) right after subscribing when the symbol has a
  price, then a `delta` of the changed fields per `push_ticker`; values are strings, as
  Bybit sends them, with the cross sequence `cs` and the server time `ts`.
- Keep-alive is the client's: `{"op": "ping", "req_id": ...}` every 20 s (ccxt: `keepAlive`
  18 s), answered as Bybit's public linear stream answers it,
  `{"success": true, "ret_msg": "pong", "conn_id": ..., "req_id": ..., "op": "ping"}`.
  Protocol ping frames are answered with pong frames.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from decimal import Decimal
from typing import Any

from tests.exchange_sim.binance_ws import BackgroundWsServer, Peer

PATH = "/v5/public/linear"
TICKER_CHANNEL = "tickers"
_NEXT_FUNDING_PERIOD_MS = 8 * 3_600_000


class BybitWsServer(BackgroundWsServer):
    """Bybit v5 public linear tickers on a free loopback port."""

    def __init__(self) -> None:
        super().__init__(ping_interval_s=None, ping_timeout_s=0)
        self._tickers: dict[str, dict[str, str]] = {}  # per symbol, every field as sent
        self._snapshots_sent: dict[int, set[str]] = {}  # per connection, topics snapshotted
        self._conn_ids: dict[int, str] = {}
        self._sequence = itertools.count(1)
        self._pings = 0

    @property
    def url(self) -> str:
        """What replaces ccxt's `urls['api']['ws']['public']['linear']`."""
        return f"ws://127.0.0.1:{self.port}{PATH}"

    @property
    def pings(self) -> int:
        """Application-level pings answered, on every connection ever."""
        with self._lock:
            return self._pings

    def accepts(self, path: str) -> bool:
        return path == PATH

    def ticker_topic(self, symbol: str) -> str:
        return f"{TICKER_CHANNEL}.{symbol}"

    def push_ticker(self, symbol: str, price: Decimal, *, mark_price: Decimal | None = None) -> int:
        """A trade at `price` on `symbol` (mark price `mark_price`, else `price`): subscribed
        connections get a delta of what changed, or the snapshot if they have had none yet.
        Returns how many connections it was sent to."""

        async def push() -> int:
            before = self._tickers.get(symbol)
            after = _ticker(symbol, price, mark_price or price, before)
            self._tickers[symbol] = after
            changed = {k: v for k, v in after.items() if before is None or before.get(k) != v}
            topic = self.ticker_topic(symbol)

            def message(peer: Peer) -> dict[str, Any]:
                sent = self._snapshots_sent.setdefault(peer.number, set())
                if topic in sent:
                    return _message(topic, "delta", {"symbol": symbol, **changed}, self._cs())
                sent.add(topic)
                return _message(topic, "snapshot", after, self._cs())

            return await self._broadcast(topic, message)

        return self._call(push)

    def _cs(self) -> int:
        return next(self._sequence)

    # ------------------------------------------------------------------ requests
    async def on_message(self, peer: Peer, text: str) -> None:
        conn_id = self._conn_ids.setdefault(peer.number, str(uuid.uuid4()))
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        op = request.get("op") if isinstance(request, dict) else None
        if not isinstance(request, dict) or op not in ("subscribe", "unsubscribe", "ping"):
            await self.send(peer, _invalid_op(conn_id, request))
            return
        reply: dict[str, Any] = {"success": True, "ret_msg": "", "conn_id": conn_id}
        if "req_id" in request:
            reply["req_id"] = str(request["req_id"])
        if op == "ping":
            with self._lock:
                self._pings += 1
            await self.send(peer, {**reply, "ret_msg": "pong", "op": "ping"})
            return
        topics = request.get("args")
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            await self.send(peer, {**reply, "success": False, "ret_msg": "error:args", "op": op})
            return
        self.record(peer, op, topics)
        problem = self._refusal(peer, op, topics)
        if problem is not None:
            await self.send(peer, {**reply, "success": False, "ret_msg": problem, "op": op})
            return
        if op == "unsubscribe":
            self.set_topics(peer, remove=topics)
            sent = self._snapshots_sent.setdefault(peer.number, set())
            sent.difference_update(topics)
            await self.send(peer, {**reply, "op": op})
            return
        self.set_topics(peer, add=topics)
        await self.send(peer, {**reply, "op": op})
        for topic in topics:  # Bybit follows a ticker subscription with the full ticker
            ticker = self._tickers.get(topic.removeprefix(f"{TICKER_CHANNEL}."))
            if ticker is not None:
                self._snapshots_sent.setdefault(peer.number, set()).add(topic)
                await self.send(peer, _message(topic, "snapshot", ticker, self._cs()))

    def _refusal(self, peer: Peer, op: str, topics: list[str]) -> str | None:
        for topic in topics:
            channel, _, symbol = topic.partition(".")
            if channel != TICKER_CHANNEL or not symbol:
                return f"error:handler not found,topic:{topic}"
            if op == "subscribe" and topic in peer.topics:
                return f"error:already subscribed,topic:{topic}"
        return None


def _invalid_op(conn_id: str, request: object) -> dict[str, Any]:
    op = request.get("op", "") if isinstance(request, dict) else ""
    args = request.get("args") if isinstance(request, dict) else None
    return {
        "success": False,
        "ret_msg": "error:invalid op",
        "conn_id": conn_id,
        "request": {"op": op, "args": args},
    }


def _message(topic: str, kind: str, data: dict[str, str], cs: int) -> dict[str, Any]:
    return {"topic": topic, "type": kind, "data": data, "cs": cs, "ts": _now_ms()}


def _ticker(
    symbol: str, price: Decimal, mark: Decimal, before: dict[str, str] | None
) -> dict[str, str]:
    """Every field of a linear ticker after a trade at `price`."""
    previous = Decimal(before["prevPrice24h"]) if before else price
    high = max(Decimal(before["highPrice24h"]), price) if before else price
    low = min(Decimal(before["lowPrice24h"]), price) if before else price
    volume = (Decimal(before["volume24h"]) if before else Decimal(0)) + Decimal("0.010")
    turnover = (Decimal(before["turnover24h"]) if before else Decimal(0)) + price / 100
    now = _now_ms()
    return {
        "symbol": symbol,
        "tickDirection": _tick_direction(price, before),
        "price24hPcnt": str(((price - previous) / previous).quantize(Decimal("0.000001"))),
        "lastPrice": str(price),
        "prevPrice24h": str(previous),
        "highPrice24h": str(high),
        "lowPrice24h": str(low),
        "prevPrice1h": str(previous),
        "markPrice": str(mark),
        "indexPrice": str(mark),
        "openInterest": "68744.761",
        "openInterestValue": str((Decimal("68744.761") * mark).quantize(Decimal("0.01"))),
        "turnover24h": str(turnover),
        "volume24h": str(volume),
        "nextFundingTime": str(now - now % _NEXT_FUNDING_PERIOD_MS + _NEXT_FUNDING_PERIOD_MS),
        "fundingRate": "0.0001",
        "bid1Price": str(price),
        "bid1Size": "1.000",
        "ask1Price": str(price),
        "ask1Size": "1.000",
    }


def _tick_direction(price: Decimal, before: dict[str, str] | None) -> str:
    if before is None:
        return "ZeroPlusTick"
    last = Decimal(before["lastPrice"])
    if price > last:
        return "PlusTick"
    if price < last:
        return "MinusTick"
    direction = before["tickDirection"]
    return direction if direction.startswith("Zero") else f"Zero{direction}"


def _now_ms() -> int:
    return int(time.time() * 1000)
