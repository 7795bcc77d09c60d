"""One chat exchange from request to stored answer: tier and input checks, the monthly
allowance, the conversation, retrieval, the caller's context, the answer, and the record.

`prepare` does everything that can refuse the request (403, 404, 422, 429, 503) before a
byte of the answer is sent; `run` streams the answer and stores it when it completes. An
answer that fails or is abandoned mid-way is not stored and not counted.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import anyio
import structlog
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ai import quota
from app.ai.chat_engine import (
    ChatEngine,
    ChatEvent,
    ChatFailed,
    Finished,
    Prompt,
    Role,
    TextDelta,
    Turn,
)
from app.ai.context_builder import build_context
from app.ai.embeddings import Embedder
from app.ai.knowledge_base import Passage, search
from app.ai.tools import ToolBox
from app.config import Settings
from app.core.errors import NotFound, ValidationFailed
from app.core.metrics import Metrics
from app.models import ChatConversation, ChatMessage, User

log = structlog.get_logger("app.chat")
TITLE_CHARS = 80


@dataclass(frozen=True)
class Question:
    message: str
    conversation_id: uuid.UUID | None = None
    history: Sequence[Turn] = ()  # earlier turns held by a client that keeps no conversation


@dataclass(frozen=True)
class Completed:
    """The answer is stored: the last event of a successful `run`."""

    message_id: uuid.UUID
    finished: Finished


@dataclass
class Prepared:
    conversation_id: uuid.UUID
    prompt: Prompt
    reservation: quota.Reservation
    sources: list[dict[str, Any]]
    # Stored (counted) or given back: nothing more to do for its reservation.
    settled: bool = field(default=False)


def sources_of(passages: Sequence[Passage]) -> list[dict[str, Any]]:
    return [
        {
            "number": n,
            "document": p.document,
            "title": p.title,
            "score": round(p.score, 5),
            "similarity": None if p.similarity is None else round(p.similarity, 4),
        }
        for n, p in enumerate(passages, start=1)
    ]


class ChatService:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        embedder: Embedder,
        engine: ChatEngine,
        *,
        unavailable: ChatFailed | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.embedder = embedder
        self.engine = engine
        # Set when the model check at start-up failed: chat answers 503 with this reason.
        self.unavailable = unavailable
        self.metrics = metrics

    @property
    def mode(self) -> str:
        return self.engine.mode

    def _validate(self, question: Question) -> None:
        limit = self.settings.CHAT_MAX_MESSAGE_CHARS
        if not question.message.strip():
            raise ValidationFailed("message: must not be empty", field="message")
        if len(question.message) > limit:
            raise ValidationFailed(
                f"message: at most {limit} characters (got {len(question.message)})",
                field="message",
            )
        if question.history and question.conversation_id is not None:
            raise ValidationFailed(
                "history: give either a conversation_id or the history, not both",
                field="history",
            )
        most = self.settings.CHAT_MAX_HISTORY_MESSAGES
        if len(question.history) > most:
            raise ValidationFailed(
                f"history: at most {most} messages (got {len(question.history)})",
                field="history",
            )
        for n, turn in enumerate(question.history):
            if len(turn.content) > limit:
                raise ValidationFailed(
                    f"history.{n}.content: at most {limit} characters", field=f"history.{n}.content"
                )

    async def _history(self, session: AsyncSession, conversation_id: uuid.UUID) -> list[Turn]:
        rows = (
            await session.execute(
                select(ChatMessage.role, ChatMessage.content)
                .where(
                    ChatMessage.conversation_id == conversation_id,
                    ChatMessage.role.in_(("user", "assistant")),
                )
                .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
                .limit(self.settings.CHAT_MAX_HISTORY_MESSAGES)
            )
        ).all()
        return [Turn(cast(Role, role), content) for role, content in reversed(rows)]

    async def prepare(self, user: User, question: Question) -> Prepared:
        quota.require_paid_tier(user)
        self._validate(question)
        if self.unavailable is not None:
            raise self.unavailable
        async with self.sessionmaker() as session:
            conversation: ChatConversation | None = None
            if question.conversation_id is not None:
                conversation = await session.get(ChatConversation, question.conversation_id)
                if conversation is None or conversation.user_id != user.id:
                    raise NotFound("no such conversation", field="conversation_id")
            limit = quota.allowance(user, self.settings)
            reservation = await quota.reserve(session, user, limit)
            try:
                history = (
                    await self._history(session, conversation.id)
                    if conversation is not None
                    else list(question.history)
                )
                passages = await search(
                    session, self.embedder, question.message, limit=self.settings.KB_SEARCH_LIMIT
                )
                context = await build_context(
                    session, user, chat_limit=limit, chat_used=reservation.used
                )
                if conversation is None:
                    conversation = ChatConversation(
                        user_id=user.id, title=question.message.strip()[:TITLE_CHARS]
                    )
                    session.add(conversation)
                    await session.flush()
                session.add(
                    ChatMessage(
                        conversation_id=conversation.id,
                        role="user",
                        content=question.message,
                        context_summary=context.summary(),
                    )
                )
                await session.commit()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    # A failed statement leaves the transaction unusable: without the
                    # rollback, the release would fail too and the answer stay reserved.
                    await session.rollback()
                    await quota.release(session, reservation)
                raise
        tools = ToolBox(self.sessionmaker, user.id) if self.engine.mode == "claude" else None
        return Prepared(
            conversation_id=conversation.id,
            prompt=Prompt(question.message, history, context, passages, tools),
            reservation=reservation,
            sources=sources_of(passages),
        )

    async def settle(self, prepared: Prepared) -> None:
        """Give back the reservation of an answer that was not stored; nothing once it was
        (idempotent). Also for callers whose `run` never started (the client left first)."""
        if prepared.settled:
            return
        prepared.settled = True
        with anyio.CancelScope(shield=True):
            async with self.sessionmaker() as session:
                await quota.release(session, prepared.reservation)

    async def run(self, prepared: Prepared) -> AsyncIterator[ChatEvent | Completed]:
        """The answer's events, then `Completed` once it is stored. Anything else — a model
        failure, the client going away — gives the reserved answer back."""
        parts: list[str] = []
        started = datetime.now(UTC)
        outcome = "abandoned"  # the client left: neither completed nor failed
        try:
            finished: Finished | None = None
            async for event in self.engine.answer(prepared.prompt):
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                else:
                    finished = event
                yield event
            if finished is None:
                raise ChatFailed("the answer ended without completing", code="model_error")
            message_id = await self._store(prepared, "".join(parts), finished)
            prepared.settled = True
            outcome = "completed"
            self._count_tokens(finished)
            log.info(
                "chat_answered",
                mode=finished.mode,
                conversation_id=str(prepared.conversation_id),
                input_tokens=finished.usage.input_tokens,
                output_tokens=finished.usage.output_tokens,
                cache_read_input_tokens=finished.usage.cache_read_input_tokens,
                tool_calls=len(finished.tool_calls),
                sources=len(prepared.sources),
                duration_ms=int((datetime.now(UTC) - started).total_seconds() * 1000),
            )
            yield Completed(message_id, finished)
        except Exception:
            outcome = "failed"
            raise
        finally:
            if self.metrics is not None:
                seconds = (datetime.now(UTC) - started).total_seconds()
                self.metrics.chat_answers.labels(self.engine.mode, outcome).observe(seconds)
            await self.settle(prepared)  # nothing to do once stored

    def _count_tokens(self, finished: Finished) -> None:
        if self.metrics is None:
            return
        for name, count in finished.usage.as_dict().items():
            kind = name.removesuffix("_tokens").removesuffix("_input")  # input, cache_read, …
            self.metrics.chat_tokens.labels(finished.mode, kind).inc(count)

    async def _store(self, prepared: Prepared, text: str, finished: Finished) -> uuid.UUID:
        async with self.sessionmaker() as session:
            message = ChatMessage(
                conversation_id=prepared.conversation_id,
                role="assistant",
                content=text,
                mode=finished.mode,
                model=finished.model,
                stop_reason=finished.stop_reason,
                sources=prepared.sources,
                context_summary=prepared.prompt.context.summary(),
                **finished.usage.as_dict(),
            )
            session.add(message)
            await session.execute(
                update(ChatConversation)
                .where(ChatConversation.id == prepared.conversation_id)
                .values(updated_at=func.now())
            )
            await session.commit()
            return message.id

    async def aclose(self) -> None:
        await self.engine.aclose()
        await self.embedder.aclose()
