"""Response and request bodies of the trading routes: signals, trades, positions, risk.

Money and quantities are `Decimal` and travel as JSON strings, never floats, and always in
plain notation: PostgreSQL hands a zero of `NUMERIC(20, 8)` back as `Decimal("0E-8")`, whose
`str()` a client's decimal parser may not accept.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

T = TypeVar("T")


def _plain(value: Decimal) -> str:
    """`value` in positional notation with its scale kept: 0E-8 → "0.00000000"."""
    return format(value, "f")


# A Decimal of a response body: a JSON string in plain notation.
Money = Annotated[Decimal, PlainSerializer(_plain, return_type=str, when_used="json")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class SignalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    seq: int
    signal_type: str
    symbol: str
    exchange: str | None
    status: str
    status_reason: str | None
    price: Money | None
    suggested_stop_loss: Money | None
    suggested_take_profit: Money | None
    strategy_id: uuid.UUID | None
    source: str
    raw_payload: dict[str, Any] | None
    execution_result: dict[str, Any] | None
    created_at: datetime
    processed_at: datetime | None


class TradeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    signal_id: uuid.UUID | None
    position_id: uuid.UUID | None
    exchange: str
    symbol: str
    side: str
    order_type: str
    reduce_only: bool
    status: str
    quantity: Money
    price: Money | None
    filled_quantity: Money
    avg_fill_price: Money | None
    fee: Money | None
    fee_currency: str | None
    realized_pnl: Money | None
    client_order_id: str | None
    exchange_order_id: str | None
    executed_at: datetime | None
    created_at: datetime


class PositionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    exchange: str
    symbol: str
    side: str
    status: str
    quantity: Money
    entry_price: Money
    current_price: Money | None
    leverage: int
    stop_loss: Money | None
    take_profit: Money | None
    unrealized_pnl: Money | None
    realized_pnl: Money | None
    margin: Money | None
    liquidation_price: Money | None
    signal_id: uuid.UUID | None
    opened_at: datetime
    closed_at: datetime | None


class CloseRequested(BaseModel):
    status: str = "queued"
    message: str
    signal_id: uuid.UUID


class RiskSettingsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    max_position_size_usd: Money
    max_leverage: int
    max_open_positions: int
    max_daily_trades: int
    max_daily_loss_percent: Money
    max_portfolio_exposure_percent: Money
    default_risk_per_trade_percent: Money
    require_stop_loss: bool
    notify_on_trade: bool
    notify_on_stop_loss: bool
    notify_on_daily_loss_limit: bool
    updated_at: datetime


class RiskSettingsIn(BaseModel):
    """A full or partial update; omitted fields keep their value.

    An explicit `null` is refused (422 naming the field) rather than read as "unchanged":
    every setting has a value, and a client sending null must not be told it was applied.
    """

    model_config = ConfigDict(extra="forbid")

    max_position_size_usd: Decimal | None = Field(None, gt=0, le=Decimal("1e12"), decimal_places=2)
    max_leverage: int | None = Field(None, ge=1, le=125)
    max_open_positions: int | None = Field(None, ge=0, le=1000)
    max_daily_trades: int | None = Field(None, ge=0, le=100_000)
    max_daily_loss_percent: Decimal | None = Field(None, gt=0, le=100, decimal_places=2)
    max_portfolio_exposure_percent: Decimal | None = Field(None, gt=0, le=100, decimal_places=2)
    default_risk_per_trade_percent: Decimal | None = Field(None, gt=0, le=100, decimal_places=2)
    require_stop_loss: bool | None = None
    notify_on_trade: bool | None = None
    notify_on_stop_loss: bool | None = None
    notify_on_daily_loss_limit: bool | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:  # defaults are not validated: only a null that was sent gets here
            raise ValueError("must not be null; leave the field out to keep its value")
        return value

    def changes(self) -> dict[str, Any]:
        """The settings this update sets, by column name."""
        return self.model_dump(exclude_unset=True)
