"""The Anthropic and OpenAI stand-ins driven through the real SDKs: if the SDKs parse what
the servers send (streams, tool calls, errors, caching usage, base64 vectors) as they parse
the real services, tests of the engine built on them exercise the real client code."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import MessageParam, TextBlockParam, ToolParam

from tests.conftest import SecretsSeen
from tests.support.anthropic_server import AnthropicServer, ToolCall, Turn
from tests.support.openai_server import OpenAIServer

MODEL = "claude-sonnet-5-5"
EMBEDDING_MODEL = "text-embedding-3-small"
POSITIONS_TOOL: ToolParam = {
    "name": "get_positions",
    "description": "The caller's open positions.",
    "input_schema": {
        "type": "object",
        "properties": {"symbol": {"type": "string"}, "limit": {"type": "integer"}},
    },
}


@pytest.fixture
def claude_server(secrets_seen: SecretsSeen) -> Iterator[AnthropicServer]:
    with AnthropicServer() as server:
        secrets_seen.add(server.api_key)
        yield server


@pytest.fixture
async def claude(claude_server: AnthropicServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        api_key=claude_server.api_key, base_url=claude_server.url, max_retries=0
    )
    yield client
    await client.close()


@pytest.fixture
def openai_server(secrets_seen: SecretsSeen) -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        secrets_seen.add(server.api_key)
        yield server


@pytest.fixture
async def oai(openai_server: OpenAIServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        api_key=openai_server.api_key, base_url=openai_server.url, max_retries=0
    )
    yield client
    await client.close()


def ask(text: str) -> list[MessageParam]:
    return [{"role": "user", "content": text}]


# --------------------------------------------------------------------------- anthropic
async def test_streamed_text_arrives_in_the_scripted_chunks(
    claude_server: AnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    claude_server.script(Turn(text=("Your BTC ", "position is ", "long."), output_tokens=7))
    async with claude.messages.stream(
        model=MODEL, max_tokens=256, system="Be brief.", messages=ask("What do I hold?")
    ) as stream:
        chunks = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert chunks == ["Your BTC ", "position is ", "long."]
    assert final.content[0].type == "text" and final.content[0].text == "Your BTC position is long."
    assert final.stop_reason == "end_turn"
    assert final.model == MODEL and final.id.startswith("msg_")
    assert final.usage.output_tokens == 7
    assert final.usage.input_tokens > 0
    assert final.usage.cache_creation_input_tokens == 0
    assert final.usage.cache_read_input_tokens == 0
    recorded = claude_server.message_requests[-1]
    assert recorded.body["stream"] is True
    assert recorded.system_text == "Be brief."
    assert recorded.last_user_text == "What do I hold?"
    assert "x-api-key" not in recorded.headers and "anthropic-version" in recorded.headers


async def test_stream_sends_the_real_event_sequence(
    claude_server: AnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    claude_server.script(Turn(text=("a", "b"), tool_calls=(ToolCall("get_positions", {}),)))
    async with claude.messages.stream(
        model=MODEL, max_tokens=64, tools=[POSITIONS_TOOL], messages=ask("hi")
    ) as stream:
        kinds = [event.type async for event in stream]
    # The SDK adds its own `text` and `input_json` events after each delta.
    raw = [k for k in kinds if k not in ("text", "input_json")]
    assert raw == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        *["content_block_delta"] * 2,  # "{}" in pieces
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


async def test_unscripted_request_gets_a_well_formed_answer(
    claude: anthropic.AsyncAnthropic,
) -> None:
    message = await claude.messages.create(model=MODEL, max_tokens=32, messages=ask("hello"))
    assert message.content[0].type == "text"
    assert message.content[0].text == "(stand-in model) 1 messages received."
    assert message.stop_reason == "end_turn" and message.usage.output_tokens >= 1


async def test_tool_use_then_tool_result(
    claude_server: AnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    call = ToolCall("get_positions", {"symbol": "BTC/USDT", "limit": 5, "note": "ü ✓"})
    claude_server.script(
        Turn(text=("Let me look.",), tool_calls=(call,)),
        Turn(text=("You hold ", "0.5 BTC."), stop_reason="end_turn"),
    )
    messages: list[Any] = [*ask("What do I hold?")]  # as the engine builds them
    async with claude.messages.stream(
        model=MODEL, max_tokens=256, tools=[POSITIONS_TOOL], messages=messages
    ) as stream:
        first = await stream.get_final_message()
    assert first.stop_reason == "tool_use"
    tool_use = first.content[1]
    assert tool_use.type == "tool_use"
    assert tool_use.id == call.id and tool_use.id.startswith("toolu_")
    assert tool_use.name == "get_positions"
    assert tool_use.input == {"symbol": "BTC/USDT", "limit": 5, "note": "ü ✓"}

    messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
    messages.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": '{"qty": 0.5}'}],
        }
    )
    async with claude.messages.stream(
        model=MODEL, max_tokens=256, tools=[POSITIONS_TOOL], messages=messages
    ) as stream:
        second = await stream.get_final_message()
    assert second.content[0].type == "text" and second.content[0].text == "You hold 0.5 BTC."
    assert claude_server.message_requests[-1].tool_results == [
        {"type": "tool_result", "tool_use_id": call.id, "content": '{"qty": 0.5}'}
    ]
    assert claude_server.pending_turns == 0


async def test_tool_result_for_an_unknown_tool_use_is_refused(
    claude: anthropic.AsyncAnthropic,
) -> None:
    messages: list[MessageParam] = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_a", "name": "get_positions", "input": {}}
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_b"}]},
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.create(
            model=MODEL, max_tokens=32, tools=[POSITIONS_TOOL], messages=messages
        )
    assert "toolu_b" in caught.value.message
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "first message"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            "alternate",
        ),
        ({"system": [{"type": "image"}]}, "system.0"),
        ({"tools": [{"name": "x"}]}, "tools.0.input_schema"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "x": 1}]}]},
            "messages.0.content.0.text.x: Extra inputs",
        ),
    ],
)
async def test_invalid_requests_are_refused_naming_the_field(
    claude: anthropic.AsyncAnthropic, change: dict[str, Any], field: str
) -> None:
    request: dict[str, Any] = {"model": MODEL, "max_tokens": 32, "messages": ask("hi")} | change
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.create(**request)
    assert field in caught.value.message


async def test_wrong_key_is_an_authentication_error(claude_server: AnthropicServer) -> None:
    client = anthropic.AsyncAnthropic(
        api_key="sk-ant-wrong", base_url=claude_server.url, max_retries=0
    )
    try:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await client.messages.create(model=MODEL, max_tokens=32, messages=ask("hi"))
    finally:
        await client.close()
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_")
    assert claude_server.requests[-1].headers.get("x-api-key") is None


async def test_models(claude: anthropic.AsyncAnthropic) -> None:
    model = await claude.models.retrieve(MODEL)
    assert model.id == MODEL and model.display_name == "Claude Sonnet 5.5"
    listed = [m.id async for m in claude.models.list()]
    assert listed == ["claude-sonnet-5-5", "claude-haiku-5-5"]
    with pytest.raises(anthropic.NotFoundError) as caught:
        await claude.models.retrieve("claude-nonexistent-1")
    assert "claude-nonexistent-1" in caught.value.message
    with pytest.raises(anthropic.NotFoundError):
        await claude.messages.create(model="claude-nonexistent-1", max_tokens=8, messages=ask("x"))


async def test_scripted_http_errors(
    claude_server: AnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    claude_server.script(Turn(status=429, retry_after=3), Turn(status=529), Turn(status=500))
    with pytest.raises(anthropic.RateLimitError) as limited:
        await claude.messages.create(model=MODEL, max_tokens=8, messages=ask("x"))
    assert limited.value.response.headers["retry-after"] == "3"
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        async with claude.messages.stream(model=MODEL, max_tokens=8, messages=ask("x")) as s:
            await s.get_final_message()
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError) as failed:
        await claude.messages.create(model=MODEL, max_tokens=8, messages=ask("x"))
    assert failed.value.status_code == 500


async def test_mid_stream_failure_raises_while_iterating(
    claude_server: AnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    claude_server.script(Turn(text=("one ", "two ", "three"), fail_after=2))
    received: list[str] = []

    async def read() -> None:
        async with claude.messages.stream(model=MODEL, max_tokens=64, messages=ask("x")) as s:
            async for text in s.text_stream:
                received.append(text)

    with pytest.raises(anthropic.APIStatusError) as caught:
        await read()
    assert received == ["one ", "two "]
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    # The chunked stream ended cleanly: the connection serves the next request.
    message = await claude.messages.create(model=MODEL, max_tokens=8, messages=ask("again"))
    assert message.stop_reason == "end_turn"


async def test_client_leaving_a_held_stream_is_noticed(
    claude_server: AnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    with claude_server.hold():
        async with claude.messages.stream(model=MODEL, max_tokens=64, messages=ask("x")) as s:
            first = await s.__anext__()
            assert first.type == "message_start"
            assert await asyncio.to_thread(claude_server.wait_held, 1)
        assert await asyncio.to_thread(claude_server.wait_disconnects, 1)
    assert claude_server.held == 0
    message = await claude.messages.create(model=MODEL, max_tokens=8, messages=ask("again"))
    assert message.content


async def test_short_system_prompt_is_not_cached(
    claude_server: AnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    system: list[TextBlockParam] = [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
    ]
    for _ in range(2):
        message = await claude.messages.create(
            model=MODEL, max_tokens=8, system=system, messages=ask("x")
        )
        assert message.usage.cache_creation_input_tokens == 0
        assert message.usage.cache_read_input_tokens == 0


async def test_long_system_prompt_is_written_then_read_from_the_cache(
    claude_server: AnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    system: list[TextBlockParam] = [
        {
            "type": "text",
            "text": "You explain trading. " * 300,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    usages = []
    for question in ("What is a stop loss?", "What is leverage? Explain."):
        async with claude.messages.stream(
            model=MODEL,
            max_tokens=64,
            system=system,
            tools=[POSITIONS_TOOL],
            messages=ask(question),
        ) as stream:
            usages.append((await stream.get_final_message()).usage)
    first, second = usages
    assert first.cache_creation_input_tokens is not None
    assert first.cache_creation_input_tokens >= claude_server.min_cacheable_tokens
    assert first.cache_read_input_tokens == 0
    assert second.cache_creation_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    # Only the questions are uncached; the second is longer.
    assert 0 < first.input_tokens < second.input_tokens < 50
    # Another model has a cache of its own.
    other = await claude.messages.create(
        model="claude-haiku-5-5", max_tokens=8, system=system, messages=ask("x")
    )
    assert other.usage.cache_read_input_tokens == 0 and other.usage.cache_creation_input_tokens


async def test_non_streaming_create(
    claude_server: AnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    claude_server.script(
        Turn(text=("Done", "."), tool_calls=(ToolCall("get_positions", {"limit": 1}),))
    )
    message = await claude.messages.create(
        model=MODEL, max_tokens=64, tools=[POSITIONS_TOOL], messages=ask("x")
    )
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[0].type == "text" and message.content[0].text == "Done."
    assert message.content[1].type == "tool_use" and message.content[1].input == {"limit": 1}
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens == math.ceil((5 + len('{"limit":1}')) / 4)


async def test_max_tokens_stop(
    claude_server: AnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    claude_server.script(Turn(text=("cut",), stop_reason="max_tokens"))
    message = await claude.messages.create(model=MODEL, max_tokens=5, messages=ask("x"))
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 5


# --------------------------------------------------------------------------- openai
def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_base64_and_float_give_the_same_vectors(
    openai_server: OpenAIServer, oai: openai.AsyncOpenAI
) -> None:
    texts = ["Stop loss closes a position.", "!!!", "Stop loss closes a position."]
    by_default = await oai.embeddings.create(model=EMBEDDING_MODEL, input=texts)
    as_float = await oai.embeddings.create(
        model=EMBEDDING_MODEL, input=texts, encoding_format="float"
    )
    assert openai_server.requests[0].body["encoding_format"] == "base64"
    assert [d.embedding for d in by_default.data] == [d.embedding for d in as_float.data]
    assert [d.index for d in by_default.data] == [0, 1, 2]
    vectors = [d.embedding for d in as_float.data]
    assert all(len(v) == 1536 for v in vectors)
    assert vectors[0] == vectors[2] == openai_server.vector(texts[0])
    assert all(math.isclose(cosine(v, v), 1.0, rel_tol=1e-5) for v in vectors)
    assert by_default.usage.prompt_tokens == by_default.usage.total_tokens == 7 + 1 + 7
    assert openai_server.requests[0].inputs == texts


async def test_dimensions(oai: openai.AsyncOpenAI) -> None:
    response = await oai.embeddings.create(
        model="text-embedding-3-large", input="risk settings", dimensions=384
    )
    vector = response.data[0].embedding
    assert len(vector) == 384
    assert math.isclose(cosine(vector, vector), 1.0, rel_tol=1e-5)
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.embeddings.create(
            model="text-embedding-ada-002", input="risk settings", dimensions=384
        )
    assert caught.value.param == "dimensions"


async def test_similar_texts_score_higher_than_unrelated_ones(oai: openai.AsyncOpenAI) -> None:
    response = await oai.embeddings.create(
        model=EMBEDDING_MODEL,
        input=[
            "Why was my BTC signal rejected by the risk manager?",
            "The risk manager rejected my BTC signal: why?",
            "How do I connect a Telegram chat for notifications?",
        ],
    )
    question, paraphrase, unrelated = (d.embedding for d in response.data)
    assert cosine(question, paraphrase) > 0.5
    assert cosine(question, paraphrase) > cosine(question, unrelated) + 0.3


async def test_wrong_key_is_refused_without_echoing_it(openai_server: OpenAIServer) -> None:
    wrong = "sk-test-wrong-key-0123456789abcdef"
    client = openai.AsyncOpenAI(api_key=wrong, base_url=openai_server.url, max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.embeddings.create(model=EMBEDDING_MODEL, input="x")
    finally:
        await client.close()
    assert caught.value.code == "invalid_api_key"
    assert wrong not in caught.value.message and wrong[-4:] in caught.value.message


async def test_unknown_model_and_empty_input(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await oai.embeddings.create(model="text-embedding-9", input="x")
    assert missing.value.code == "model_not_found"
    empties: list[str | list[str]] = ["", []]
    for empty in empties:
        with pytest.raises(openai.BadRequestError) as caught:
            await oai.embeddings.create(model=EMBEDDING_MODEL, input=empty)
        assert caught.value.param == "input"
    with pytest.raises(openai.BadRequestError):
        await oai.embeddings.create(model=EMBEDDING_MODEL, input=[[1, 2, 3]])


async def test_injected_faults(openai_server: OpenAIServer, oai: openai.AsyncOpenAI) -> None:
    openai_server.fail_next(429, retry_after=2)
    openai_server.fail_next(500)
    with pytest.raises(openai.RateLimitError) as limited:
        await oai.embeddings.create(model=EMBEDDING_MODEL, input="x")
    assert limited.value.code == "rate_limit_exceeded"
    assert limited.value.response.headers["retry-after"] == "2"
    with pytest.raises(openai.InternalServerError) as failed:
        await oai.embeddings.create(model=EMBEDDING_MODEL, input="x")
    assert failed.value.code == "server_error"
    response = await oai.embeddings.create(model=EMBEDDING_MODEL, input="x")
    assert len(response.data) == 1
    assert all("authorization" not in r.headers for r in openai_server.requests)


async def test_latency_is_cut_short_by_clear(openai_server: OpenAIServer) -> None:
    openai_server.set_latency(60)
    client = openai.AsyncOpenAI(
        api_key=openai_server.api_key, base_url=openai_server.url, max_retries=0, timeout=0.2
    )
    try:
        with pytest.raises(openai.APITimeoutError):
            await client.embeddings.create(model=EMBEDDING_MODEL, input="x")
    finally:
        await client.close()
    openai_server.clear()
    assert openai_server.requests == []
