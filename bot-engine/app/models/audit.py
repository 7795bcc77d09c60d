"""Audit trail of security-relevant actions (credentials, trades, settings)."""

from __future__ import annotations

import uuid
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, bool_column, created_at_column, uuid_pk


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index(None, "user_id", "created_at"),
        Index(None, "action"),
        Index(None, "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    # Kept when the user is deleted: the trail outlives the account.
    user_id: Mapped[str | None] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="SET NULL")
    )
    action: Mapped[str] = mapped_column(String(100), nullable=False)  # e.g. "api_key.create"
    resource_type: Mapped[str | None] = mapped_column(String(50))
    resource_id: Mapped[str | None] = mapped_column(String(255))
    # asyncpg reads INET as ipaddress objects (and accepts them or strings).
    ip_address: Mapped[IPv4Address | IPv6Address | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(Text)
    old_value: Mapped[dict[str, Any] | None]
    new_value: Mapped[dict[str, Any] | None]
    success: Mapped[bool] = bool_column(True)
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
