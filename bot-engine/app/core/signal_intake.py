"""Signal intake: a validated alert of an authenticated user becomes a committed signal row.

Exactly-once starts here. An alert carrying `alert_id` is unique per user by a database
constraint; without one, the same normalised payload from the same user inside
`DEDUPE_WINDOW_S` is a duplicate (checked under a per-user+payload advisory lock, and
backed by a unique key on the time bucket). A duplicate answers with the original signal.

A signal is committed before the caller answers 2xx; queueing it on Redis happens after the
commit and may fail — the sweeper re-enqueues committed signals that were never executed.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.signal_processor import alert_fingerprint
from app.models import TradingSignal
from app.schemas.webhook import Alert


class IntakeOutcome(StrEnum):
    QUEUED = "queued"
    LOGGED = "logged"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class IntakeResult:
    outcome: IntakeOutcome
    signal_id: uuid.UUID
    symbol: str


EXECUTING_TIERS = frozenset({"pro", "enterprise"})
# Built once: the values travel as parameters (building a 20-column statement per alert was
# the webhook's largest single cost).
_INSERT_SIGNAL = (
    insert(TradingSignal)
    .on_conflict_do_nothing(index_elements=["user_id", "dedupe_key"])
    .returning(TradingSignal.id)
)


def _alert_id_key(alert_id: str) -> str:
    return "a:" + hashlib.sha256(alert_id.encode()).hexdigest()


async def record_alert(
    session: AsyncSession, settings: Settings, user_id: str, tier: str, alert: Alert
) -> IntakeResult:
    """Store the alert of user `user_id` (of subscription `tier`) as a signal, or find the one
    it duplicates; ends the session's transaction."""
    fingerprint = alert_fingerprint(alert)
    status = IntakeOutcome.QUEUED if tier in EXECUTING_TIERS else IntakeOutcome.LOGGED
    if alert.alert_id:
        dedupe_key = _alert_id_key(alert.alert_id)
    else:
        existing = await _recent_same_payload(session, settings, user_id, fingerprint)
        if existing is not None:
            await session.rollback()  # releases the advisory lock
            return IntakeResult(IntakeOutcome.DUPLICATE, existing, alert.symbol)
        bucket = int(time.time()) // settings.DEDUPE_WINDOW_S
        dedupe_key = f"h:{fingerprint}:{bucket}"

    values = {
        "user_id": user_id,
        "strategy_id": alert.strategy_id,
        "signal_type": alert.action.value,
        "symbol": alert.symbol,
        "exchange": alert.exchange,
        "price": alert.price,
        "suggested_entry": alert.price if alert.is_entry else None,
        "suggested_stop_loss": alert.stop_loss,
        "suggested_take_profit": alert.take_profit,
        "source": "tradingview",
        "raw_payload": alert.payload_without_token(),
        "leverage": alert.leverage,
        "requested_quantity": alert.qty,
        "requested_notional": alert.notional_usd,
        "risk_percent": alert.risk_percent,
        "dedupe_key": dedupe_key,
        "payload_hash": fingerprint,
        "status": status.value,
        "status_reason": None
        if status is IntakeOutcome.QUEUED
        else "free tier: signal recorded, not executed (upgrade to Pro for auto-execution)",
    }
    signal_id = (await session.execute(_INSERT_SIGNAL, values)).scalar_one_or_none()
    if signal_id is None:  # the same alert won the race or came before
        original = await session.scalar(
            select(TradingSignal.id).where(
                TradingSignal.user_id == user_id, TradingSignal.dedupe_key == dedupe_key
            )
        )
        await session.rollback()
        assert original is not None
        return IntakeResult(IntakeOutcome.DUPLICATE, original, alert.symbol)
    await session.commit()
    return IntakeResult(status, signal_id, alert.symbol)


async def _recent_same_payload(
    session: AsyncSession, settings: Settings, user_id: str, fingerprint: str
) -> uuid.UUID | None:
    """The signal with this payload inside the window, holding a lock on (user, payload)
    until the transaction ends so that concurrent identical alerts are decided one at a time."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"{user_id}:{fingerprint}"},
    )
    window_start = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, settings.DEDUPE_WINDOW_S)
    return await session.scalar(
        select(TradingSignal.id)
        .where(
            TradingSignal.user_id == user_id,
            TradingSignal.payload_hash == fingerprint,
            TradingSignal.created_at >= window_start,
        )
        .order_by(TradingSignal.created_at)
        .limit(1)
    )
