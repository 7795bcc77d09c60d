"""Response and request bodies of the account routes (the caller and their webhook tokens)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

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


class AccountSummary(BaseModel):
    """The figures at the top of the dashboard, for one exchange account."""

    exchange: str
    equity: Decimal | None = Field(
        description="Wallet balance plus unrealised PnL, in USDT (the paper account only: a live"
        " exchange's equity is read by the workers when they size an order)"
    )
    wallet_balance: Decimal | None = Field(
        description="Deposits plus realised PnL minus fees, in USDT (paper account only)"
    )
    unrealized_pnl: Decimal = Field(description="Sum over the open positions, as last marked")
    realized_pnl_today: Decimal = Field(description="Realised PnL of fills since 00:00 UTC")
    trades_today: int = Field(description="Entries placed since 00:00 UTC (the daily limit)")
    open_positions: int
    as_of: datetime
