"""A small HTTP/1.1 load generator on asyncio streams (keep-alive, no client library).

Two shapes:

- `fixed_rate`: open loop. Request i is due at `start + i / rate` whether or not earlier ones
  have been answered (what TradingView does: alerts arrive when the market says so). Latency
  is measured from the moment a request was *due*, not from when it could be sent, so a
  server that falls behind is charged for the queue it builds (no coordinated omission).
  Connections are reused when idle and opened when none is, up to `max_connections`; an
  alert that finds them all busy waits for one (its wait counts in its latency). The cap
  bounds how much work a server that has fallen behind still has queued when a pass ends.
- `closed_loop`: `connections` clients each send their next request as soon as the previous
  answer arrives, for `duration_s` (what `wrk -c N` does). Used for throughput only when wrk is
  not installed.

A request that gets no answer within `timeout_s` of being due counts as a `timeout` (its
connection is dropped), or as `unsent` if it was still waiting for a connection. Both
shapes return a `LoadResult`; `summary()` turns it into printable numbers.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BodyFn = Callable[[int], bytes]


@dataclass
class LoadResult:
    duration_s: float  # from the first request due to the last answer or timeout
    sent: int = 0
    answered: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # timeout, connect, reset
    latencies_ms: list[float] = field(default_factory=list)  # answered requests only
    statuses_by_body: Counter[str] = field(default_factory=Counter)  # e.g. queued, duplicate

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    def percentile_ms(self, p: float) -> float:
        """Percentile over every request sent; unanswered ones count as infinitely slow."""
        if not self.sent:
            return math.nan
        ordered = sorted(self.latencies_ms)
        rank = max(1, math.ceil(p / 100 * self.sent))
        return ordered[rank - 1] if rank <= len(ordered) else math.inf

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.sent,
            "answered": self.answered,
            "rps": self.answered / self.duration_s if self.duration_s else 0.0,
            "p50_ms": self.percentile_ms(50),
            "p99_ms": self.percentile_ms(99),
            "max_ms": max(self.latencies_ms, default=math.nan),
            "non_2xx": self.non_2xx,
            "errors": dict(self.errors),
            "statuses": dict(self.statuses),
        }


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request, read one response: (status, body)."""
        self.writer.write(raw)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionResetError("server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        keep_alive = True
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection" and value.strip().lower() == b"close":
                keep_alive = False
        body = await self.reader.readexactly(length) if length else b""
        if not keep_alive:
            self.close()
            raise _Closed(status, body)
        return status, body

    def close(self) -> None:
        self.writer.close()


class _Closed(Exception):
    """The response was complete but the server closed the connection after it."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body


def http_post(host: str, port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _body_status(body: bytes) -> str:
    """The `status` field of a webhook answer (queued/logged/duplicate) or the error code."""
    for key in (b'"status":"', b'"code":"'):
        at = body.find(key)
        if at >= 0:
            end = body.find(b'"', at + len(key))
            return body[at + len(key) : end].decode(errors="replace")
    return "?"


# uvicorn closes a keep-alive connection after 5 s without a request; reusing one that old
# races with the server closing it, so older idle connections are dropped instead.
MAX_IDLE_S = 4.0


class _Pool:
    def __init__(self, host: str, port: int, max_connections: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[float, _Connection]] = []  # (idle since, connection)
        self.slots = asyncio.Semaphore(max_connections)
        self.opened = 0

    def _reusable(self) -> _Connection | None:
        now = time.monotonic()
        while self.idle:
            since, conn = self.idle.pop()
            if now - since < MAX_IDLE_S:
                return conn
            conn.close()
        return None

    async def send(self, raw: bytes, attempt: _Attempt) -> tuple[int, bytes]:
        async with self.slots:
            attempt.sent = True
            conn = self._reusable()
            if conn is None:
                conn = await _Connection.open(self.host, self.port)
                self.opened += 1
            try:
                status, body = await conn.request(raw)
            except _Closed as closed:
                return closed.status, closed.body
            except BaseException:
                conn.close()
                raise
            self.idle.append((time.monotonic(), conn))
            return status, body

    def close(self) -> None:
        for _, conn in self.idle:
            conn.close()
        self.idle.clear()


@dataclass
class _Attempt:
    sent: bool = False  # a connection was free and the request went out


async def _one(pool: _Pool, raw: bytes, due: float, timeout_s: float, result: LoadResult) -> None:
    attempt = _Attempt()
    try:
        async with asyncio.timeout(timeout_s):
            status, body = await pool.send(raw, attempt)
    except TimeoutError:
        # Unanswered in time; "unsent": every connection was still busy with earlier alerts.
        result.errors["timeout" if attempt.sent else "unsent"] += 1
        return
    except (ConnectionRefusedError, OSError) as exc:
        result.errors["reset" if isinstance(exc, ConnectionResetError) else "connect"] += 1
        return
    except asyncio.IncompleteReadError:
        result.errors["reset"] += 1
        return
    result.latencies_ms.append((time.perf_counter() - due) * 1000)
    result.answered += 1
    result.statuses[status] += 1
    result.statuses_by_body[_body_status(body)] += 1


async def fixed_rate(
    host: str,
    port: int,
    path: str,
    body: BodyFn,
    *,
    rate: float,
    duration_s: float,
    timeout_s: float = 10.0,
    max_connections: int = 64,
) -> LoadResult:
    """Open-loop load: `rate` requests a second for `duration_s`; see the module docstring."""
    pool = _Pool(host, port, max_connections)
    total = int(rate * duration_s)
    result = LoadResult(duration_s=0.0)
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter() + 0.05
    try:
        for i in range(total):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            raw = http_post(host, port, path, body(i))
            task = asyncio.create_task(_one(pool, raw, due, timeout_s, result))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            result.sent += 1
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        pool.close()
    result.duration_s = time.perf_counter() - start
    return result


async def closed_loop(
    host: str,
    port: int,
    path: str,
    body: BodyFn,
    *,
    connections: int,
    duration_s: float,
    timeout_s: float = 10.0,
) -> LoadResult:
    """Closed-loop load from `connections` clients for `duration_s` (the wrk shape)."""
    result = LoadResult(duration_s=0.0)
    counter = iter(range(10**9))
    start = time.perf_counter()
    deadline = start + duration_s

    async def client() -> None:
        pool = _Pool(host, port, 1)
        try:
            while time.perf_counter() < deadline:
                i = next(counter)
                result.sent += 1
                await _one(
                    pool,
                    http_post(host, port, path, body(i)),
                    time.perf_counter(),
                    timeout_s,
                    result,
                )
        finally:
            pool.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    result.duration_s = time.perf_counter() - start
    return result
