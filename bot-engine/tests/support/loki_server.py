"""A local stand-in for Loki's push API, speaking its HTTP wire protocol.

`POST /loki/api/v1/push` with a JSON body
`{"streams": [{"stream": {label: value}, "values": [["<unix ns>", "<line>", {metadata}]]}]}`
is validated as Loki validates it (400 with Loki's plain-text reason): label names must be
Prometheus label names, values strings, at most `MAX_LABELS` labels per stream, timestamps
decimal nanoseconds, lines strings no longer than `MAX_LINE_BYTES`, structured metadata a
map of strings. Accepted pushes answer 204 and their entries are kept in `entries`.
`GET /ready` answers "ready". Only JSON is spoken (not the snappy-compressed protobuf the
agents use). `hold()` makes pushes wait (a slow Loki) until `release()`; `fail_next`
answers the next pushes with an error status.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

from tests.support.http_server import BackgroundHttpServer, KeepAliveHandler, OwnedHttpServer

PUSH_PATH = "/loki/api/v1/push"
MAX_LABELS = 15  # Loki's default max_label_names_per_series
MAX_LINE_BYTES = 256 * 1024
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True)
class Entry:
    labels: dict[str, str]
    ns: int
    line: str
    metadata: dict[str, str]

    @property
    def fields(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.line)
        return parsed


class PushRefused(Exception):
    pass


def validate_push(body: Any) -> list[Entry]:
    """The entries of a push body, or `PushRefused` saying what Loki would say."""
    if not isinstance(body, dict) or not isinstance(body.get("streams"), list):
        raise PushRefused("loghttp: the body must be an object with a streams array")
    entries: list[Entry] = []
    for stream in body["streams"]:
        labels = stream.get("stream") if isinstance(stream, dict) else None
        if not isinstance(labels, dict) or not labels:
            raise PushRefused("error at least one label pair is required per stream")
        if len(labels) > MAX_LABELS:
            raise PushRefused(f"entry has {len(labels)} label names; limit {MAX_LABELS}: {labels}")
        for name, value in labels.items():
            if not _LABEL_NAME.match(name):
                raise PushRefused(f"error parsing labels: invalid label name {name!r}")
            if not isinstance(value, str):
                raise PushRefused(f"error parsing labels: value of {name!r} is not a string")
        values = stream.get("values")
        if not isinstance(values, list):
            raise PushRefused("error: values must be an array")
        for value in values:
            if not isinstance(value, list) or len(value) not in (2, 3):
                raise PushRefused("error: each value is [timestamp, line] or with metadata")
            ns, line = value[0], value[1]
            if not isinstance(ns, str) or not ns.isdigit():
                raise PushRefused(f"error: timestamp {ns!r} is not a string of nanoseconds")
            if not isinstance(line, str):
                raise PushRefused("error: the log line must be a string")
            if len(line.encode()) > MAX_LINE_BYTES:
                raise PushRefused(f"line too long: max {MAX_LINE_BYTES} bytes")
            metadata = value[2] if len(value) == 3 else {}
            if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
            ):
                raise PushRefused("error: structured metadata must map strings to strings")
            entries.append(Entry(dict(labels), int(ns), line, dict(metadata)))
    return entries


class _Handler(KeepAliveHandler):
    server: OwnedHttpServer

    def do_GET(self) -> None:
        if self.path == "/ready":
            self.reply(200, b"ready\n", content_type="text/plain")
        else:
            self.reply(404, b"404 page not found\n", content_type="text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner: LokiServer = self.server.owner
        status, answer = owner.push(self.path, self.headers.get("Content-Type", ""), body)
        self.reply(status, answer, content_type="text/plain")


class LokiServer(BackgroundHttpServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self._lock = threading.Lock()
        self._entries: list[Entry] = []
        self._failures: list[int] = []
        self.pushes = 0
        self.refused = 0
        self._open = threading.Event()
        self._open.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries)

    def hold(self) -> None:
        """Pushes wait until `release()` (or `stop()`)."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def fail_next(self, status: int, count: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def stop(self) -> None:
        self._open.set()
        super().stop()

    def push(self, path: str, content_type: str, body: bytes) -> tuple[int, bytes]:
        self._open.wait()
        with self._lock:
            self.pushes += 1
            if self._failures:
                return self._failures.pop(0), b"injected failure\n"
        if path != PUSH_PATH:
            return 404, b"404 page not found\n"
        if not content_type.startswith("application/json"):
            return 415, b"only application/json pushes are spoken here\n"
        try:
            entries = validate_push(json.loads(body))
        except (ValueError, PushRefused) as exc:
            with self._lock:
                self.refused += 1
            return 400, f"{exc}\n".encode()
        with self._lock:
            self._entries.extend(entries)
        return 204, b""
