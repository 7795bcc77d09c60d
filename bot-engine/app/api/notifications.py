"""The caller's notifications (listed newest first, marked read) and their Telegram link."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from sqlalchemy import select, update

from app.api.deps import CurrentUser
from app.api.history import Limit
from app.api.pagination import page, to_page
from app.core.database import SessionDep
from app.core.errors import NotFound, ValidationFailed
from app.logging.logger import get_logger
from app.models import Notification
from app.schemas.errors import AUTHENTICATED, NOT_FOUND, UNREADABLE_BODY
from app.schemas.notifications import NotificationOut, ReadAll, TelegramLink, TelegramLinkOut
from app.schemas.trading import Page

router = APIRouter(prefix="/api/notifications", tags=["notifications"], responses=AUTHENTICATED)
log = get_logger("api")


@router.get("", response_model=Page[NotificationOut], summary="My notifications, newest first")
async def list_notifications(
    user: CurrentUser,
    session: SessionDep,
    unread: bool = False,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Page[NotificationOut]:
    query = select(Notification).where(Notification.user_id == user.id)
    if unread:
        query = query.where(Notification.is_read.is_(False))
    statement = page(query, Notification.created_at, Notification.id, cursor=cursor, limit=limit)
    rows = (await session.scalars(statement)).all()
    return to_page(rows, limit, NotificationOut)


@router.post(
    "/{notification_id}/read",
    response_model=NotificationOut,
    summary="Mark one as read",
    responses={404: NOT_FOUND},
)
async def mark_read(
    notification_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> NotificationOut:
    notification = await session.scalar(
        select(Notification).where(
            Notification.id == notification_id, Notification.user_id == user.id
        )
    )
    if notification is None:
        raise NotFound("no such notification", field="notification_id")
    if not notification.is_read:
        notification.is_read = True
        notification.read_at = datetime.now(UTC)
        await session.commit()
    return NotificationOut.model_validate(notification)


@router.post("/read-all", response_model=ReadAll, summary="Mark all of mine as read")
async def mark_all_read(user: CurrentUser, session: SessionDep) -> ReadAll:
    result = await session.execute(
        update(Notification)
        .where(Notification.user_id == user.id, Notification.is_read.is_(False))
        .values(is_read=True, read_at=datetime.now(UTC))
    )
    await session.commit()
    return ReadAll(marked=result.rowcount)  # type: ignore[attr-defined]


@router.get("/telegram", response_model=TelegramLinkOut, summary="My Telegram link")
async def get_telegram(request: Request, user: CurrentUser) -> TelegramLinkOut:
    return TelegramLinkOut(
        chat_id=user.telegram_chat_id,
        enabled=user.telegram_enabled,
        bot_configured=request.app.state.settings.TELEGRAM_BOT_TOKEN is not None,
    )


@router.put(
    "/telegram",
    response_model=TelegramLinkOut,
    summary="Link or unlink Telegram",
    responses={400: UNREADABLE_BODY},
)
async def put_telegram(
    body: TelegramLink, request: Request, user: CurrentUser, session: SessionDep
) -> TelegramLinkOut:
    if body.enabled and body.chat_id is None:
        raise ValidationFailed("a chat_id is needed to enable Telegram", field="chat_id")
    user.telegram_chat_id = body.chat_id
    user.telegram_enabled = body.enabled
    await session.commit()
    log.info("telegram_link_changed", enabled=body.enabled)
    return await get_telegram(request, user)
