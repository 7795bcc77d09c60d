"""Request and response bodies of the assistant's routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.ai.chat_engine import Turn
from app.ai.chat_service import Question

# Outer bounds only: the configured limits (CHAT_MAX_MESSAGE_CHARS,
# CHAT_MAX_HISTORY_MESSAGES) are checked by the service, with a 422 naming the field.
_MAX_TEXT = 100_000
_MAX_HISTORY = 1_000


class HistoryMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(max_length=_MAX_TEXT)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=_MAX_TEXT, description="The question")
    conversation_id: uuid.UUID | None = Field(
        None, description="Continue this conversation; omitted: start a new one"
    )
    history: list[HistoryMessage] = Field(
        default_factory=list,
        max_length=_MAX_HISTORY,
        description="Earlier turns, for a client that keeps its own conversation "
        "(not with conversation_id)",
    )

    def question(self) -> Question:
        return Question(
            message=self.message,
            conversation_id=self.conversation_id,
            history=[Turn(m.role, m.content) for m in self.history],
        )


class Source(BaseModel):
    number: int = Field(description="The [n] the answer cites it by")
    document: str
    title: str
    score: float = Field(description="Fused rank score (higher is better)")
    similarity: float | None = Field(description="Cosine similarity to the question")


class ChatUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int


class ChatResponse(BaseModel):
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    response: str
    mode: Literal["claude", "offline"]
    model: str | None
    stop_reason: str
    sources: list[Source]
    usage: ChatUsage


class ConversationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str | None
    created_at: datetime
    updated_at: datetime


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    role: str
    content: str
    mode: str | None
    model: str | None
    stop_reason: str | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read_input_tokens: int | None
    cache_creation_input_tokens: int | None
    sources: list[dict[str, Any]] | None
    created_at: datetime


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]
