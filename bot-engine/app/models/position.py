"""Positions held on an exchange for a user, as the engine last saw them."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, in_values, updated_at_column, uuid_pk

POSITION_SIDES = ("long", "short")
POSITION_STATUSES = ("open", "closed")


class RealPosition(Base):
    __tablename__ = "real_positions"
    __table_args__ = (
        CheckConstraint(in_values("side", POSITION_SIDES), name="side"),
        CheckConstraint(in_values("status", POSITION_STATUSES), name="status"),
        CheckConstraint("entry_price > 0", name="entry_price_positive"),
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        CheckConstraint("leverage >= 1", name="leverage"),
        Index(None, "user_id", "status"),
        # At most one open position per user, exchange and symbol (one-way mode).
        Index(
            "uq_real_positions_open",
            "user_id",
            "exchange",
            "symbol",
            unique=True,
            postgresql_where=text("status = 'open'"),
        ),
        Index(None, "api_key_id"),
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
    exchange: Mapped[str] = mapped_column(String(50), nullable=False)
    symbol: Mapped[str] = mapped_column(String(50), nullable=False)
    side: Mapped[str] = mapped_column(String(10), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default=text("'open'"))
    entry_price: Mapped[Decimal] = mapped_column(nullable=False)
    current_price: Mapped[Decimal | None]
    quantity: Mapped[Decimal] = mapped_column(nullable=False)
    leverage: Mapped[int] = mapped_column(nullable=False, server_default=text("1"))
    stop_loss: Mapped[Decimal | None]
    take_profit: Mapped[Decimal | None]
    trailing_stop_percent: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    unrealized_pnl: Mapped[Decimal | None]
    unrealized_pnl_percent: Mapped[Decimal | None] = mapped_column(Numeric(10, 4))
    realized_pnl: Mapped[Decimal | None]
    margin: Mapped[Decimal | None]
    liquidation_price: Mapped[Decimal | None]
    signal_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("trading_signals.id", ondelete="SET NULL")
    )
    strategy_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("strategies.id", ondelete="SET NULL")
    )
    exchange_position_id: Mapped[str | None] = mapped_column(String(255))
    opened_at: Mapped[datetime] = mapped_column(nullable=False, server_default=func.now())
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = updated_at_column()
