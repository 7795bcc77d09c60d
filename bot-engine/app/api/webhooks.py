"""TradingView webhook intake: `POST /api/webhooks/tradingview`.

TradingView posts the alert message as the body — `application/json` when the message is
valid JSON, `text/plain` otherwise — so the body is read raw (at most 64 KiB) and parsed by
`signal_processor.parse_alert`. The token inside the alert identifies the user.

The request never talks to an exchange (TradingView gives up after 3 s). It answers 2xx only
once the signal is committed in PostgreSQL; queueing on Redis comes after and may fail, in
which case the sweeper queues the signal later.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Request, Response
from redis.asyncio import Redis

from app.api.deps import read_body
from app.config import Settings
from app.core import events, rate_limit, webhook_tokens
from app.core.client_ip import client_ip
from app.core.errors import (
    Forbidden,
    RateLimited,
    Unauthorized,
    ValidationFailed,
)
from app.core.pg import Pool
from app.core.signal_intake import IntakeOutcome, record_alert
from app.core.signal_processor import is_stale, parse_alert
from app.logging.logger import get_logger
from app.schemas.errors import error
from app.schemas.webhook import WebhookAccepted
from app.workers import queue

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])
log = get_logger("webhook")

MAX_BODY_BYTES = 64 * 1024

_MESSAGES = {
    IntakeOutcome.QUEUED: "signal received and queued for execution",
    IntakeOutcome.LOGGED: "signal logged; upgrade to Pro for auto-execution",
    IntakeOutcome.DUPLICATE: "duplicate alert; the original signal stands",
}


_STRATEGY_EXISTS = "SELECT EXISTS (SELECT 1 FROM strategies WHERE id = $1)"

# The body as OpenAPI documents it (the route reads it raw): the fields of
# docs/knowledge/webhook-fields-reference.md, which says which forms each one accepts.
_NUMBER = {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string"}]}
_NUMBER_FIELDS = ("price", "close", "stop_loss", "take_profit", "qty", "contracts",
                  "notional_usd", "risk_percent")  # fmt: skip
_ALERT_SCHEMA = {
    "type": "object",
    "required": ["token", "action", "symbol"],
    "properties": {
        "token": {"type": "string", "description": "The webhook token (`jt_wh_...`)"},
        "action": {
            "type": "string",
            "enum": ["long_entry", "long_exit", "short_entry", "short_exit", "buy", "sell"],
            "description": "`buy` / `sell` need `market_position`; case does not matter",
        },
        "market_position": {"type": "string", "enum": ["long", "short", "flat"]},
        "prev_market_position": {"type": "string", "enum": ["long", "short", "flat"]},
        "symbol": {"type": "string", "examples": ["BTCUSDT", "BINANCE:BTCUSDT.P"]},
        "exchange": {"type": "string", "examples": ["paper", "binance", "bybit"]},
        **dict.fromkeys(_NUMBER_FIELDS, _NUMBER),
        "leverage": {
            "anyOf": [{"type": "integer", "minimum": 1, "maximum": 125}, {"type": "string"}]
        },
        "strategy_id": {"type": "string", "format": "uuid"},
        "alert_id": {"anyOf": [{"type": "string", "maxLength": 128}, {"type": "integer"}]},
        "timenow": {"anyOf": [{"type": "string"}, {"type": "number"}]},
        "message": {"type": "string", "maxLength": 1000},
        "comment": {"type": "string", "maxLength": 1000},
    },
}
_ALERT_BODY = {
    "required": True,
    "description": "The alert message; TradingView sends it as text/plain unless it is JSON",
    "content": {
        "application/json": {"schema": _ALERT_SCHEMA},
        "text/plain": {"schema": {"type": "string"}},
    },
}


_THROTTLED = "too many webhooks with a missing or unknown token from this address"


def _throttled(verdict: rate_limit.Verdict) -> RateLimited:
    return RateLimited(_THROTTLED, headers={"Retry-After": str(verdict.retry_after_s)})


async def _refuse_bad_token(
    redis: Redis, bucket: str, limit: int | None, refusal: Unauthorized
) -> Unauthorized | RateLimited:
    """Count one more missing or unknown token from a throttled source (`limit` None: a
    TradingView address, never throttled); past the limit the answer is 429, not 401."""
    if limit is None:
        return refusal
    verdict = await rate_limit.hit(redis, bucket, limit)
    return refusal if verdict.allowed else _throttled(verdict)


def _answer(outcome: IntakeOutcome, signal_id: object) -> Response:
    # Serialised here rather than through the response model: this is the hottest route.
    body = {"status": outcome.value, "message": _MESSAGES[outcome], "signal_id": str(signal_id)}
    return Response(orjson.dumps(body), media_type="application/json")


@router.post(
    "/tradingview",
    response_model=WebhookAccepted,
    summary="Receive a TradingView alert",
    responses={
        400: error("Body is not a JSON object"),
        401: error("Missing, unknown or revoked token"),
        403: error("Source address not allowed"),
        413: error("Body larger than 64 KiB"),
        422: error("A field is invalid; `field` names it"),
        429: error(
            "Too many alerts for this token, or too many bad tokens from this address; see"
            " Retry-After"
        ),
    },
    openapi_extra={"requestBody": _ALERT_BODY},
)
async def tradingview(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    redis: Redis = request.app.state.redis
    source = client_ip(request, settings.TRUSTED_PROXIES)
    if settings.TRADINGVIEW_IP_ALLOWLIST and source not in settings.TRADINGVIEW_IPS:
        log.warning("webhook_source_refused", source_ip=source)
        raise Forbidden("source address is not a TradingView webhook server",
                        code="source_not_allowed")  # fmt: skip
    # Guessing tokens: a source that sent too many bad ones is refused before its token is
    # looked up; that check and the token's alert count are one Redis round trip.
    bad_tokens = f"whbad:{source}"
    bad_limit = None if source in settings.TRADINGVIEW_IPS else settings.WEBHOOK_BAD_TOKEN_LIMIT
    alert = parse_alert(
        await read_body(request, MAX_BODY_BYTES),
        default_exchange=settings.DEFAULT_EXCHANGE,
        exchanges=frozenset(settings.SUPPORTED_EXCHANGES),
    )
    if not alert.token:
        raise await _refuse_bad_token(redis, bad_tokens, bad_limit, Unauthorized(
            "the alert has no token", field="token", code="missing_token"))  # fmt: skip
    admission = await rate_limit.admit(
        redis,
        bad_tokens,
        bad_limit,
        "wh:" + webhook_tokens.hash_token(alert.token)[:24],
        settings.WEBHOOK_RATE_LIMIT,
    )
    if not admission.source.allowed:
        raise _throttled(admission.source)
    pool: Pool = request.app.state.pg
    async with pool.acquire() as conn:  # one connection for the token and the signal
        owner = await webhook_tokens.authenticate(conn, alert.token)
        if owner is None:
            log.warning("webhook_token_rejected", source_ip=source)
            raise await _refuse_bad_token(redis, bad_tokens, bad_limit, Unauthorized(
                "unknown or revoked token", field="token", code="invalid_token"))  # fmt: skip
        verdict = admission.token
        if not verdict.enforced:
            log.warning("rate_limit_unavailable")
        elif not verdict.allowed:
            raise RateLimited(
                f"more than {settings.WEBHOOK_RATE_LIMIT} alerts a minute for this token",
                headers={"Retry-After": str(verdict.retry_after_s)},
            )
        if is_stale(alert, now=datetime.now(UTC), max_age_s=settings.MAX_ALERT_AGE_S):
            raise ValidationFailed(
                f"alert is older than {settings.MAX_ALERT_AGE_S} s",
                field="timenow",
                code="stale_alert",
            )
        if alert.strategy_id is not None and not await conn.fetchval(
            _STRATEGY_EXISTS, alert.strategy_id
        ):
            raise ValidationFailed(
                "strategy_id names no strategy of this platform",
                field="strategy_id",
                code="unknown_strategy",
            )
        result = await record_alert(conn, settings, owner.user_id, owner.tier, alert)
    user_id = owner.user_id
    announce = None
    if result.signal is not None:
        announce = (
            events.user_channel(user_id),
            events.encode(events.EventType.SIGNAL_RECEIVED, events.signal_data(result.signal)),
        )
    try:
        if result.outcome is IntakeOutcome.QUEUED:
            await queue.enqueue(redis, result.signal_id, user_id, result.symbol, announce=announce)
        elif announce is not None:  # recorded, not executed: still news for the dashboard
            await redis.publish(*announce)
    except Exception as exc:  # committed: the sweeper enqueues it
        log.warning("enqueue_failed", signal_id=str(result.signal_id),
                    error_type=type(exc).__name__)  # fmt: skip
    log.info(
        "webhook_accepted",
        user_id=user_id,
        signal_id=str(result.signal_id),
        outcome=result.outcome.value,
        action=alert.action.value,
        symbol=alert.symbol,
        exchange=alert.exchange,
    )
    return _answer(result.outcome, result.signal_id)
