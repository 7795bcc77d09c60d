"""Trading signals received from TradingView (or made internally) and the log of each
attempt to execute one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, bool_column, created_at_column, in_values, uuid_pk

SIGNAL_TYPES = ("long_entry", "long_exit", "short_entry", "short_exit")
SIGNAL_SOURCES = ("tradingview", "internal", "manual")
# received -> validated -> queued -> executed | failed; `logged` = recorded but not to be
# executed (tier rules), `skipped` = the engine chose not to act, `rejected` = invalid or
# refused by the risk checks.
SIGNAL_STATUSES = (
    "received", "validated", "queued", "executing", "executed", "failed", "skipped", "rejected",
    "logged",
)  # fmt: skip
# Statuses after which nothing more happens to a signal.
TERMINAL_STATUSES = ("executed", "failed", "skipped", "rejected", "logged")
# Statuses of a signal that still has to be (or is being) executed.
PENDING_STATUSES = ("queued", "executing")
# The same as SQL text, identical to the partial index's predicate: with bound parameters a
# prepared statement's generic plan could not use ix_trading_signals_pending.
PENDING_PREDICATE = "status IN ('queued', 'executing')"
EXECUTION_STATUSES = ("queued", "running", "completed", "failed")


class TradingSignal(Base):
    __tablename__ = "trading_signals"
    __table_args__ = (
        CheckConstraint(in_values("signal_type", SIGNAL_TYPES), name="signal_type"),
        CheckConstraint(in_values("source", SIGNAL_SOURCES), name="source"),
        CheckConstraint(in_values("status", SIGNAL_STATUSES), name="status"),
        CheckConstraint("leverage BETWEEN 1 AND 125", name="leverage"),
        # One row per alert: a redelivered alert hits this constraint instead of trading twice.
        UniqueConstraint("user_id", "dedupe_key"),
        Index(None, "user_id", "created_at"),
        Index(None, "user_id", "payload_hash", "created_at"),
        # Work still to do, per (user, symbol), in arrival order: what the executor reads.
        Index(
            "ix_trading_signals_pending",
            "user_id",
            "symbol",
            "seq",
            postgresql_where=text(PENDING_PREDICATE),
        ),
        Index(None, "strategy_id"),
        Index(None, "status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    strategy_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("strategies.id", ondelete="SET NULL")
    )
    signal_type: Mapped[str] = mapped_column(String(20), nullable=False)
    symbol: Mapped[str] = mapped_column(String(50), nullable=False)
    exchange: Mapped[str | None] = mapped_column(String(50))
    price: Mapped[Decimal | None]
    suggested_entry: Mapped[Decimal | None]
    suggested_stop_loss: Mapped[Decimal | None]
    suggested_take_profit: Mapped[Decimal | None]
    source: Mapped[str] = mapped_column(
        String(50), nullable=False, server_default=text("'tradingview'")
    )
    raw_payload: Mapped[dict[str, Any] | None]
    # The alert's own id when it carries one, else a hash of user + payload + time window.
    dedupe_key: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(
        String(20), nullable=False, server_default=text("'received'")
    )
    processed_at: Mapped[datetime | None]
    execution_result: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = created_at_column()
    # Arrival order: signals of one user and symbol are executed in `seq` order.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), nullable=False, unique=True)
    # SHA-256 of the normalised alert (without the token): "same payload" inside the window.
    payload_hash: Mapped[str | None] = mapped_column(String(64))
    # Why the signal ended as it did, in words a trader understands.
    status_reason: Mapped[str | None] = mapped_column(Text)
    # The alert's sizing instructions, normalised (raw_payload keeps what was sent).
    leverage: Mapped[int | None]
    requested_quantity: Mapped[Decimal | None]
    requested_notional: Mapped[Decimal | None]
    risk_percent: Mapped[Decimal | None] = mapped_column(Numeric(10, 4))


class BotExecutionLog(Base):
    __tablename__ = "bot_execution_logs"
    __table_args__ = (
        CheckConstraint(in_values("status", EXECUTION_STATUSES), name="status"),
        CheckConstraint("duration_ms >= 0", name="duration_ms"),
        CheckConstraint("retry_count >= 0", name="retry_count"),
        Index(None, "user_id", "created_at"),
        Index(None, "signal_id"),
        Index(None, "trade_id"),
        Index(None, "status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    signal_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("trading_signals.id", ondelete="SET NULL")
    )
    trade_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("real_trades.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None]
    # NULL until the risk checks have run: "not checked" is not "failed".
    risk_check_passed: Mapped[bool | None]
    risk_check_details: Mapped[dict[str, Any] | None]
    trade_executed: Mapped[bool] = bool_column(False)
    error_type: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_stack: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = mapped_column(nullable=False, server_default=text("0"))
    created_at: Mapped[datetime] = created_at_column()
