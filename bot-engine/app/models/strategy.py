"""Trading strategies users can subscribe their alerts to (a catalogue shared by all users)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import (
    RISK_LEVELS,
    SUBSCRIPTION_TIERS,
    TIMEFRAMES,
    Base,
    bool_column,
    created_at_column,
    in_values,
    updated_at_column,
    uuid_pk,
)


class Strategy(Base):
    __tablename__ = "strategies"
    __table_args__ = (
        CheckConstraint(in_values("min_tier", SUBSCRIPTION_TIERS), name="min_tier"),
        CheckConstraint(in_values("risk_level", RISK_LEVELS), name="risk_level"),
        CheckConstraint(in_values("timeframe", TIMEFRAMES), name="timeframe"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = bool_column(True)
    # Lowest subscription tier allowed to use the strategy.
    min_tier: Mapped[str] = mapped_column(String(20), nullable=False, server_default=text("'free'"))
    supported_exchanges: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("ARRAY['binance'::text]")
    )
    risk_level: Mapped[str] = mapped_column(
        String(20), nullable=False, server_default=text("'medium'")
    )
    timeframe: Mapped[str] = mapped_column(String(10), nullable=False, server_default=text("'1h'"))
    # JSON Schema of the parameters a user may set, and the values used when they set none.
    parameter_schema: Mapped[dict[str, Any] | None]
    default_parameters: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
