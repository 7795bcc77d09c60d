"""The caller's account: who am I, and my webhook tokens (issue, list, revoke)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Request, status

from app.ai import quota
from app.api.deps import CurrentUser
from app.core import webhook_tokens
from app.core.database import SessionDep
from app.logging.logger import get_logger
from app.schemas.account import (
    ChatAllowance,
    UserOut,
    WebhookTokenCreate,
    WebhookTokenIssued,
    WebhookTokenOut,
)

router = APIRouter(prefix="/api", tags=["account"])
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


@router.get("/webhook-tokens", response_model=list[WebhookTokenOut], summary="My webhook tokens")
async def list_tokens(user: CurrentUser, session: SessionDep) -> list[WebhookTokenOut]:
    records = await webhook_tokens.list_for_user(session, user.id)
    return [WebhookTokenOut.model_validate(r) for r in records]


@router.post(
    "/webhook-tokens",
    response_model=WebhookTokenIssued,
    status_code=status.HTTP_201_CREATED,
    summary="Issue a webhook token (the token is shown only in this response)",
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
)
async def revoke_token(
    token_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> WebhookTokenOut:
    record = await webhook_tokens.revoke(session, token_id, user_id=user.id)
    await session.commit()
    log.info("webhook_token_revoked", token_id=str(record.id))
    return WebhookTokenOut.model_validate(record)
