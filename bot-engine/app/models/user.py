"""Users (one row per Cognito `sub`) and the webhook tokens they give TradingView."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import (
    SUBSCRIPTION_TIERS,
    Base,
    bool_column,
    created_at_column,
    in_values,
    updated_at_column,
    uuid_pk,
)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(in_values("subscription_tier", SUBSCRIPTION_TIERS), name="tier"),
        CheckConstraint("chat_messages_used >= 0", name="chat_messages_used"),
        CheckConstraint("chat_messages_limit >= 0", name="chat_messages_limit"),
    )

    # The Cognito `sub`; development users get a uuid4 string from the application.
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), nullable=False, unique=True)
    subscription_tier: Mapped[str] = mapped_column(
        String(20), nullable=False, server_default=text("'free'")
    )
    chat_enabled: Mapped[bool] = bool_column(False)
    chat_messages_used: Mapped[int] = mapped_column(nullable=False, server_default=text("0"))
    # Assistant answers this month (the month starting `chat_usage_month`) and the monthly
    # allowance; 0 means the tier's allowance (settings). Free users have none.
    chat_messages_limit: Mapped[int] = mapped_column(nullable=False, server_default=text("0"))
    telegram_chat_id: Mapped[str | None] = mapped_column(String(100))
    telegram_enabled: Mapped[bool] = bool_column(False)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    chat_usage_month: Mapped[date | None]


class WebhookToken(Base):
    """A secret a user puts in TradingView alert URLs; only its SHA-256 is stored."""

    __tablename__ = "webhook_tokens"
    __table_args__ = (
        CheckConstraint("token_hash ~ '^[0-9a-f]{64}$'", name="token_hash_hex"),
        Index(None, "user_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(100), nullable=False, server_default=text("'default'"))
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    # Non-secret leading characters of the token, shown so users can tell tokens apart.
    token_prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
