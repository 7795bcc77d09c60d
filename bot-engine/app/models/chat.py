"""AI assistant conversations and their messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, in_values, updated_at_column, uuid_pk

CHAT_ROLES = ("user", "assistant", "system")
# How an assistant message was produced: by Claude, or by the offline mode (retrieved
# passages and the user's own data, no language model).
CHAT_MODES = ("claude", "offline")


class ChatConversation(Base):
    __tablename__ = "chat_conversations"
    __table_args__ = (Index(None, "user_id", "updated_at"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    __table_args__ = (
        CheckConstraint(in_values("role", CHAT_ROLES), name="role"),
        CheckConstraint(in_values("mode", CHAT_MODES), name="mode"),
        CheckConstraint("input_tokens >= 0", name="input_tokens"),
        CheckConstraint("output_tokens >= 0", name="output_tokens"),
        Index(None, "conversation_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("chat_conversations.id", ondelete="CASCADE"), nullable=False
    )
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    # Usage the model provider reported, for billing (`input_tokens` excludes the cached
    # part of the prompt).
    input_tokens: Mapped[int | None]
    output_tokens: Mapped[int | None]
    # What of the user's own account data went with the question.
    context_summary: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    # Assistant messages: how they were made ...
    mode: Mapped[str | None] = mapped_column(String(20))
    model: Mapped[str | None] = mapped_column(String(100))
    stop_reason: Mapped[str | None] = mapped_column(String(30))
    cache_read_input_tokens: Mapped[int | None]
    cache_creation_input_tokens: Mapped[int | None]
    # ... and the knowledge passages they were given (document, title, score).
    sources: Mapped[list[dict[str, Any]] | None]
