"""Optional direct push of the engine's log lines to Loki (`LOKI_URL`).

The usual path is stdout → a log agent (Alloy) → Loki. Where no agent runs, this handler
ships the same JSON lines itself:

- `emit` only appends the rendered line to a bounded buffer, so logging never waits on the
  network. A full buffer drops the line and counts it (`buffer_full`).
- A daemon thread sends batches (`LOKI_BATCH_LINES` lines, or whatever is waiting every
  `LOKI_FLUSH_INTERVAL_S`) to `POST /loki/api/v1/push`. A batch Loki refuses or that cannot
  be delivered after a few tries is dropped and counted (`push_failed`); while Loki is
  down the thread backs off instead of spinning.
- Streams are keyed by the low-cardinality labels only (`LABELS`); request, user, signal,
  trade and strategy ids travel as structured metadata, which Loki indexes without making
  one stream per id.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

LABELS = ("env", "service", "component", "level", "exchange")
METADATA = ("request_id", "user_id", "signal_id", "trade_id", "strategy_id")
PUSH_PATH = "/loki/api/v1/push"
# A batch that fails this many times in a row is given up (Loki down for a while: the
# buffer keeps filling meanwhile and overflows into counted drops).
MAX_ATTEMPTS = 3
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class LokiTarget:
    url: str
    tenant_id: str | None = None
    username: str | None = None
    password: str | None = None
    batch_lines: int = 500
    flush_interval_s: float = 1.0
    buffer_lines: int = 10_000
    timeout_s: float = 3.0

    @property
    def push_url(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith(PUSH_PATH) else base + PUSH_PATH

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.tenant_id:
            headers["X-Scope-OrgID"] = self.tenant_id
        if self.username is not None and self.password is not None:
            pair = f"{self.username}:{self.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers


def push_body(entries: list[tuple[int, str]]) -> bytes:
    """The push API's JSON body for rendered lines `(unix ns, line)`, grouped into streams."""
    streams: dict[tuple[tuple[str, str], ...], list[list[Any]]] = {}
    for ns, line in entries:
        try:
            fields = orjson.loads(line)
        except orjson.JSONDecodeError:
            fields = {}
        if not isinstance(fields, dict):
            fields = {}
        labels = tuple(
            (name, str(fields[name])) for name in LABELS if fields.get(name) not in (None, "")
        )
        metadata = {n: str(fields[n]) for n in METADATA if fields.get(n) not in (None, "")}
        value: list[Any] = [str(ns), line, metadata] if metadata else [str(ns), line]
        streams.setdefault(labels or (("service", "unknown"),), []).append(value)
    return orjson.dumps({"streams": [{"stream": dict(k), "values": v} for k, v in streams.items()]})


class LokiHandler(logging.Handler):
    """A logging handler that queues rendered lines for the background shipper."""

    def __init__(self, target: LokiTarget, *, transport: httpx.BaseTransport | None = None):
        super().__init__()
        self.target = target
        self.shipped = 0
        self.dropped: dict[str, int] = {"buffer_full": 0, "push_failed": 0}
        self._buffer: deque[tuple[int, str]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._client = httpx.Client(
            timeout=target.timeout_s, headers=target.headers(), transport=transport
        )
        self._thread = threading.Thread(target=self._run, name="loki-shipper", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ logging side
    def emit(self, record: logging.LogRecord) -> None:
        if threading.current_thread() is self._thread:
            return  # the shipper's own troubles (its HTTP client) would feed on themselves
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        entry = (int(record.created * 1e9), line)
        with self._lock:
            if len(self._buffer) >= self.target.buffer_lines:
                self.dropped["buffer_full"] += 1
                return
            self._buffer.append(entry)
            self._idle.clear()
            full = len(self._buffer) >= self.target.batch_lines
        if full:
            self._wake.set()

    def counts(self) -> tuple[int, Mapping[str, int]]:
        with self._lock:
            return self.shipped, dict(self.dropped)

    def waiting(self) -> int:
        with self._lock:
            return len(self._buffer)

    def drain(self, timeout_s: float = 5.0) -> bool:
        """Ask for an immediate send and wait until the buffer is empty (or `timeout_s`)."""
        self._wake.set()
        return self._idle.wait(timeout_s)

    def close(self) -> None:
        """Send what is waiting (for at most one request timeout), then stop the thread."""
        if not self._stopping.is_set():
            self._stopping.set()
            self._wake.set()
            self._thread.join(self.target.timeout_s * MAX_ATTEMPTS + 1)
            self._client.close()
        super().close()

    # ------------------------------------------------------------------ shipper thread
    def _take(self) -> list[tuple[int, str]]:
        with self._lock:
            count = min(len(self._buffer), self.target.batch_lines)
            return [self._buffer.popleft() for _ in range(count)]

    def _run(self) -> None:
        backoff = 0.0
        while True:
            self._wake.wait(max(self.target.flush_interval_s, backoff))
            self._wake.clear()
            while batch := self._take():
                if self._send(batch):
                    backoff = 0.0
                else:
                    backoff = min(MAX_BACKOFF_S, max(1.0, backoff * 2))
                    if not self._stopping.is_set():
                        break  # wait before the next batch rather than hammer a dead Loki
            with self._lock:
                if not self._buffer:
                    self._idle.set()
            if self._stopping.is_set():
                return

    def _send(self, batch: list[tuple[int, str]]) -> bool:
        body = push_body(batch)
        attempts = 1 if self._stopping.is_set() else MAX_ATTEMPTS
        for attempt in range(attempts):
            try:
                answer = self._client.post(self.target.push_url, content=body)
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code < 300:
                with self._lock:
                    self.shipped += len(batch)
                return True
            if answer is not None and answer.status_code < 500 and answer.status_code != 429:
                break  # refused as malformed or too large: resending cannot help
            if attempt + 1 < attempts:
                time.sleep(min(2.0, 0.25 * 2**attempt))
        with self._lock:
            self.dropped["push_failed"] += len(batch)
        return False
