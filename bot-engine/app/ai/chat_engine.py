"""Answering one question: with Claude (Messages API, streamed, with read-only tools), or in
offline mode when no Anthropic key is configured.

Both produce the same events — text deltas, then one `Finished` with the usage — so the API
layer streams, stores and bills them alike. Offline answers are assembled from the
retrieved passages and the caller's own data and say so in their first line: nothing in
them pretends to be model output.

Model failures become a `ChatFailed` with a stable code; the caller turns it into an HTTP
error before the stream starts, or an SSE `error` event once it has.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anthropic
import structlog

from app.ai.context_builder import Row, TradingContext
from app.ai.knowledge_base import Passage
from app.ai.prompts import SYSTEM_PROMPT, render_question
from app.ai.tools import ToolBox
from app.core.errors import AppError

if TYPE_CHECKING:
    from app.config import Settings

log = structlog.get_logger("app.chat")

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class Turn:
    role: Role
    content: str


@dataclass(frozen=True)
class Prompt:
    question: str
    history: Sequence[Turn]
    context: TradingContext
    passages: Sequence[Passage]
    tools: ToolBox | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        """By the names the API, the stored message and the metrics use."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
        }

    def add(self, usage: anthropic.types.Usage) -> None:
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cache_read_input_tokens += usage.cache_read_input_tokens or 0
        self.cache_creation_input_tokens += usage.cache_creation_input_tokens or 0


@dataclass(frozen=True)
class Finished:
    mode: str
    model: str | None
    stop_reason: str
    usage: Usage
    tool_calls: tuple[str, ...] = ()


ChatEvent = TextDelta | Finished


class ChatFailed(AppError):
    """The answer could not be produced; `code` says why."""

    status_code = 503
    code = "assistant_unavailable"


class ChatEngine(Protocol):
    @property
    def mode(self) -> str: ...

    @property
    def model(self) -> str | None: ...

    def answer(self, prompt: Prompt) -> AsyncIterator[ChatEvent]: ...

    async def aclose(self) -> None: ...


# --------------------------------------------------------------------------- Claude
def _failure(exc: anthropic.APIError) -> ChatFailed:
    """A stable, secret-free error for an SDK exception (its message may quote the request)."""
    if isinstance(exc, anthropic.APITimeoutError):
        return ChatFailed("the model did not answer in time", code="model_timeout", status_code=504)
    if isinstance(exc, anthropic.APIConnectionError):
        return ChatFailed("the model service cannot be reached", code="model_unreachable")
    if isinstance(exc, anthropic.RateLimitError):
        retry = exc.response.headers.get("retry-after", "30")
        return ChatFailed(
            "the model service is rate limiting this server; try again shortly",
            code="model_rate_limited",
            headers={"Retry-After": retry if retry.isdigit() else "30"},
        )
    if isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
        return ChatFailed("the assistant is misconfigured on this server", code="model_auth_failed")
    if isinstance(exc, anthropic.NotFoundError):
        return ChatFailed("the configured model does not exist", code="model_not_found")
    if isinstance(exc, anthropic.BadRequestError):
        return ChatFailed(
            "the model refused the request", code="model_request_refused", status_code=502
        )
    body = getattr(exc, "body", None)
    kind = body.get("error", {}).get("type") if isinstance(body, dict) else None
    if kind == "overloaded_error" or getattr(exc, "status_code", None) == 529:
        return ChatFailed(
            "the model service is overloaded; try again shortly", code="model_overloaded"
        )
    return ChatFailed(
        "the model service failed while answering", code="model_error", status_code=502
    )


def _replayed(blocks: Sequence[Any]) -> list[dict[str, Any]]:
    """The assistant turn sent back with the tool results: its text and tool calls as the
    API takes them (the SDK's block objects carry response-only fields it would refuse)."""
    out: list[dict[str, Any]] = []
    for block in blocks:
        if block.type == "text" and block.text:
            out.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            out.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
            )
    return out


