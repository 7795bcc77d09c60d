"""Per-user risk limits the executor enforces before any order is sent."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, bool_column, created_at_column, updated_at_column, uuid_pk


def _percent_check(column: str) -> CheckConstraint:
    return CheckConstraint(f"{column} > 0 AND {column} <= 100", name=column)


class UserRiskSettings(Base):
    __tablename__ = "user_risk_settings"
    __table_args__ = (
        CheckConstraint("max_position_size_usd > 0", name="max_position_size_usd"),
        CheckConstraint("max_leverage >= 1", name="max_leverage"),
        CheckConstraint("max_open_positions >= 0", name="max_open_positions"),
        CheckConstraint("max_daily_trades >= 0", name="max_daily_trades"),
        _percent_check("max_daily_loss_percent"),
        _percent_check("max_portfolio_exposure_percent"),
        _percent_check("default_risk_per_trade_percent"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    max_position_size_usd: Mapped[Decimal] = mapped_column(
        Numeric(20, 2), nullable=False, server_default=text("1000")
    )
    max_leverage: Mapped[int] = mapped_column(nullable=False, server_default=text("10"))
    max_open_positions: Mapped[int] = mapped_column(nullable=False, server_default=text("5"))
    max_daily_trades: Mapped[int] = mapped_column(nullable=False, server_default=text("50"))
    max_daily_loss_percent: Mapped[Decimal] = mapped_column(
        Numeric(5, 2), nullable=False, server_default=text("10")
    )
    max_portfolio_exposure_percent: Mapped[Decimal] = mapped_column(
        Numeric(5, 2), nullable=False, server_default=text("80")
    )
    # Share of equity put at risk by one trade (position size = risk / stop distance).
    default_risk_per_trade_percent: Mapped[Decimal] = mapped_column(
        Numeric(5, 2), nullable=False, server_default=text("2")
    )
    require_stop_loss: Mapped[bool] = bool_column(True)
    notify_on_trade: Mapped[bool] = bool_column(True)
    notify_on_stop_loss: Mapped[bool] = bool_column(True)
    notify_on_daily_loss_limit: Mapped[bool] = bool_column(True)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
