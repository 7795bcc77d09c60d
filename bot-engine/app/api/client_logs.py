"""`POST /api/logs`: the web dashboard's log batches, re-emitted as the engine's own JSON lines
with `service=web`, so that browser errors reach Loki and Grafana on the same path.

The body is JSON, sent as `application/json` by `fetch` or as `text/plain` by
`navigator.sendBeacon` on page hide (which cannot set headers, so a token is optional: a
valid one attributes the lines to its user; a user id claimed in the body is never
trusted). Batches are size-limited, validated entry by entry (422 names the entry and
field), and rate-limited per client address.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from app.api.deps import read_body
from app.config import Settings
from app.core import rate_limit
from app.core.auth import AccessTokenVerifier, bearer_token
from app.core.client_ip import client_ip
from app.core.errors import (
    AppError,
    BadRequest,
    RateLimited,
    ValidationFailed,
    field_from_loc,
)
from app.core.metrics import Metrics
from app.core.redis import RedisDep
from app.logging.logger import get_logger
from app.schemas.errors import error

router = APIRouter(prefix="/api", tags=["logs"])
web_log = get_logger("web")  # every line names its own component

MAX_BATCH_BYTES = 64 * 1024
MAX_ENTRIES = 100
MAX_EXTRA_FIELDS = 20
# Components are a Loki label: a fixed set keeps the number of streams small.
Component = Literal["ui", "auth", "trading", "chat", "settings", "websocket", "global"]
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# Keys the engine sets on the line itself that an extra field could otherwise override (the
# declared fields of an entry never land among its extras).
_RESERVED = frozenset({"env", "event", "request_id", "client_timestamp"})
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
Scalar = str | int | float | bool | None


class ClientLogEntry(BaseModel):
    """One line of the browser's logger; fields beyond these are kept as flat extras."""

    model_config = ConfigDict(extra="allow")

    timestamp: datetime
    level: Literal["debug", "info", "warn", "warning", "error", "critical"]
    message: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    component: Component
    service: Literal["web"] = "web"
    page: Annotated[str, StringConstraints(max_length=200)] | None = None
    session_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    user_id: str | None = None  # accepted and ignored: only a verified token names the user
    stack_trace: Annotated[str, StringConstraints(max_length=4000)] | None = None

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone (ISO 8601 with Z or an offset)")
        return value

    def extras(self) -> dict[str, Scalar]:
        """The entry's extra fields, checked: flat scalars under snake_case names."""
        found = dict(self.model_extra or {})
        if len(found) > MAX_EXTRA_FIELDS:
            raise ValueError(f"at most {MAX_EXTRA_FIELDS} extra fields")
        for name, value in found.items():
            if name in _RESERVED or not _NAME.match(name):
                raise ValueError(f"field name {name!r} is not allowed")
            if isinstance(value, str) and len(value) > 1000:
                raise ValueError(f"field {name!r} is longer than 1000 characters")
            if not isinstance(value, str | int | float | bool) and value is not None:
                raise ValueError(f"field {name!r} must be a string, number, boolean or null")
        return found


class ClientLogBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    logs: Annotated[list[ClientLogEntry], Field(min_length=1, max_length=MAX_ENTRIES)]


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its `#/$defs/...` references replaced by what they name: in
    the OpenAPI document they would point at the document's root, where nothing is."""
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items() if key != "$defs"}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def parse_batch(body: bytes) -> tuple[ClientLogBatch, list[dict[str, Scalar]]]:
    """The validated batch and each entry's extras; 400/422 naming what is wrong."""
    try:
        raw: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(raw, dict):
        raise BadRequest('body must be a JSON object: {"logs": [...]}', code="invalid_json")
    try:
        batch = ClientLogBatch.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = field_from_loc(first["loc"]) or "logs"
        raise ValidationFailed(f"{field}: {first['msg']}", field=field) from None
    extras = []
    for index, entry in enumerate(batch.logs):
        try:
            extras.append(entry.extras())
        except ValueError as exc:
            field = f"logs.{index}"
            raise ValidationFailed(f"{field}: {exc}", field=field) from None
    return batch, extras


async def _verified_user(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    verifier: AccessTokenVerifier = request.app.state.verifier
    try:
        claims = await verifier.verify(bearer_token(header))
    except AppError:
        return None  # an expired token must not cost the lines it carries
    return claims.sub


@router.post(
    "/logs",
    status_code=204,
    summary="Ingest a batch of the web dashboard's log lines",
    responses={
        400: error("Body is not a JSON object"),
        413: error("Body larger than 64 KiB"),
        422: error("An entry is invalid; `field` names it (`logs.3.component`)"),
        429: error("Too many batches from this address; see Retry-After"),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _inlined(ClientLogBatch.model_json_schema())},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    },
)
async def ingest(request: Request, redis: RedisDep) -> Response:
    settings: Settings = request.app.state.settings
    source = client_ip(request, settings.TRUSTED_PROXIES) or "unknown"
    verdict = await rate_limit.hit(redis, "logs:" + source, settings.FRONTEND_LOG_RATE_LIMIT)
    if not verdict.allowed:
        raise RateLimited(
            f"more than {settings.FRONTEND_LOG_RATE_LIMIT} log batches a minute",
            headers={"Retry-After": str(verdict.retry_after_s)},
        )
    batch, extras = parse_batch(await read_body(request, MAX_BATCH_BYTES))
    user_id = await _verified_user(request)
    metrics: Metrics = request.app.state.metrics
    for entry, extra in zip(batch.logs, extras, strict=True):
        level = _LEVELS[entry.level]
        fields: dict[str, Any] = {
            **extra,
            "service": "web",
            "component": entry.component,
            "client_timestamp": entry.timestamp.isoformat(),
            "page": entry.page,
            "session_id": entry.session_id,
            "stack_trace": entry.stack_trace,
            "user_id": user_id,
        }
        web_log.log(level, entry.message, **{k: v for k, v in fields.items() if v is not None})
        metrics.frontend_log_lines.labels(logging.getLevelName(level).lower()).inc()
    return Response(status_code=204)