class ClaudeChat:
    """Claude through the Anthropic SDK. The system prompt and tool definitions form a
    fixed prefix marked for prompt caching; the per-question material comes after it."""

    mode = "claude"

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        *,
        model: str,
        max_tokens: int,
        max_tool_rounds: int,
    ) -> None:
        self._client = client
        self.model = model
        self._max_tokens = max_tokens
        self._max_tool_rounds = max_tool_rounds

    async def check_model(self) -> None:
        """Raise `ChatFailed` unless the API serves the configured model."""
        try:  # quick: a start-up check must not hang on an unreachable API
            await self._client.with_options(timeout=5.0, max_retries=0).models.retrieve(self.model)
        except anthropic.APIError as exc:
            raise _failure(exc) from None

    def _messages(self, prompt: Prompt) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        for turn in prompt.history:
            if messages and messages[-1]["role"] == turn.role:
                messages[-1]["content"] += "\n\n" + turn.content
            else:
                messages.append({"role": turn.role, "content": turn.content})
        if messages and messages[0]["role"] != "user":
            messages.pop(0)
        question = render_question(prompt.question, prompt.context, prompt.passages)
        if messages and messages[-1]["role"] == "user":
            messages.pop()  # an earlier question left unanswered: the new one replaces it
        messages.append({"role": "user", "content": question})
        return messages

    async def answer(self, prompt: Prompt) -> AsyncIterator[ChatEvent]:
        messages = self._messages(prompt)
        usage = Usage()
        calls: list[str] = []
        system = [{"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}]
        tools = prompt.tools
        rounds = 0
        while True:
            request: dict[str, Any] = {
                "model": self.model,
                "max_tokens": self._max_tokens,
                "system": system,
                "messages": messages,
            }
            if tools is not None:
                request["tools"] = tools.definitions
                if rounds >= self._max_tool_rounds:  # enough look-ups: answer with what is known
                    request["tool_choice"] = {"type": "none"}
            try:
                async with self._client.messages.stream(**request) as stream:
                    async for text in stream.text_stream:
                        yield TextDelta(text)
                    final = await stream.get_final_message()
            except anthropic.APIError as exc:
                failure = _failure(exc)
                log.warning("chat_model_failed", code=failure.code, error_type=type(exc).__name__)
                raise failure from None
            usage.add(final.usage)
            tool_uses = [block for block in final.content if block.type == "tool_use"]
            if final.stop_reason != "tool_use" or not tool_uses or tools is None:
                yield Finished(
                    self.mode, self.model, final.stop_reason or "end_turn", usage, tuple(calls)
                )
                return
            rounds += 1
            messages.append({"role": "assistant", "content": _replayed(final.content)})
            results = []
            for block in tool_uses:
                calls.append(block.name)
                result = await tools.run(block.name, block.input)
                results.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": block.id,
                        "content": result.content,
                        "is_error": result.is_error,
                    }
                )
            messages.append({"role": "user", "content": results})

    async def aclose(self) -> None:
        await self._client.close()


# --------------------------------------------------------------------------- offline
OFFLINE_NOTICE = (
    "**Offline mode**: no language model is configured on this server, so this answer is "
    "put together from the documentation and your account data, not written by an AI."
)
_EXCERPT_WORDS = 110
_WORDS = re.compile(r"[a-z0-9]+")
# Words of a question about something that did not happen: rejected, skipped, failed.
_WHY_CUES = ("reject", "refus", "fail", "skip", "why", "didn")
_INTENTS: dict[str, tuple[str, ...]] = {
    "signals": (*_WHY_CUES, "not execut", "signal", "alert"),
    "positions": ("position", "pnl", "profit", "loss", "open", "exposure"),
    "trades": ("trade", "order", "fill", "fee", "bought", "sold"),
    "risk": ("risk", "limit", "leverage", "setting", "stop loss", "max"),
    "equity": ("balance", "equity", "money", "funds", "wallet"),
}


_SIGNAL_FACTS = ("created_at", "signal_type", "symbol", "exchange", "status")
_POSITION_FACTS = (
    "symbol",
    "exchange",
    "side",
    "quantity",
    "entry_price",
    "current_price",
    "unrealized_pnl",
    "stop_loss",
    "take_profit",
)
_TRADE_FACTS = (
    "created_at",
    "symbol",
    "side",
    "status",
    "filled_quantity",
    "avg_fill_price",
    "realized_pnl",
)


def _excerpt(text: str) -> str:
    words = text.split()
    body = " ".join(words[:_EXCERPT_WORDS]) + (" …" if len(words) > _EXCERPT_WORDS else "")
    return "\n".join(f"> {line}" if line else ">" for line in body.splitlines())


def _mentioned_symbols(question: str, ctx: TradingContext) -> set[str]:
    known = {
        str(row["symbol"])
        for rows in (ctx.open_positions, ctx.recent_signals, ctx.recent_trades)
        for row in rows
        if row.get("symbol")
    }
    words = {w for w in _WORDS.findall(question.lower()) if len(w) >= 2}
    base = {s: re.sub(r"[^A-Z0-9]", "", s.upper()) for s in known}
    return {s for s in known if any(base[s].startswith(w.upper()) for w in words)}


