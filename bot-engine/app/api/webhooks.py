"""TradingView webhook intake: `POST /api/webhooks/tradingview`.

TradingView posts the alert message as the body, as `application/json` when the message is
valid JSON and as `text/plain` otherwise, so the body is read raw and parsed here rather than
by a Pydantic body parameter. The token inside the alert identifies the user.

Signal execution (validation of the alert fields, persistence, queueing) is not part of this
build yet: an authenticated, well-formed alert is answered 501 `execution_unavailable` so
that TradingView records a failed delivery instead of a silent success.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.core import webhook_tokens
from app.core.database import SessionDep
from app.core.errors import AppError, BadRequest, Unauthorized, error_body
from app.logging.logger import get_logger

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])
log = get_logger("webhook")

MAX_BODY_BYTES = 64 * 1024


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refusing more than `limit` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_alert(body: bytes) -> dict[str, Any]:
    """The alert as a JSON object, whatever content type it came with."""
    if not body.strip():
        raise BadRequest("empty body; the alert message must be a JSON object", code="empty_body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"the alert message is not valid JSON (line {exc.lineno}, column {exc.colno})",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise BadRequest("the alert message must be a JSON object", code="invalid_json")
    return data


@router.post(
    "/tradingview",
    summary="Receive a TradingView alert",
    responses={
        400: {"description": "Body is not a JSON object"},
        401: {"description": "Missing, unknown or revoked token"},
        413: {"description": "Body larger than 64 KiB"},
        501: {"description": "Signal execution is not available in this build"},
    },
)
async def tradingview(request: Request, session: SessionDep) -> JSONResponse:
    alert = parse_alert(await read_body(request))
    token = alert.get("token")
    if not isinstance(token, str) or not token:
        raise Unauthorized("the alert has no token", field="token", code="missing_token")
    user = await webhook_tokens.authenticate(session, token)
    if user is None:
        log.warning("webhook_token_rejected")
        raise Unauthorized("unknown or revoked token", field="token", code="invalid_token")
    await session.commit()
    log.info("webhook_received", user_id=user.id, action=alert.get("action"))
    return JSONResponse(
        error_body(
            "execution_unavailable",
            "alert authenticated, but signal execution is not available in this build",
        ),
        status_code=501,
    )
