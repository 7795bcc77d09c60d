"""Response and request bodies of the trading routes: signals, trades, positions, risk.

Money and quantities are `Decimal` and travel as JSON strings, never floats.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


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
    price: Decimal | None
    suggested_stop_loss: Decimal | None
    suggested_take_profit: Decimal | None
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
    quantity: Decimal
    price: Decimal | None
    filled_quantity: Decimal
    avg_fill_price: Decimal | None
    fee: Decimal | None
    fee_currency: str | None
    realized_pnl: Decimal | None
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
    quantity: Decimal
    entry_price: Decimal
    current_price: Decimal | None
    leverage: int
    stop_loss: Decimal | None
    take_profit: Decimal | None
    unrealized_pnl: Decimal | None
    realized_pnl: Decimal | None
    margin: Decimal | None
    liquidation_price: Decimal | None
    signal_id: uuid.UUID | None
    opened_at: datetime
    closed_at: datetime | None


class CloseRequested(BaseModel):
    status: str = "queued"
    message: str
    signal_id: uuid.UUID


class RiskSettingsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    max_position_size_usd: Decimal
    max_leverage: int
    max_open_positions: int
    max_daily_trades: int
    max_daily_loss_percent: Decimal
    max_portfolio_exposure_percent: Decimal
    default_risk_per_trade_percent: Decimal
    require_stop_loss: bool
    notify_on_trade: bool
    notify_on_stop_loss: bool
    notify_on_daily_loss_limit: bool
    updated_at: datetime


class RiskSettingsIn(BaseModel):
    """A full or partial update; omitted fields keep their value."""

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
