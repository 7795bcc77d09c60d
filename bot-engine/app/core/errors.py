"""The engine's error type and the one place that turns errors into HTTP responses.

Every error response has the same body:
    {"error": {"code": "<stable_machine_code>", "message": "<for people>", "field": "<name>"|null}}
with, for a few errors, a `details` object of machine-readable facts (e.g. when a limit
resets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

log = structlog.get_logger("app.errors")


class AppError(Exception):
    """Base of every error the engine answers with; carries its HTTP status and stable code."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.headers = headers or {}


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "authentication required", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class ValidationFailed(AppError):
    status_code = 422
    code = "validation_error"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"


def error_body(
    code: str, message: str, field: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "field": field}
    if details:
        error["details"] = details
    return {"error": error}


def field_from_loc(loc: Sequence[Any]) -> str | None:
    """`("body", "risk", "max_leverage")` → `"risk.max_leverage"`; drops the source part."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or None


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse(
        error_body(exc.code, exc.message, exc.field, exc.details),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = field_from_loc(first.get("loc", ()))
    message = str(first.get("msg", "invalid value"))
    if field:
        message = f"{field}: {message}"
    return JSONResponse(error_body("validation_error", message, field), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


async def _dependency_down(request: Request, exc: Exception) -> JSONResponse:
    """PostgreSQL (or another backing service) unreachable: a clear, retryable 503."""
    log.error("dependency_unavailable", error_type=type(exc).__name__)
    return JSONResponse(
        error_body("service_unavailable", "a backing service is unavailable; retry shortly"),
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
    """The client hung up mid-request (e.g. TradingView's 3 s timeout): nobody reads the answer;
    note it without the cost of a traceback."""
    log.info("client_disconnected", path=request.url.path)
    return JSONResponse(error_body("client_closed_request", "client went away"), status_code=499)


# What PostgreSQL answers when asked to store text it cannot hold: a NUL character in a text
# column (22021), `\u0000` in JSONB (22P05).
_UNSTORABLE_TEXT = frozenset({"22021", "22P05"})


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    """A NUL character in a parameter or a body field reached a query: the request's fault,
    a 422. Any other database error goes on to `_unhandled`, as it did before this handler."""
    orig = getattr(exc, "orig", exc)  # SQLAlchemy wraps asyncpg's error
    if getattr(orig, "sqlstate", None) not in _UNSTORABLE_TEXT:
        raise exc
    log.info("unstorable_text_refused", path=request.url.path)
    return JSONResponse(
        error_body("invalid_text", "text must not contain NUL characters (\\u0000)"),
        status_code=422,
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", error_type=type(exc).__name__, exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "internal error; it has been logged"), status_code=500
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    for data_error in (DBAPIError, asyncpg.DataError):  # SQLAlchemy's, and the raw pool's
        app.add_exception_handler(data_error, _data_error)
    # Connection-level failures: the database is down or unreachable, not a bug in the request.
    for connection_error in (
        OperationalError,  # SQLAlchemy
        InterfaceError,
        asyncpg.PostgresConnectionError,  # asyncpg: lost connection, cannot connect
        asyncpg.OperatorInterventionError,  # shutting down, starting up, statement canceled
        asyncpg.InsufficientResourcesError,  # too many connections, disk full
        ConnectionError,  # refused, reset
        TimeoutError,
    ):
        app.add_exception_handler(connection_error, _dependency_down)
    app.add_exception_handler(Exception, _unhandled)
