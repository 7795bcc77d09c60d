"""Response and request bodies of the notification routes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    type: str
    title: str
    message: str
    related_type: str | None
    related_id: str | None
    is_read: bool
    read_at: datetime | None
    telegram_status: str | None = Field(
        description="pending, sent or failed; null when it was not for Telegram"
    )
    created_at: datetime


class TelegramLink(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chat_id: str | None = Field(
        default=None,
        pattern=r"^-?[0-9]{1,20}$|^@[A-Za-z0-9_]{5,32}$",
        description="The chat to notify: a numeric chat id or a @channel username",
    )
    enabled: bool


class TelegramLinkOut(BaseModel):
    chat_id: str | None
    enabled: bool
    bot_configured: bool = Field(description="Whether this engine has a Telegram bot token")


class ReadAll(BaseModel):
    marked: int
