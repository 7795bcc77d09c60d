"""Orders the engine sent to an exchange for a user, and their fills."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Numeric,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import (
    Base,
    bool_column,
    created_at_column,
    in_values,
    updated_at_column,
    uuid_pk,
)

ORDER_SIDES = ("buy", "sell")
ORDER_TYPES = (
    "market", "limit", "stop_market", "stop_limit", "take_profit_market", "take_profit_limit",
)  # fmt: skip
# `pending`: recorded before it is sent. `unknown`: the exchange's answer was lost (timeout,
# 5xx); the order must be looked up by client_order_id before anything is retried.
ORDER_STATUSES = (
    "pending", "open", "partially_filled", "filled", "canceled", "failed", "unknown",
)  # fmt: skip
# Orders the exchange may still fill (or whose fate is not known yet).
WORKING_STATUSES = ("pending", "open", "partially_filled", "unknown")
WORKING_PREDICATE = "status IN ('pending', 'open', 'partially_filled', 'unknown')"


class RealTrade(Base):
    __tablename__ = "real_trades"
    __table_args__ = (
        CheckConstraint(in_values("side", ORDER_SIDES), name="side"),
        CheckConstraint(in_values("order_type", ORDER_TYPES), name="order_type"),
        CheckConstraint(in_values("status", ORDER_STATUSES), name="status"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("filled_quantity >= 0", name="filled_quantity_not_negative"),
        # The client order id is derived from (signal, leg): a second attempt at the same leg
        # finds the first row instead of creating a second order.
        UniqueConstraint("user_id", "client_order_id"),
        Index(None, "user_id", "created_at"),
        # The daily-loss check sums what the user realised since midnight UTC.
        Index(None, "user_id", "executed_at"),
        # Reconciliation reads a symbol's orders still working, and fills not yet attributed
        # to a position: both small sets inside a long history.
        Index(
            "ix_real_trades_working",
            "user_id",
            "symbol",
            postgresql_where=text(WORKING_PREDICATE),
        ),
        Index(
            "ix_real_trades_unattached",
            "user_id",
            "symbol",
            postgresql_where=text("position_id IS NULL"),
        ),
        Index(None, "status"),
        Index(None, "api_key_id"),
        Index(None, "position_id"),
        Index(None, "signal_id"),
        Index(None, "strategy_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("exchange_api_keys.id", ondelete="SET NULL")
    )
    position_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("real_positions.id", ondelete="SET NULL")
    )
    exchange: Mapped[str] = mapped_column(String(50), nullable=False)
    symbol: Mapped[str] = mapped_column(String(50), nullable=False)
    side: Mapped[str] = mapped_column(String(10), nullable=False)
    order_type: Mapped[str] = mapped_column(String(20), nullable=False)
    reduce_only: Mapped[bool] = bool_column(False)
    quantity: Mapped[Decimal] = mapped_column(nullable=False)
    # NULL for market orders until filled.
    price: Mapped[Decimal | None]
    filled_quantity: Mapped[Decimal] = mapped_column(nullable=False, server_default=text("0"))
    avg_fill_price: Mapped[Decimal | None]
    fee: Mapped[Decimal | None]
    fee_currency: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(
        String(20), nullable=False, server_default=text("'pending'")
    )
    client_order_id: Mapped[str | None] = mapped_column(String(64))
    exchange_order_id: Mapped[str | None] = mapped_column(String(255))
    signal_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("trading_signals.id", ondelete="SET NULL")
    )
    strategy_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("strategies.id", ondelete="SET NULL")
    )
    realized_pnl: Mapped[Decimal | None]
    realized_pnl_percent: Mapped[Decimal | None] = mapped_column(Numeric(10, 4))
    executed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