def _describe(row: Row, fields: Sequence[str]) -> str:
    return ", ".join(f"{f} {row[f]}" for f in fields if row.get(f) not in (None, ""))


def account_facts(question: str, ctx: TradingContext) -> list[str]:
    """The lines of the caller's data that the question is about (by its words and the
    symbols it names); empty when it asks about nothing in the account."""
    q = question.lower()
    wanted = {name for name, cues in _INTENTS.items() if any(cue in q for cue in cues)}
    symbols = _mentioned_symbols(question, ctx)

    def relevant(rows: Sequence[Row]) -> list[Row]:
        return [r for r in rows if not symbols or r.get("symbol") in symbols]

    facts: list[str] = []
    if "signals" in wanted or symbols:
        rows = relevant(ctx.recent_signals)
        if any(cue in q for cue in _WHY_CUES):
            rows = [r for r in rows if r.get("status") not in ("executed", "queued", "executing")]
        for r in rows[:5]:
            facts.append(
                "Signal "
                + _describe(r, _SIGNAL_FACTS)
                + (f": {r['status_reason']}" if r.get("status_reason") else "")
            )
    if "positions" in wanted or symbols:
        for r in relevant(ctx.open_positions)[:5]:
            facts.append("Open position " + _describe(r, _POSITION_FACTS))
        if "positions" in wanted and not ctx.open_positions:
            facts.append("You have no open positions.")
    if "trades" in wanted:
        for r in relevant(ctx.recent_trades)[:5]:
            facts.append("Order " + _describe(r, _TRADE_FACTS))
    if "risk" in wanted:
        facts.append("Your risk settings: " + _describe(ctx.risk, tuple(ctx.risk)))
    if "equity" in wanted:
        if ctx.paper_wallet_balance is None:
            facts.append("Your paper account has not been opened yet.")
        else:
            facts.append(
                f"Paper account: wallet {ctx.paper_wallet_balance} USDT, "
                f"equity {ctx.paper_equity} USDT"
            )
    return facts


def offline_answer(prompt: Prompt) -> list[str]:
    """The offline answer, as the pieces it is streamed in."""
    pieces = [OFFLINE_NOTICE + "\n\n"]
    facts = account_facts(prompt.question, prompt.context)
    if facts:
        pieces.append("**From your account**\n\n")
        pieces.extend(f"- {fact}\n" for fact in facts)
        pieces.append("\n")
    if prompt.passages:
        pieces.append("**From the documentation**\n\n")
        for n, passage in enumerate(prompt.passages, start=1):
            pieces.append(f"[{n}] *{passage.title}* ({passage.document})\n\n")
            pieces.append(_excerpt(passage.content) + "\n\n")
    else:
        pieces.append(
            "No documentation passage matched the question. Try naming the feature or the "
            "error message you see.\n"
        )
    return pieces


class OfflineChat:
    mode = "offline"
    model: str | None = None

    async def answer(self, prompt: Prompt) -> AsyncIterator[ChatEvent]:
        for piece in offline_answer(prompt):
            yield TextDelta(piece)
        yield Finished(self.mode, None, "end_turn", Usage())

    async def aclose(self) -> None:
        return None


async def build_chat_engine(settings: Settings) -> tuple[ChatEngine, ChatFailed | None]:
    """Claude when a key is configured, else offline mode; and, for Claude, the reason the
    assistant cannot work if the start-up check proved it (an unknown model, a rejected key).
    A check that merely could not reach the API is not a verdict: requests will retry."""
    if settings.ANTHROPIC_API_KEY is None:
        return OfflineChat(), None
    client = anthropic.AsyncAnthropic(
        api_key=settings.ANTHROPIC_API_KEY.get_secret_value(),
        base_url=settings.ANTHROPIC_BASE_URL,
        timeout=settings.AI_TIMEOUT_S,
        max_retries=2,
    )
    engine = ClaudeChat(
        client,
        model=settings.AI_MODEL,
        max_tokens=settings.AI_MAX_TOKENS,
        max_tool_rounds=settings.AI_MAX_TOOL_ROUNDS,
    )
    try:
        await engine.check_model()
    except ChatFailed as exc:
        if exc.code in ("model_not_found", "model_auth_failed"):
            log.error("chat_model_unusable", code=exc.code, model=settings.AI_MODEL)
            return engine, exc
        log.warning("chat_model_check_failed", code=exc.code, model=settings.AI_MODEL)
    return engine, None
