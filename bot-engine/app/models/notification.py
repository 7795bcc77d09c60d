"""In-app notifications to a user, and whether they also went out by e-mail, push or Telegram."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, bool_column, created_at_column, in_values, uuid_pk

NOTIFICATION_TYPES = (
    "trade_executed",
    "trade_failed",
    "position_closed",
    "stop_loss_hit",
    "take_profit_hit",
    "daily_loss_limit",
    "daily_summary",
    "system",
    "signal_rejected",
)
TELEGRAM_STATUSES = ("pending", "sent", "failed")
RELATED_TYPES = ("trade", "position", "signal")


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(in_values("type", NOTIFICATION_TYPES), name="type"),
        CheckConstraint(in_values("related_type", RELATED_TYPES), name="related_type"),
        CheckConstraint(in_values("telegram_status", TELEGRAM_STATUSES), name="telegram_status"),
        UniqueConstraint("user_id", "dedupe_key"),
        Index(None, "user_id", "created_at"),
        Index(None, "user_id", "is_read"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    type: Mapped[str] = mapped_column(String(50), nullable=False)
    title: Mapped[str] = mapped_column(String(255), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    related_type: Mapped[str | None] = mapped_column(String(50))
    related_id: Mapped[str | None] = mapped_column(String(255))
    is_read: Mapped[bool] = bool_column(False)
    read_at: Mapped[datetime | None]
    email_sent: Mapped[bool] = bool_column(False)
    push_sent: Mapped[bool] = bool_column(False)
    created_at: Mapped[datetime] = created_at_column()
    # Derived from the event it tells of: the same event never notifies twice.
    dedupe_key: Mapped[str | None] = mapped_column(String(120))
    telegram_status: Mapped[str | None] = mapped_column(String(10))
    telegram_sent_at: Mapped[datetime | None]
    telegram_error: Mapped[str | None] = mapped_column(String(255))
