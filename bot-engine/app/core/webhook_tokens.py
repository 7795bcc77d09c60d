"""Webhook tokens: the secret a user puts in TradingView alerts to identify themselves.

A token is 256 random bits, shown once when issued and stored only as its SHA-256 digest.
Looking a token up by its digest reveals nothing about other tokens; the digest is compared
once more in constant time before the token is trusted. A user may hold several tokens and
revoke each on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.core.pg import Connection, Pool
from app.models import User, WebhookToken

TOKEN_PREFIX = "jt_wh_"  # noqa: S105 - a public marker, not a secret  # nosec B105
_DISPLAY_PREFIX_LEN = len(TOKEN_PREFIX) + 6
# last_used_at is a hint for users, not an audit trail: write it at most once a minute per
# token so a burst of alerts does not turn into a burst of row updates.
_TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedToken:
    record: WebhookToken
    token: str  # the clear token; shown once, never stored


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX) and 20 <= len(token) <= 128


async def issue(session: AsyncSession, user_id: str, name: str = "default") -> IssuedToken:
    """Create a token for `user_id`; the caller commits."""
    if await session.get(User, user_id) is None:
        raise NotFound(f"user {user_id} does not exist", field="user_id", code="user_not_found")
    token = generate_token()
    record = WebhookToken(
        user_id=user_id,
        name=name,
        token_hash=hash_token(token),
        token_prefix=token[:_DISPLAY_PREFIX_LEN],
    )
    session.add(record)
    await session.flush()
    return IssuedToken(record=record, token=token)


async def revoke(
    session: AsyncSession, token_id: uuid.UUID, *, user_id: str | None = None
) -> WebhookToken:
    """Revoke a token (scoped to `user_id` when given); idempotent. The caller commits."""
    query = select(WebhookToken).where(WebhookToken.id == token_id)
    if user_id is not None:
        query = query.where(WebhookToken.user_id == user_id)
    record = (await session.execute(query)).scalar_one_or_none()
    if record is None:
        raise NotFound("webhook token not found", field="token_id", code="token_not_found")
    if record.revoked_at is None:
        record.revoked_at = datetime.now(UTC)
        await session.flush()
    return record


async def list_for_user(session: AsyncSession, user_id: str) -> list[WebhookToken]:
    query = (
        select(WebhookToken)
        .where(WebhookToken.user_id == user_id)
        .order_by(WebhookToken.created_at.desc(), WebhookToken.id)
    )
    return list((await session.execute(query)).scalars())


@dataclass(frozen=True)
class TokenOwner:
    user_id: str
    tier: str  # the user's subscription tier


# One round trip: find the active token and its owner, and touch `last_used_at` when stale.
_AUTHENTICATE = """
    WITH hit AS (
        SELECT t.id, t.token_hash, t.last_used_at, u.id AS user_id, u.subscription_tier
        FROM webhook_tokens t JOIN users u ON u.id = t.user_id
        WHERE t.token_hash = $1 AND t.revoked_at IS NULL
    ),
    touched AS (
        UPDATE webhook_tokens w SET last_used_at = now()
        FROM hit
        WHERE w.id = hit.id AND (hit.last_used_at IS NULL
            OR hit.last_used_at <= now() - make_interval(secs => $2))
    )
    SELECT token_hash, user_id, subscription_tier FROM hit
"""


async def authenticate(conn: Connection | Pool, token: str) -> TokenOwner | None:
    """The owner of an active token, or None; touches `last_used_at` (autocommitted)."""
    if not looks_like_token(token):
        return None
    digest = hash_token(token)
    row = await conn.fetchrow(_AUTHENTICATE, digest, _TOUCH_INTERVAL.total_seconds())
    if row is None or not hmac.compare_digest(row["token_hash"], digest):
        return None
    return TokenOwner(row["user_id"], row["subscription_tier"])
