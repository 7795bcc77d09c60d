"""The caller's account: who am I, the dashboard's summary figures, and my webhook tokens
(issue, list, revoke)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from sqlalchemy import func, select

from app.ai import quota
from app.api.deps import CurrentUser
from app.core import webhook_tokens
from app.core.database import SessionDep
from app.core.errors import ValidationFailed
from app.exchanges.paper import PaperExchange
from app.logging.logger import get_logger
from app.models import RealPosition, RealTrade
from app.schemas.account import (
    AccountSummary,
    ChatAllowance,
    UserOut,
    WebhookTokenCreate,
    WebhookTokenIssued,
    WebhookTokenOut,
)
from app.schemas.errors import AUTHENTICATED, NOT_FOUND, UNREADABLE_BODY

router = APIRouter(prefix="/api", tags=["account"], responses=AUTHENTICATED)
log = get_logger("api")


@router.get("/me", response_model=UserOut, summary="The authenticated user")
async def me(user: CurrentUser, request: Request) -> UserOut:
    now = datetime.now(UTC)
    allowance = ChatAllowance(
        enabled=user.subscription_tier != "free",
        used=quota.used_this_month(user, now),
        limit=quota.allowance(user, request.app.state.settings),
        resets_at=quota.next_reset(quota.month_of(now)),
    )
    return UserOut(
        id=user.id,
        email=user.email,
        subscription_tier=user.subscription_tier,
        chat_enabled=allowance.enabled,
        telegram_enabled=user.telegram_enabled,
        created_at=user.created_at,
        chat=allowance,
    )


def _start_of_day(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@router.get(
    "/account/summary",
    response_model=AccountSummary,
    summary="Equity, today's PnL and open positions of one of my exchange accounts",
)
async def account_summary(
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    exchange: Annotated[str | None, Query(max_length=32)] = None,
) -> AccountSummary:
    settings = request.app.state.settings
    exchange = (exchange or settings.DEFAULT_EXCHANGE).lower()
    if exchange not in settings.SUPPORTED_EXCHANGES:
        raise ValidationFailed(
            f"unknown exchange {exchange!r}; one of {', '.join(settings.SUPPORTED_EXCHANGES)}",
            field="exchange",
        )
    now = datetime.now(UTC)
    day = _start_of_day(now)
    positions = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(RealPosition.unrealized_pnl), 0)).where(
                RealPosition.user_id == user.id,
                RealPosition.exchange == exchange,
                RealPosition.status == "open",
            )
        )
    ).one()
    trades = (
        await session.execute(
            select(
                func.coalesce(
                    func.sum(RealTrade.realized_pnl).filter(RealTrade.executed_at >= day), 0
                ),
                func.count().filter(RealTrade.created_at >= day, RealTrade.reduce_only.is_(False)),
            ).where(RealTrade.user_id == user.id, RealTrade.exchange == exchange)
        )
    ).one()
    equity = wallet = None
    if exchange == "paper":
        paper = PaperExchange(
            request.app.state.pg,
            user.id,
            request.app.state.paper_feed,
            starting_balance=settings.PAPER_STARTING_BALANCE,
        )
        equity, wallet = await paper.get_equity(), await paper.get_wallet_balance()
    return AccountSummary(
        exchange=exchange,
        equity=equity,
        wallet_balance=wallet,
        unrealized_pnl=Decimal(positions[1] or 0),
        realized_pnl_today=Decimal(trades[0] or 0),
        trades_today=int(trades[1]),
        open_positions=int(positions[0]),
        as_of=now,
    )


@router.get("/webhook-tokens", response_model=list[WebhookTokenOut], summary="My webhook tokens")
async def list_tokens(user: CurrentUser, session: SessionDep) -> list[WebhookTokenOut]:
    records = await webhook_tokens.list_for_user(session, user.id)
    return [WebhookTokenOut.model_validate(r) for r in records]


@router.post(
    "/webhook-tokens",
    response_model=WebhookTokenIssued,
    status_code=status.HTTP_201_CREATED,
    summary="Issue a webhook token (the token is shown only in this response)",
    responses={400: UNREADABLE_BODY},
)
async def issue_token(
    body: WebhookTokenCreate, user: CurrentUser, session: SessionDep
) -> WebhookTokenIssued:
    issued = await webhook_tokens.issue(session, user.id, body.name)
    await session.commit()
    log.info("webhook_token_issued", token_id=str(issued.record.id))
    out = WebhookTokenOut.model_validate(issued.record)
    return WebhookTokenIssued(**out.model_dump(), token=issued.token)


@router.delete(
    "/webhook-tokens/{token_id}",
    response_model=WebhookTokenOut,
    summary="Revoke one of my webhook tokens",
    responses={404: NOT_FOUND},
)
async def revoke_token(
    token_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> WebhookTokenOut:
    record = await webhook_tokens.revoke(session, token_id, user_id=user.id)
    await session.commit()
    log.info("webhook_token_revoked", token_id=str(record.id))
    return WebhookTokenOut.model_validate(record)
