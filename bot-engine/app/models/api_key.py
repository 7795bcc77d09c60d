"""Exchange API credentials, stored encrypted (AES-256-GCM) and never returned in clear.

The three `*_encrypted` columns hold ciphertext tokens of `app.core.credentials`, each bound
to its row, user, exchange and field. `api_key_hint` (the key's last four characters) lets
listings show which key is which without decrypting anything.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import (
    Base,
    bool_column,
    created_at_column,
    in_values,
    updated_at_column,
    uuid_pk,
)

# 'live' trades real funds; 'demo' uses the exchange's demo-trading environment.
KEY_MODES = ("live", "demo")


class ExchangeApiKey(Base):
    __tablename__ = "exchange_api_keys"
    __table_args__ = (
        # Leads with user_id, so it also serves "the keys of this user". Labels are not
        # unique: a replacement key commonly keeps the label of the key it replaces.
        Index(None, "user_id", "exchange"),
        # The engine trades through one key per user and exchange: the active one.
        Index(
            "uq_exchange_api_keys_active",
            "user_id",
            "exchange",
            unique=True,
            postgresql_where=text("is_active"),
        ),
        # Keys allowed to withdraw are refused when they are added; the database agrees.
        CheckConstraint("NOT can_withdraw", name="no_withdraw"),
        CheckConstraint(in_values("mode", KEY_MODES), name="mode"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    exchange: Mapped[str] = mapped_column(String(50), nullable=False)
    label: Mapped[str | None] = mapped_column(String(100))
    api_key_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    api_secret_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    passphrase_encrypted: Mapped[str | None] = mapped_column(Text)
    # Permissions reported by the exchange when the key was last validated.
    is_read_only: Mapped[bool] = bool_column(True)
    can_trade: Mapped[bool] = bool_column(False)
    can_withdraw: Mapped[bool] = bool_column(False)
    is_active: Mapped[bool] = bool_column(True)
    is_valid: Mapped[bool] = bool_column(True)
    last_used_at: Mapped[datetime | None]
    last_validated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    # Added by migration 0005, hence after the timestamps.
    mode: Mapped[str] = mapped_column(String(10), nullable=False, server_default=text("'live'"))
    # NULL for keys stored before 0005, and for keys too short to show a part of.
    api_key_hint: Mapped[str | None] = mapped_column(String(4))
