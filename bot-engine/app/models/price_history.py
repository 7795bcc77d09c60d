"""OHLCV candles per (symbol, exchange, timeframe), for backtests and charts."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import TIMEFRAMES, Base, in_values, uuid_pk


class PriceHistory(Base):
    __tablename__ = "price_history"
    __table_args__ = (
        CheckConstraint(in_values("timeframe", TIMEFRAMES), name="timeframe"),
        CheckConstraint("high >= low", name="high_low"),
        CheckConstraint("volume >= 0", name="volume"),
        # Also the index for range reads: (symbol, exchange, timeframe) then time.
        UniqueConstraint("symbol", "exchange", "timeframe", "open_time"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    symbol: Mapped[str] = mapped_column(String(50), nullable=False)
    exchange: Mapped[str] = mapped_column(String(50), nullable=False)
    timeframe: Mapped[str] = mapped_column(String(10), nullable=False)
    open_time: Mapped[datetime] = mapped_column(nullable=False)
    open: Mapped[Decimal] = mapped_column(nullable=False)
    high: Mapped[Decimal] = mapped_column(nullable=False)
    low: Mapped[Decimal] = mapped_column(nullable=False)
    close: Mapped[Decimal] = mapped_column(nullable=False)
    volume: Mapped[Decimal | None] = mapped_column(Numeric(30, 8))
