"""Response and request bodies of the account routes (the caller and their webhook tokens)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ChatAllowance(BaseModel):
    enabled: bool = Field(description="The assistant is part of the caller's tier")
    used: int = Field(description="Answers this month")
    limit: int = Field(description="Answers per month")
    resets_at: datetime = Field(description="When the monthly count starts again (UTC)")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    subscription_tier: str
    chat_enabled: bool = Field(description="The assistant is part of the caller's tier")
    telegram_enabled: bool
    created_at: datetime
    chat: ChatAllowance


class WebhookTokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    token_prefix: str = Field(description="Non-secret start of the token, to tell tokens apart")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class WebhookTokenIssued(WebhookTokenOut):
    token: str = Field(description="The token itself. Shown only in this response.")


class WebhookTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="default", min_length=1, max_length=100)
