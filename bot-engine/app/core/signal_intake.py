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
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.config import Settings
from app.core.pg import Connection
from app.core.signal_processor import alert_fingerprint
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
    signal: Mapping[str, Any] | None = None  # the new row's `SIGNAL_FIELDS`; None for a duplicate


EXECUTING_TIERS = frozenset({"pro", "enterprise"})
FREE_TIER_REASON = "free tier: signal recorded, not executed (upgrade to Pro for auto-execution)"

_INSERT_SIGNAL = """
    INSERT INTO trading_signals (
        user_id, strategy_id, signal_type, symbol, exchange, price, suggested_entry,
        suggested_stop_loss, suggested_take_profit, source, raw_payload, leverage,
        requested_quantity, requested_notional, risk_percent, dedupe_key, payload_hash,
        status, status_reason)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'tradingview', $10, $11, $12, $13, $14, $15, $16,
            $17, $18)
    ON CONFLICT (user_id, dedupe_key) DO NOTHING
    RETURNING id, seq, signal_type, symbol, exchange, status, status_reason, price,
        suggested_stop_loss, suggested_take_profit, strategy_id, source, created_at, processed_at
"""
_BY_DEDUPE_KEY = "SELECT id FROM trading_signals WHERE user_id = $1 AND dedupe_key = $2"
# Holds a lock on (user, payload) until the transaction ends, so that concurrent identical
# alerts without an alert_id are decided one at a time; then finds the one inside the window.
_LOCK_PAYLOAD = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
_SAME_PAYLOAD = """
    SELECT id FROM trading_signals
    WHERE user_id = $1 AND payload_hash = $2 AND created_at >= now() - make_interval(secs => $3)
    ORDER BY created_at LIMIT 1
"""


def _alert_id_key(alert_id: str) -> str:
    return "a:" + hashlib.sha256(alert_id.encode()).hexdigest()


async def record_alert(
    conn: Connection, settings: Settings, user_id: str, tier: str, alert: Alert
) -> IntakeResult:
    """Store the alert of user `user_id` (of subscription `tier`) as a signal, or find the one
    it duplicates. `conn` must not be inside a transaction: the signal is committed on return."""
    fingerprint = alert_fingerprint(alert)
    status = IntakeOutcome.QUEUED if tier in EXECUTING_TIERS else IntakeOutcome.LOGGED
    if alert.alert_id:  # the unique key decides, in one autocommitted statement
        return await _insert(conn, user_id, alert, _alert_id_key(alert.alert_id), fingerprint,
                             status)  # fmt: skip
    async with conn.transaction():
        await conn.execute(_LOCK_PAYLOAD, f"{user_id}:{fingerprint}")
        existing = await conn.fetchval(
            _SAME_PAYLOAD, user_id, fingerprint, settings.DEDUPE_WINDOW_S
        )
        if existing is not None:
            return IntakeResult(IntakeOutcome.DUPLICATE, existing, alert.symbol)
        bucket = int(time.time()) // settings.DEDUPE_WINDOW_S
        return await _insert(conn, user_id, alert, f"h:{fingerprint}:{bucket}", fingerprint,
                             status)  # fmt: skip


async def _insert(
    conn: Connection,
    user_id: str,
    alert: Alert,
    dedupe_key: str,
    fingerprint: str,
    status: IntakeOutcome,
) -> IntakeResult:
    row = await conn.fetchrow(
        _INSERT_SIGNAL,
        user_id,
        alert.strategy_id,
        alert.action.value,
        alert.symbol,
        alert.exchange,
        alert.price,
        alert.price if alert.is_entry else None,
        alert.stop_loss,
        alert.take_profit,
        alert.payload_without_token(),
        alert.leverage,
        alert.qty,
        alert.notional_usd,
        alert.risk_percent,
        dedupe_key,
        fingerprint,
        status.value,
        None if status is IntakeOutcome.QUEUED else FREE_TIER_REASON,
    )
    if row is None:  # the same alert won the race or came before
        original = await conn.fetchval(_BY_DEDUPE_KEY, user_id, dedupe_key)
        assert original is not None
        return IntakeResult(IntakeOutcome.DUPLICATE, original, alert.symbol)
    return IntakeResult(status, row["id"], alert.symbol, dict(row))
