"""The caller's positions, and closing one by hand.

Closing goes through the same pipeline as an alert: it records a manual exit signal for the
position's symbol and queues it, so it is ordered with the user's other signals on that
symbol and executed exactly once (repeated requests while it is pending answer with the same
signal).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from app.api.deps import CurrentUser
from app.api.history import Limit
from app.api.pagination import page, to_page
from app.core import events
from app.core.database import SessionDep
from app.core.errors import Conflict, NotFound
from app.core.redis import RedisDep
from app.logging.logger import get_logger
from app.models import RealPosition, TradingSignal
from app.models.signal import PENDING_STATUSES
from app.schemas.errors import AUTHENTICATED, NOT_FOUND, error
from app.schemas.trading import CloseRequested, Page, PositionOut
from app.workers import queue

router = APIRouter(prefix="/api/positions", tags=["positions"], responses=AUTHENTICATED)
log = get_logger("position")


@router.get("", response_model=Page[PositionOut], summary="My positions, newest first")
async def list_positions(
    user: CurrentUser,
    session: SessionDep,
    status: Annotated[Literal["open", "closed"] | None, Query()] = None,
    symbol: str | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Page[PositionOut]:
    query = select(RealPosition).where(RealPosition.user_id == user.id)
    if status:
        query = query.where(RealPosition.status == status)
    if symbol:
        query = query.where(RealPosition.symbol == symbol.upper())
    statement = page(query, RealPosition.opened_at, RealPosition.id, cursor=cursor, limit=limit)
    rows = (await session.scalars(statement)).all()
    return to_page(rows, limit, PositionOut, stamp=lambda row: row.opened_at)


async def _own_position(session: SessionDep, user_id: str, position_id: uuid.UUID) -> RealPosition:
    row = await session.get(RealPosition, position_id)
    if row is None or row.user_id != user_id:
        raise NotFound("position not found", field="position_id")
    return row


@router.get(
    "/{position_id}",
    response_model=PositionOut,
    summary="One of my positions",
    responses={404: NOT_FOUND},
)
async def get_position(
    position_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> PositionOut:
    return PositionOut.model_validate(await _own_position(session, user.id, position_id))


async def _close_signal(session: SessionDep, position: RealPosition) -> uuid.UUID:
    """The manual exit signal that closes `position`: the one still pending, else a new one.

    Attempt `n` has the dedupe key `close:<position id>:<n>`, `n` counting the attempts that
    ended without closing the position (failed, skipped): concurrent requests insert the same
    key and so agree on one signal, and an attempt that failed does not answer every later
    request with its own, finished, id (the position could then never be closed).
    """
    prefix = f"close:{position.id}"
    earlier = (
        await session.execute(
            select(TradingSignal.id, TradingSignal.status)
            .where(
                TradingSignal.user_id == position.user_id,
                TradingSignal.dedupe_key.startswith(prefix, autoescape=True),
            )
            .order_by(TradingSignal.seq)
        )
    ).all()
    pending: list[uuid.UUID] = [row.id for row in earlier if row.status in PENDING_STATUSES]
    if pending:
        return pending[-1]
    dedupe_key = f"{prefix}:{len(earlier)}"
    signal_id: uuid.UUID | None = await session.scalar(
        insert(TradingSignal)
        .values(
            user_id=position.user_id,
            signal_type=f"{position.side}_exit",
            symbol=position.symbol,
            exchange=position.exchange,
            source="manual",
            raw_payload={"reason": "closed by the user", "position_id": str(position.id)},
            dedupe_key=dedupe_key,
            status="queued",
        )
        .on_conflict_do_nothing(index_elements=["user_id", "dedupe_key"])
        .returning(TradingSignal.id)
    )
    if signal_id is None:  # a concurrent request inserted it first
        signal_id = await session.scalar(
            select(TradingSignal.id).where(
                TradingSignal.user_id == position.user_id, TradingSignal.dedupe_key == dedupe_key
            )
        )
    assert signal_id is not None
    return signal_id


@router.post(
    "/{position_id}/close",
    response_model=CloseRequested,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Close one of my open positions at market",
    responses={404: NOT_FOUND, 409: error("The position is already closed")},
)
async def close_position(
    position_id: uuid.UUID, user: CurrentUser, session: SessionDep, redis: RedisDep
) -> CloseRequested:
    position = await _own_position(session, user.id, position_id)
    if position.status != "open":
        raise Conflict("position is already closed", field="position_id", code="position_closed")
    signal_id = await _close_signal(session, position)
    await session.commit()
    signal = await session.get(TradingSignal, signal_id)
    assert signal is not None
    announce = (
        events.user_channel(user.id),
        events.encode(
            events.EventType.SIGNAL_RECEIVED,
            {name: getattr(signal, name) for name in events.SIGNAL_FIELDS},
        ),
    )
    try:
        await queue.enqueue(redis, signal_id, user.id, position.symbol, announce=announce)
    except Exception as exc:
        log.warning("enqueue_failed", signal_id=str(signal_id), error_type=type(exc).__name__)
    return CloseRequested(message="close queued", signal_id=signal_id)
