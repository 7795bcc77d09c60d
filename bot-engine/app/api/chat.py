"""The AI assistant: ask (streamed as Server-Sent Events, or in one response) and the
caller's conversations.

The stream is `event: start` (conversation id, mode, sources), then `data: {"content": ...}`
chunks, then `event: done` (message id, usage) and `data: [DONE]`. A failure after the
stream started is an `event: error` with a code and message, and no `[DONE]`. Everything
that can refuse the request (403 free tier, 404, 422, 429 allowance, 503) is answered as a
plain HTTP error before the stream starts.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy import delete, select
from starlette.background import BackgroundTask

from app.ai.chat_engine import TextDelta
from app.ai.chat_service import ChatService, Completed, Prepared
from app.api.deps import CurrentUser
from app.api.history import Limit
from app.api.pagination import page, to_page
from app.core.database import SessionDep
from app.core.errors import AppError, NotFound
from app.logging.logger import get_logger
from app.models import ChatConversation, ChatMessage
from app.schemas.chat import (
    ChatRequest,
    ChatResponse,
    ChatUsage,
    ConversationDetail,
    ConversationOut,
    MessageOut,
    Source,
)
from app.schemas.errors import AUTHENTICATED, NOT_FOUND, UNREADABLE_BODY, error
from app.schemas.trading import Page

router = APIRouter(prefix="/api/chat", tags=["chat"], responses=AUTHENTICATED)
log = get_logger("chat")

# What can refuse a question before the answer starts (streamed or not).
ASK_ERRORS: dict[int | str, dict[str, Any]] = {
    400: UNREADABLE_BODY,
    403: error("No engine account for the token, or a free-tier account"),
    404: error("`conversation_id` names no conversation of the caller's"),
    429: error("This month's answers are used up; `details` says when they reset"),
    503: error("The assistant is unavailable (its model or knowledge base)"),
}
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies must pass each event on at once
}


def _service(request: Request) -> ChatService:
    service: ChatService = request.app.state.chat
    return service


def _event(data: Any, name: str | None = None) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


async def _stream(service: ChatService, prepared: Prepared) -> AsyncIterator[bytes]:
    yield _event(
        {
            "conversation_id": str(prepared.conversation_id),
            "mode": service.mode,
            "sources": prepared.sources,
        },
        "start",
    )
    try:
        async for event in service.run(prepared):
            if isinstance(event, TextDelta):
                yield _event({"content": event.text})
            elif isinstance(event, Completed):
                yield _event(
                    {
                        "message_id": str(event.message_id),
                        "stop_reason": event.finished.stop_reason,
                        "usage": event.finished.usage.as_dict(),
                    },
                    "done",
                )
                yield b"data: [DONE]\n\n"
    except AppError as exc:
        yield _event({"code": exc.code, "message": exc.message}, "error")
    except Exception as exc:  # a bug: the client still gets a well-formed end of stream
        log.error("chat_stream_failed", error_type=type(exc).__name__, exc_info=exc)
        yield _event(
            {"code": "internal_error", "message": "internal error; it has been logged"}, "error"
        )


@router.post(
    "/stream",
    summary="Ask the assistant; the answer streams as Server-Sent Events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The answer"},
        **ASK_ERRORS,
    },
)
async def chat_stream(body: ChatRequest, user: CurrentUser, request: Request) -> StreamingResponse:
    service = _service(request)
    prepared = await service.prepare(user, body.question())
    return StreamingResponse(
        _stream(service, prepared),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, "X-Conversation-Id": str(prepared.conversation_id)},
        # Runs however the response ends, even if the client left before the first byte.
        background=BackgroundTask(service.settle, prepared),
    )


@router.post(
    "/",
    response_model=ChatResponse,
    summary="Ask the assistant; the whole answer",
    responses=ASK_ERRORS,
)
@router.post("", response_model=ChatResponse, include_in_schema=False)
async def chat(body: ChatRequest, user: CurrentUser, request: Request) -> ChatResponse:
    service = _service(request)
    prepared = await service.prepare(user, body.question())
    parts: list[str] = []
    completed: Completed | None = None
    async for event in service.run(prepared):  # gives the reservation back unless stored
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, Completed):
            completed = event
    assert completed is not None  # `run` raises unless it completed
    return ChatResponse(
        conversation_id=prepared.conversation_id,
        message_id=completed.message_id,
        response="".join(parts),
        mode=completed.finished.mode,
        model=completed.finished.model,
        stop_reason=completed.finished.stop_reason,
        sources=[Source(**s) for s in prepared.sources],
        usage=ChatUsage(**completed.finished.usage.as_dict()),
    )


@router.get(
    "/conversations",
    response_model=Page[ConversationOut],
    summary="My conversations, most recently active first",
)
async def list_conversations(
    user: CurrentUser, session: SessionDep, limit: Limit = 50, cursor: str | None = None
) -> Page[ConversationOut]:
    query = select(ChatConversation).where(ChatConversation.user_id == user.id)
    statement = page(
        query, ChatConversation.updated_at, ChatConversation.id, cursor=cursor, limit=limit
    )
    rows = (await session.scalars(statement)).all()
    return to_page(rows, limit, ConversationOut, stamp=lambda row: row.updated_at)


async def _own(session: SessionDep, user_id: str, conversation_id: uuid.UUID) -> ChatConversation:
    row = await session.get(ChatConversation, conversation_id)
    if row is None or row.user_id != user_id:
        raise NotFound("no such conversation", field="conversation_id")
    return row


@router.get(
    "/conversations/{conversation_id}",
    response_model=ConversationDetail,
    summary="One of my conversations, with its messages in order",
    responses={404: NOT_FOUND},
)
async def get_conversation(
    conversation_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> ConversationDetail:
    conversation = await _own(session, user.id, conversation_id)
    messages = await session.scalars(
        select(ChatMessage)
        .where(ChatMessage.conversation_id == conversation.id)
        .order_by(ChatMessage.created_at, ChatMessage.id)
    )
    return ConversationDetail(
        **ConversationOut.model_validate(conversation).model_dump(),
        messages=[MessageOut.model_validate(m) for m in messages],
    )


@router.delete(
    "/conversations/{conversation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete one of my conversations and its messages",
    responses={404: NOT_FOUND},
)
async def delete_conversation(
    conversation_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Response:
    conversation = await _own(session, user.id, conversation_id)
    await session.execute(delete(ChatConversation).where(ChatConversation.id == conversation.id))
    await session.commit()
    log.info("chat_conversation_deleted", conversation_id=str(conversation_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
