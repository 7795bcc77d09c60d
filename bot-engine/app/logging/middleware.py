"""Request context middleware (pure ASGI): a request id per request, bound into the log
context and echoed as `X-Request-ID`, one `http_request` log line per request with its
status and `duration_ms`, and the request's latency in the Prometheus histograms. Only the
path is logged — never the query string, which may carry a token.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.metrics import Metrics
from app.logging.logger import get_logger

log = get_logger("api")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


WEBHOOK_ROUTE = "/api/webhooks/tradingview"


def _route(scope: Scope) -> str:
    """The matched route's template (low cardinality); unmatched paths share one label."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            duration_ms = round(elapsed * 1000, 2)
            if scope["type"] == "http" and self.metrics is not None:
                route = _route(scope)
                self.metrics.http_duration.labels(route, scope.get("method", ""), status).observe(
                    elapsed
                )
                if route == WEBHOOK_ROUTE:
                    self.metrics.webhook_duration.labels(status).observe(elapsed)
            if scope["type"] == "http":
                log.info(
                    "http_request",
                    method=scope.get("method"),
                    path=scope.get("path"),
                    status=status,
                    duration_ms=duration_ms,
                )
            structlog.contextvars.clear_contextvars()
