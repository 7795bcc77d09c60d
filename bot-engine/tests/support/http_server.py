"""A stdlib HTTP server on a free loopback port, served from a background thread — the
lifecycle shared by the local stand-ins for external services (Cognito, exchanges)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class KeepAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with persistent connections, as the real services speak it. Nagle's algorithm
    is off: headers and body leave in separate writes, and with Nagle on the body would wait
    for the client's delayed ACK (about 40 ms per request)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def reply(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send a whole answer; a client that already gave up (a timeout test) gets none."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # tests read what the servers record, not their access log


class OwnedHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: Any  # the BackgroundHttpServer whose state handlers read


class BackgroundHttpServer:
    """Subclasses pass their request handler class; handlers reach the subclass instance as
    `self.server.owner`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = OwnedHttpServer(("127.0.0.1", 0), handler)
        self._server.owner = self
        self._thread: threading.Thread | None = None
        self.port: int = self._server.server_address[1]

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
