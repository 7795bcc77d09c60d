"""The caller's signals and trades: filtered, cursor-paginated listings and single items.

Every query is scoped to the caller; another user's id is answered 404 like a missing one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AfterValidator
from sqlalchemy import Select, select

from app.api.deps import CurrentUser
from app.api.pagination import MAX_LIMIT, page, to_page
from app.core.database import SessionDep
from app.core.errors import NotFound
from app.models import RealTrade, TradingSignal
from app.schemas.errors import AUTHENTICATED, NOT_FOUND
from app.schemas.trading import Page, SignalOut, TradeOut

router = APIRouter(prefix="/api", tags=["history"], responses=AUTHENTICATED)

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def _utc_if_naive(value: datetime) -> datetime:
    # Every time the API returns is UTC; without this a time sent without an offset would be
    # read in the server's local zone (asyncpg's conversion for `timestamptz`).
    return value if value.utcoffset() is not None else value.replace(tzinfo=UTC)


# A point in time of a filter; one without an offset is UTC.
Instant = Annotated[datetime, AfterValidator(_utc_if_naive)]


def _owned(
    model: type[TradingSignal] | type[RealTrade],
    user_id: str,
    *,
    symbol: str | None,
    status: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Select[Any]:
    """The caller's rows of `model`, with the filters every history listing shares."""
    query = select(model).where(model.user_id == user_id)
    if symbol:
        query = query.where(model.symbol == symbol.upper())
    if status:
        query = query.where(model.status == status)
    if since:
        query = query.where(model.created_at >= since)
    if until:
        query = query.where(model.created_at < until)
    return query


@router.get("/signals", response_model=Page[SignalOut], summary="My signals, newest first")
async def list_signals(
    user: CurrentUser,
    session: SessionDep,
    symbol: str | None = None,
    status: str | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Page[SignalOut]:
    query = _owned(TradingSignal, user.id, symbol=symbol, status=status, since=since, until=until)
    statement = page(query, TradingSignal.created_at, TradingSignal.id, cursor=cursor, limit=limit)
    rows = (await session.scalars(statement)).all()
    return to_page(rows, limit, SignalOut)


@router.get(
    "/signals/{signal_id}",
    response_model=SignalOut,
    summary="One of my signals",
    responses={404: NOT_FOUND},
)
async def get_signal(signal_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> SignalOut:
    row = await session.get(TradingSignal, signal_id)
    if row is None or row.user_id != user.id:
        raise NotFound("signal not found", field="signal_id")
    return SignalOut.model_validate(row)


@router.get("/trades", response_model=Page[TradeOut], summary="My trades (orders), newest first")
async def list_trades(
    user: CurrentUser,
    session: SessionDep,
    symbol: str | None = None,
    status: str | None = None,
    signal_id: uuid.UUID | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Page[TradeOut]:
    query = _owned(RealTrade, user.id, symbol=symbol, status=status, since=since, until=until)
    if signal_id:
        query = query.where(RealTrade.signal_id == signal_id)
    statement = page(query, RealTrade.created_at, RealTrade.id, cursor=cursor, limit=limit)
    rows = (await session.scalars(statement)).all()
    return to_page(rows, limit, TradeOut)


@router.get(
    "/trades/{trade_id}",
    response_model=TradeOut,
    summary="One of my trades",
    responses={404: NOT_FOUND},
)
async def get_trade(trade_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> TradeOut:
    row = await session.get(RealTrade, trade_id)
    if row is None or row.user_id != user.id:
        raise NotFound("trade not found", field="trade_id")
    return TradeOut.model_validate(row)
