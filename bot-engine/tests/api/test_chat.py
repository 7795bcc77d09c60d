"""The assistant's API: streamed and whole answers (offline mode, and Claude through a local
server speaking the Messages API), tier rules and the monthly allowance, input limits,
conversations, and that one user's data never reaches another user's answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from app.ai.prompts import SYSTEM_PROMPT
from app.ai.quota import month_of
from app.models import ChatMessage, RealPosition, TradingSignal, User
from tests.conftest import (
    Factory,
    SecretsSeen,
    http_client,
    make_settings,
    running_app,
)
from tests.support.anthropic_server import AnthropicServer, ToolCall, Turn
from tests.support.pipeline import eventually
from tests.support.ws import served

if TYPE_CHECKING:
    from tests.conftest import TestServers

pytestmark = pytest.mark.usefixtures("shipped_knowledge")

STOP_LOSS_QUESTION = "how do I set up a TradingView alert with a stop loss?"


# --------------------------------------------------------------------------- helpers
def parse_sse(body: str) -> list[tuple[str, Any]]:
    """(event name, data) per event; unnamed events are "message", `[DONE]` stays text."""
    events = []
    for block in body.strip().split("\n\n"):
        name, data = "message", ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data += line[len("data: ") :]
        events.append((name, data if data == "[DONE]" else orjson.loads(data)))
    return events


def content_of(events: list[tuple[str, Any]]) -> str:
    return "".join(d["content"] for name, d in events if name == "message" and d != "[DONE]")


async def ask(
    client: httpx.AsyncClient, headers: dict[str, str], message: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/api/chat/stream", headers=headers, json={"message": message, **extra}
    )


async def add_signal(
    app: FastAPI, user: User, symbol: str, status: str, reason: str | None = None
) -> None:
    async with app.state.sessionmaker() as s:
        s.add(
            TradingSignal(
                user_id=user.id,
                signal_type="long_entry",
                symbol=symbol,
                exchange="paper",
                status=status,
                status_reason=reason,
                dedupe_key=uuid.uuid4().hex,
                price=Decimal("2500.5"),
            )
        )
        await s.commit()


async def add_position(app: FastAPI, user: User, symbol: str, pnl: str) -> None:
    async with app.state.sessionmaker() as s:
        s.add(
            RealPosition(
                user_id=user.id,
                exchange="paper",
                symbol=symbol,
                side="long",
                entry_price=Decimal("100"),
                quantity=Decimal("1.5"),
                unrealized_pnl=Decimal(pnl),
            )
        )
        await s.commit()


async def used(app: FastAPI, user: User) -> int:
    async with app.state.sessionmaker() as s:
        value = await s.scalar(select(User.chat_messages_used).where(User.id == user.id))
        assert isinstance(value, int)
        return value


async def assistant_messages(app: FastAPI, user: User) -> list[ChatMessage]:
    from app.models import ChatConversation

    async with app.state.sessionmaker() as s:
        rows = await s.scalars(
            select(ChatMessage)
            .join(ChatConversation, ChatConversation.id == ChatMessage.conversation_id)
            .where(ChatConversation.user_id == user.id, ChatMessage.role == "assistant")
        )
        return list(rows)


# --------------------------------------------------------------------------- offline mode
async def test_offline_answer_streams_cites_the_right_document_and_is_stored(
    client: httpx.AsyncClient, factory: Factory, app: FastAPI
) -> None:
    user = await factory.user("pro")
    headers = factory.auth(user)
    response = await ask(client, headers, STOP_LOSS_QUESTION)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)

    name, start = events[0]
    assert name == "start" and start["mode"] == "offline"
    documents = [s["document"] for s in start["sources"]]
    assert "tradingview-alert-setup.md" in documents[:2]
    assert [s["number"] for s in start["sources"]] == list(range(1, len(documents) + 1))
    assert events[-1] == ("message", "[DONE]")
    done = events[-2]
    assert done[0] == "done"
    text = content_of(events)
    assert text.startswith("**Offline mode**")
    assert "[1]" in text and "(tradingview-alert-setup.md)" in text
    assert sum(1 for n, _ in events if n == "message") > 3  # streamed in pieces

    conversation_id = start["conversation_id"]
    assert response.headers["x-conversation-id"] == conversation_id
    stored = (
        await client.get(f"/api/chat/conversations/{conversation_id}", headers=headers)
    ).json()
    assert stored["title"] == STOP_LOSS_QUESTION
    user_message, answer = stored["messages"]
    assert (user_message["role"], user_message["content"]) == ("user", STOP_LOSS_QUESTION)
    assert answer["id"] == done[1]["message_id"]
    assert (answer["role"], answer["mode"], answer["model"]) == ("assistant", "offline", None)
    assert answer["content"] == text
    assert (answer["input_tokens"], answer["output_tokens"]) == (0, 0)
    assert [s["document"] for s in answer["sources"]] == documents
    assert await used(app, user) == 1


async def test_offline_answer_quotes_the_callers_own_rejected_signal(
    client: httpx.AsyncClient, factory: Factory, app: FastAPI
) -> None:
    user = await factory.user("pro")
    reason = "stop_loss is required by your risk settings (require_stop_loss)"
    await add_signal(app, user, "ETHUSDT", "rejected", reason)
    await add_signal(app, user, "ETHUSDT", "executed")
    await add_signal(app, user, "BTCUSDT", "rejected", "BTC-ONLY too many open positions")

    response = await ask(client, factory.auth(user), "why was my ETH trade rejected yesterday?")
    events = parse_sse(response.text)
    text = content_of(events)
    assert "**From your account**" in text
    assert f"status rejected: {reason}" in text
    assert "BTC-ONLY" not in text  # another symbol: not what was asked
    assert events[0][1]["sources"][0]["document"] == "troubleshooting-rejections.md"


async def test_the_whole_answer_endpoint_returns_and_stores_the_same(
    client: httpx.AsyncClient, factory: Factory, app: FastAPI
) -> None:
    user = await factory.user("enterprise")
    response = await client.post(
        "/api/chat/", headers=factory.auth(user), json={"message": "what does paper trading do?"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["mode"] == "offline" and body["response"].startswith("**Offline mode**")
    assert body["sources"][0]["document"] == "paper-trading.md"
    assert body["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    (stored,) = await assistant_messages(app, user)
    assert (stored.id, stored.content) == (uuid.UUID(body["message_id"]), body["response"])
    again = await client.post(
        "/api/chat",
        headers=factory.auth(user),
        json={"message": "and how do I reset it?", "conversation_id": body["conversation_id"]},
    )
    assert again.json()["conversation_id"] == body["conversation_id"]


# --------------------------------------------------------------------------- tier, allowance, input
async def test_the_free_tier_is_refused(client: httpx.AsyncClient, factory: Factory) -> None:
    user = await factory.user("free")
    for path in ("/api/chat/stream", "/api/chat/"):
        response = await client.post(path, headers=factory.auth(user), json={"message": "hi"})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "chat_requires_paid_tier"


async def test_over_the_monthly_allowance_is_429_saying_when_it_resets(
    client: httpx.AsyncClient, factory: Factory, app: FastAPI
) -> None:
    user = await factory.user("pro")
    async with app.state.sessionmaker() as s:
        await s.execute(update(User).where(User.id == user.id).values(chat_messages_limit=2))
        await s.commit()
    headers = factory.auth(user)
    for _ in range(2):
        assert (await ask(client, headers, "what is a webhook token?")).status_code == 200
    refused = await ask(client, headers, "and one more?")
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "chat_limit_reached"
    this_month = month_of(datetime.now(UTC))
    first_of_next = (
        this_month.replace(year=this_month.year + 1, month=1)
        if this_month.month == 12
        else this_month.replace(month=this_month.month + 1)
    )
    assert error["details"] == {"limit": 2, "resets_at": f"{first_of_next.isoformat()}T00:00:00Z"}
    assert first_of_next.isoformat() in error["message"]
    assert 0 < int(refused.headers["retry-after"]) <= 31 * 86400
    assert await used(app, user) == 2

    # Last month's count does not hold this month's answers back.
    async with app.state.sessionmaker() as s:
        await s.execute(
            update(User)
            .where(User.id == user.id)
            .values(chat_usage_month=this_month.replace(year=this_month.year - 1))
        )
        await s.commit()
    assert (await ask(client, headers, "a new month")).status_code == 200
    assert await used(app, user) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": "x" * 4001}, "message"),
        ({"message": "   "}, "message"),
        ({"message": ""}, "message"),
        ({"message": "hi", "history": [{"role": "user", "content": "a"}] * 21}, "history"),
        ({"message": "hi", "history": [{"role": "system", "content": "a"}]}, "history.0.role"),
        (
            {
                "message": "hi",
                "conversation_id": str(uuid.uuid4()),
                "history": [{"role": "user", "content": "a"}],
            },
            "history",
        ),
        ({"message": "hi", "model": "something-else"}, "model"),
    ],
)
async def test_input_limits_are_422_naming_the_field(
    client: httpx.AsyncClient, factory: Factory, app: FastAPI, body: dict[str, Any], field: str
) -> None:
    user = await factory.user("pro")
    response = await client.post("/api/chat/stream", headers=factory.auth(user), json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert await used(app, user) == 0


# --------------------------------------------------------------------------- conversations
async def test_conversations_are_listed_read_and_deleted_by_their_owner_only(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    owner, other = await factory.user("pro"), await factory.user("pro")
    first = parse_sse((await ask(client, factory.auth(owner), "what is leverage?")).text)
    second = parse_sse((await ask(client, factory.auth(owner), "what are fees?")).text)
    ids = [first[0][1]["conversation_id"], second[0][1]["conversation_id"]]

    listed = (await client.get("/api/chat/conversations", headers=factory.auth(owner))).json()
    assert [c["id"] for c in listed["items"]] == ids[::-1]  # most recent first
    page = await client.get(
        "/api/chat/conversations", params={"limit": 1}, headers=factory.auth(owner)
    )
    assert page.json()["next_cursor"] is not None

    for method in ("GET", "DELETE"):
        foreign = await client.request(
            method, f"/api/chat/conversations/{ids[0]}", headers=factory.auth(other)
        )
        assert foreign.status_code == 404
    continued = await ask(client, factory.auth(other), "hello", conversation_id=ids[0])
    assert continued.status_code == 404
    assert continued.json()["error"]["field"] == "conversation_id"
    assert (await client.get("/api/chat/conversations", headers=factory.auth(other))).json()[
        "items"
    ] == []

    deleted = await client.delete(f"/api/chat/conversations/{ids[0]}", headers=factory.auth(owner))
    assert deleted.status_code == 204
    gone = await client.get(f"/api/chat/conversations/{ids[0]}", headers=factory.auth(owner))
    assert gone.status_code == 404


# --------------------------------------------------------------------------- Claude
@pytest.fixture(scope="module")
def anthropic_server() -> Iterator[AnthropicServer]:
    with AnthropicServer() as server:
        yield server


@pytest.fixture(scope="module")
async def claude_app(
    database_url: str,
    servers: TestServers,
    tmp_path_factory: pytest.TempPathFactory,
    anthropic_server: AnthropicServer,
    secrets_seen: SecretsSeen,
) -> AsyncIterator[FastAPI]:
    secrets_seen.add(anthropic_server.api_key)
    settings = make_settings(
        database_url,
        servers.redis_url,
        tmp_path_factory.mktemp("claude"),
        ANTHROPIC_API_KEY=anthropic_server.api_key,
        ANTHROPIC_BASE_URL=anthropic_server.url,
    )
    async with running_app(settings) as app:
        yield app


@pytest.fixture
async def claude(
    claude_app: FastAPI, clean_state: None, anthropic_server: AnthropicServer
) -> AsyncIterator[httpx.AsyncClient]:
    anthropic_server.clear()
    async with http_client(claude_app) as c:
        yield c


@pytest.fixture
def claude_factory(claude_app: FastAPI, secrets_seen: SecretsSeen) -> Factory:
    return Factory(app=claude_app, secrets=secrets_seen)


async def test_a_claude_answer_is_relayed_as_it_streams_and_stored_with_its_usage(
    claude: httpx.AsyncClient,
    claude_factory: Factory,
    claude_app: FastAPI,
    anthropic_server: AnthropicServer,
) -> None:
    user = await claude_factory.user("pro")
    chunks = ("Create the alert ", "with a `stop_loss` ", "field [1].")
    anthropic_server.script(Turn(text=chunks, output_tokens=17), Turn(text=("Again.",)))
    events = parse_sse((await ask(claude, claude_factory.auth(user), STOP_LOSS_QUESTION)).text)

    assert events[0][1]["mode"] == "claude"
    assert [d["content"] for n, d in events if n == "message" and d != "[DONE]"] == list(chunks)
    done = events[-2][1]
    usage = done["usage"]
    assert usage["output_tokens"] == 17
    assert usage["input_tokens"] > 0

    (request,) = anthropic_server.message_requests
    body = request.body
    assert body["model"] == "claude-sonnet-5-5" and body["stream"] is True
    assert body["system"] == [
        {"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}
    ]
    assert {t["name"] for t in body["tools"]} == {
        "get_positions",
        "get_signals",
        "get_trades",
        "get_risk_settings",
    }
    question = request.last_user_text
    assert question.endswith(f"<question>\n{STOP_LOSS_QUESTION}\n</question>")
    assert 'document="tradingview-alert-setup.md"' in question
    assert "<account>" in question and "<tier>pro" in question
    # The fixed prefix (tools + system) is long enough to be cached: written once, then read.
    assert usage["cache_creation_input_tokens"] > 1024

    (stored,) = await assistant_messages(claude_app, user)
    assert stored.content == "".join(chunks)
    assert (stored.mode, stored.model, stored.stop_reason) == (
        "claude",
        "claude-sonnet-5-5",
        "end_turn",
    )
    assert (stored.input_tokens, stored.output_tokens) == (usage["input_tokens"], 17)
    assert stored.cache_creation_input_tokens == usage["cache_creation_input_tokens"]

    conversation_id = events[0][1]["conversation_id"]
    follow_up = await ask(
        claude, claude_factory.auth(user), "and a take profit?", conversation_id=conversation_id
    )
    second = parse_sse(follow_up.text)
    again = second[-2][1]["usage"]
    assert again["cache_read_input_tokens"] == usage["cache_creation_input_tokens"]
    assert again["cache_creation_input_tokens"] == 0
    # The conversation so far went back to the model, the new question last.
    history = anthropic_server.message_requests[-1].body["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert history[0]["content"] == STOP_LOSS_QUESTION
    assert history[1]["content"] == "".join(chunks)


async def test_a_tool_call_reads_only_the_callers_data(
    claude: httpx.AsyncClient,
    claude_factory: Factory,
    claude_app: FastAPI,
    anthropic_server: AnthropicServer,
) -> None:
    alice, bob = await claude_factory.user("pro"), await claude_factory.user("pro")
    await add_signal(claude_app, alice, "ETHUSDT", "rejected", "ALICE-REASON leverage above 10")
    await add_signal(claude_app, bob, "ETHUSDT", "rejected", "BOB-REASON daily loss limit")
    await add_position(claude_app, bob, "DOGEUSDT", "-12.5")
    anthropic_server.script(
        Turn(text=("Let me look. ",), tool_calls=[ToolCall("get_signals", {"symbol": "eth"})]),
        Turn(tool_calls=[ToolCall("get_positions", {"status": "open"})]),
        Turn(text=("Your ETH alert was refused: leverage above 10.",)),
    )
    events = parse_sse(
        (await ask(claude, claude_factory.auth(alice), "why was my ETH trade rejected?")).text
    )
    assert content_of(events) == "Let me look. Your ETH alert was refused: leverage above 10."

    requests = anthropic_server.message_requests
    assert len(requests) == 3
    (signals,) = requests[1].tool_results
    items = orjson.loads(signals["content"])["items"]
    assert [i["status_reason"] for i in items] == ["ALICE-REASON leverage above 10"]
    (positions,) = requests[2].tool_results
    assert orjson.loads(positions["content"]) == {"items": []}
    everything = orjson.dumps([r.body for r in requests]).decode()
    assert "ALICE-REASON" in everything
    assert "BOB-REASON" not in everything and "DOGEUSDT" not in everything
    assert bob.id not in everything and bob.email not in everything
    (stored,) = await assistant_messages(claude_app, alice)
    assert stored.input_tokens is not None and stored.input_tokens > 0


async def test_tool_look_ups_stop_after_the_configured_rounds(
    claude: httpx.AsyncClient, claude_factory: Factory, anthropic_server: AnthropicServer
) -> None:
    user = await claude_factory.user("pro")
    anthropic_server.script(
        *[Turn(tool_calls=[ToolCall("get_risk_settings", {})]) for _ in range(3)],
        Turn(text=("Here is what I found.",)),
    )
    events = parse_sse((await ask(claude, claude_factory.auth(user), "my risk?")).text)
    assert content_of(events) == "Here is what I found."
    last = anthropic_server.message_requests[-1].body
    assert last["tool_choice"] == {"type": "none"}
    assert len(anthropic_server.message_requests) == 4


async def test_a_failure_mid_stream_is_an_error_event_and_is_not_counted(
    claude: httpx.AsyncClient,
    claude_factory: Factory,
    claude_app: FastAPI,
    anthropic_server: AnthropicServer,
) -> None:
    user = await claude_factory.user("pro")
    anthropic_server.script(Turn(text=("Part one, ", "part two"), fail_after=1))
    events = parse_sse((await ask(claude, claude_factory.auth(user), "explain sizing")).text)
    assert content_of(events) == "Part one, "
    assert events[-1] == (
        "error",
        {
            "code": "model_overloaded",
            "message": "the model service is overloaded; try again shortly",
        },
    )
    assert ("message", "[DONE]") not in events
    assert await assistant_messages(claude_app, user) == []
    assert await used(claude_app, user) == 0


async def test_a_rate_limited_model_is_503_with_retry_after_on_the_whole_answer(
    claude: httpx.AsyncClient,
    claude_factory: Factory,
    claude_app: FastAPI,
    anthropic_server: AnthropicServer,
) -> None:
    user = await claude_factory.user("pro")
    # The SDK retries a 429 twice before giving up.
    anthropic_server.script(*[Turn(status=429, retry_after=0) for _ in range(3)])
    response = await claude.post(
        "/api/chat/", headers=claude_factory.auth(user), json={"message": "hello"}
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_rate_limited"
    assert response.headers["retry-after"].isdigit()
    assert await used(claude_app, user) == 0


async def test_a_model_the_api_does_not_serve_disables_chat_at_startup(
    database_url: str,
    servers: TestServers,
    tmp_path: Path,
    anthropic_server: AnthropicServer,
    secrets_seen: SecretsSeen,
    clean_state: None,
) -> None:
    secrets_seen.add(anthropic_server.api_key)
    settings = make_settings(
        database_url,
        servers.redis_url,
        tmp_path,
        ANTHROPIC_API_KEY=anthropic_server.api_key,
        ANTHROPIC_BASE_URL=anthropic_server.url,
        AI_MODEL="claude-not-a-model",
    )
    async with running_app(settings) as app, http_client(app) as client:
        factory = Factory(app=app, secrets=secrets_seen)
        user = await factory.user("pro")
        response = await ask(client, factory.auth(user), "hello")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "model_not_found"
        assert await used(app, user) == 0


async def test_the_context_sent_to_the_model_is_the_callers_alone(
    claude: httpx.AsyncClient,
    claude_factory: Factory,
    claude_app: FastAPI,
    anthropic_server: AnthropicServer,
) -> None:
    alice, bob = await claude_factory.user("pro"), await claude_factory.user("enterprise")
    await add_position(claude_app, alice, "SOLUSDT", "3.25")
    await add_signal(claude_app, alice, "SOLUSDT", "failed", "ALICE-ONLY exchange timeout")
    await add_position(claude_app, bob, "DOGEUSDT", "-99.75")
    await add_signal(claude_app, bob, "DOGEUSDT", "rejected", "BOB-ONLY exposure above 80%")
    anthropic_server.script(Turn(text=("ok",)))
    await ask(claude, claude_factory.auth(alice), "how are my positions doing?")
    (request,) = anthropic_server.message_requests
    sent = orjson.dumps(request.body).decode()
    assert 'symbol="SOLUSDT"' in request.last_user_text
    assert 'unrealized_pnl="3.25"' in request.last_user_text
    assert "ALICE-ONLY exchange timeout" in request.last_user_text
    for foreign in ("DOGEUSDT", "BOB-ONLY", "-99.75", bob.id, bob.email, "enterprise"):
        assert foreign not in sent


async def test_a_client_that_leaves_mid_answer_is_not_counted(
    claude_app: FastAPI,
    claude_factory: Factory,
    anthropic_server: AnthropicServer,
    clean_state: None,
) -> None:
    anthropic_server.clear()
    user = await claude_factory.user("pro")
    anthropic_server.script(Turn(text=("never ", "seen")))
    async with served(claude_app) as server, httpx.AsyncClient() as client:
        with anthropic_server.hold():
            async with client.stream(
                "POST",
                f"http://127.0.0.1:{server.port}/api/chat/stream",
                headers=claude_factory.auth(user),
                json={"message": "a long question"},
            ) as response:
                first = await anext(response.aiter_lines())
                assert first == "event: start"
                assert await used(claude_app, user) == 1  # reserved while it runs
            # The client hung up while the model was still holding its answer.
            await eventually(
                lambda: used(claude_app, user), lambda n: n == 0, what="allowance given back"
            )
    assert await assistant_messages(claude_app, user) == []


async def test_a_knowledge_base_of_another_embedding_model_is_refused_not_searched(
    database_url: str,
    servers: TestServers,
    tmp_path: Path,
    secrets_seen: SecretsSeen,
    clean_state: None,
) -> None:
    from tests.support.openai_server import OpenAIServer

    with OpenAIServer() as openai_server:
        secrets_seen.add(openai_server.api_key)
        settings = make_settings(
            database_url,
            servers.redis_url,
            tmp_path,
            OPENAI_API_KEY=openai_server.api_key,
            OPENAI_BASE_URL=openai_server.url,
        )
        async with running_app(settings) as app, http_client(app) as client:
            factory = Factory(app=app, secrets=secrets_seen)
            user = await factory.user("pro")
            response = await ask(client, factory.auth(user), "how do I set a stop loss?")
            assert response.status_code == 503
            error = response.json()["error"]
            assert error["code"] == "knowledge_base_model_mismatch"
            assert "jadetrade kb index --reindex" in error["message"]
            assert await used(app, user) == 0
        assert openai_server.requests == []  # the question never left for the provider
