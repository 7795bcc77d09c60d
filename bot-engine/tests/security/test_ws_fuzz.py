"""Hostile frames to `/ws/connect` over a real socket (uvicorn with the engine's protocol and
the production frame limit, the `websockets` client): text that is not JSON, binary frames,
JSON of every shape, unknown types, huge topics, subscribe and unsubscribe with junk, text
frames that are not UTF-8, frames over the limit.

Every frame gets the answer docs/api/websocket.md gives it, in order: `pong`, `subscribed` or
`unsubscribed` with a canonical topic, an `error` with a documented code, or nothing (`pong`);
a frame the protocol refuses closes the connection with a documented code. Either way the
server goes on: the same connection, or a fresh one after a close, answers a ping, and nothing
is logged at error level.

Deterministic (derandomized, no example database). `FUZZ_EXAMPLES` (default 300) is the number
of examples; a longer run:

    FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/security/test_ws_fuzz.py -s
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.api.websocket import MAX_MESSAGE_BYTES, TOPICS
from tests.conftest import CapturedLogs, Factory, SecretsSeen
from tests.support.ws import LocalServer, WsClient, served, ws_url

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
WS_MAX_SIZE = 64 * 1024  # what `jadetrade serve` gives uvicorn (app/cli/main.py)
# docs/api/websocket.md: the error codes, and what the server may send unasked.
ERROR_CODES = {"invalid_json", "invalid_message", "unknown_type", "unknown_topic",
               "too_many_topics", "message_too_large"}  # fmt: skip
UNASKED = {"ping", "resync", "notification", "price_update"}
CANONICAL_TOPIC = re.compile(r"^(prices|positions|trades|signals|prices:[A-Z0-9]{2,30})$")
# The closes a frame may cause: a text frame that is not UTF-8, a frame over the limit.
CLOSE_INVALID_DATA, CLOSE_TOO_BIG = 1007, 1009


@dataclass(frozen=True)
class Frame:
    """One client message: text (`str`), binary (`bytes`), or bytes sent as a text frame."""

    payload: str | bytes
    as_text: bool = True

    async def send(self, client: WsClient) -> None:
        await client.connection.send(self.payload, text=self.as_text)

    @property
    def raw(self) -> bytes:
        return self.payload.encode() if isinstance(self.payload, str) else self.payload


def answers(frame: Frame) -> set[str]:
    """What docs/api/websocket.md says a (non-closing) frame is answered with: `type` or
    `error:<code>`; the empty string for no answer."""
    if len(frame.raw) > MAX_MESSAGE_BYTES:
        return {"error:message_too_large"}
    try:
        message = orjson.loads(frame.raw)
    except orjson.JSONDecodeError:
        return {"error:invalid_json"}
    if not isinstance(message, dict):
        return {"error:invalid_message"}
    kind = message.get("type")
    if kind == "ping":
        return {"pong"}
    if kind == "pong":
        return {""}
    if kind == "subscribe":
        return {"subscribed", "error:unknown_topic", "error:too_many_topics"}
    if kind == "unsubscribe":
        return {"unsubscribed", "error:unknown_topic"}
    return {"error:unknown_type"}


def _label(message: dict[str, Any]) -> str:
    kind = message["type"]
    return f"error:{message['data']['code']}" if kind == "error" else kind


def _check_message(message: dict[str, Any]) -> None:
    """One server message has the documented shape."""
    assert isinstance(message["seq"], int) and message["ts"].endswith("Z"), message
    data = message.get("data", {})
    if message["type"] == "error":
        assert data["code"] in ERROR_CODES, message
        assert isinstance(data["message"], str) and data["message"], message
        if data["code"] == "unknown_type":
            assert data["field"] == "type", message
        if data["code"] in ("unknown_topic", "too_many_topics"):
            assert data["field"] == "topic" and "topic" in data, message
    elif message["type"] in ("subscribed", "unsubscribed"):
        assert CANONICAL_TOPIC.match(data["topic"]), message


@dataclass
class Socket:
    """The user's connection, reopened when a frame closed it."""

    server: LocalServer
    new_token: Callable[[], str]
    captured: CapturedLogs
    client: WsClient | None = None
    frames: int = 0
    answered: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)

    async def open(self) -> WsClient:
        """The open connection, or a fresh one that said `connected`."""
        if self.client is not None:
            if self.client.connection.close_code is None:
                return self.client
            await self.client.aclose()
        connection = await connect(ws_url(self.server, self.new_token()), open_timeout=10)
        self.client = WsClient(connection, answer_pings=True)
        await self.client.next_of("connected")
        return self.client

    async def exchange(self, frames: list[Frame]) -> None:
        """Send `frames` and a ping; check every answer, in order, up to its pong."""
        client = await self.open()
        start = len(client.messages)
        expected = [answers(f) for f in frames]
        expected = [e for e in expected if e != {""}]  # a `pong` from the client: no answer
        for frame in [*frames, Frame('{"type": "ping"}')]:
            await frame.send(client)
        self.frames += len(frames)

        def replies() -> list[dict[str, Any]]:
            return [m for m in client.messages[start:] if m["type"] not in UNASKED]

        await client.wait_for(lambda _: len(replies()) > len(expected))
        got = replies()
        for message in got:
            _check_message(message)
        labels = [_label(m) for m in got]
        assert labels[-1] == "pong", labels
        assert len(labels) == len(expected) + 1, (labels, expected, frames)
        for label, allowed in zip(labels, expected, strict=False):
            assert label in allowed, (labels, expected, frames)
        self.answered.update(labels[:-1])
        seqs = [m["seq"] for m in client.messages]
        assert seqs == list(range(1, len(seqs) + 1))  # per connection, from 1, no gaps

    async def refuse(self, frame: Frame, close_code: int) -> None:
        """Send a frame the protocol refuses: the connection closes with `close_code`; a fresh
        one works."""
        client = await self.open()
        with contextlib.suppress(ConnectionClosed):  # closed before the frame was all out
            await frame.send(client)
        code, _reason = await client.closed()
        assert code == close_code, (code, frame.raw[:80])
        self.frames += 1
        self.closes[close_code] += 1
        await self.exchange([])  # reopens

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


def _error_lines(captured: CapturedLogs) -> int:
    return sum('"level":"error"' in line for line in captured.lines)


@pytest.fixture(scope="module")
async def socket(
    app: FastAPI, secrets_seen: SecretsSeen, captured_logs: CapturedLogs
) -> AsyncIterator[Socket]:
    factory = Factory(app=app, secrets=secrets_seen)
    user = await factory.user()
    async with served(app, ws_max_size=WS_MAX_SIZE) as server:
        link = Socket(server, lambda: factory.access_token(user), captured_logs)
        yield link
        await link.close()
    answered = ", ".join(f"{label}: {n}" for label, n in link.answered.most_common())
    closes = ", ".join(f"{code}: {n}" for code, n in sorted(link.closes.items()))
    print(  # noqa: T201 (the summary a run with -s shows)
        f"\nws fuzz: {link.frames} frames; answers {{{answered}}}; closes {{{closes}}}"
    )


# --------------------------------------------------------------------------- strategies
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)
TOPIC_LIKE = st.sampled_from(
    [*TOPICS, "prices:BTCUSDT", "prices:BINANCE:btcusdt.p", "prices:eth/usdt:USDT", "prices:",
     "prices", "prices:BTC USDT", "prices:" + "A" * 31, "prices:" + "Z" * 4000, "gossip",
     "signals ", "SIGNALS", "prices:prices:BTCUSDT", "", "\u0000", "prices:\u202eBTCUSDT"]
)  # fmt: skip
TYPE_LIKE = st.sampled_from(
    ["subscribe", "unsubscribe", "ping", "pong", "Subscribe", "PING", "", "dance", "connected"]
)
topic_changes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["subscribe", "unsubscribe"]),
        "topic": TOPIC_LIKE | st.text(max_size=40) | json_values,
    }
)
messages = st.fixed_dictionaries(
    {"type": TYPE_LIKE | json_values},
    optional={"topic": TOPIC_LIKE | json_values | st.text(max_size=60)},
) | st.dictionaries(st.text(max_size=8), json_values, max_size=4)
large = st.integers(MAX_MESSAGE_BYTES - 16, MAX_MESSAGE_BYTES + 16).map(
    lambda n: json.dumps({"type": "subscribe", "topic": "x" * n})
) | st.integers(1000, 3000).map(lambda n: "€" * n)  # over 4 KiB in bytes, not in characters
# The protocol's own messages, with junk, are drawn most often: they reach the most code.
texts = (
    topic_changes.map(json.dumps)
    | topic_changes.map(json.dumps)
    | messages.map(json.dumps)
    | messages.map(json.dumps)
    | json_values.map(json.dumps)
    | st.text(max_size=200)
    | st.sampled_from(["", " ", "{", "[1, 2]", "null", '{"type": "ping"', "NaN", "1e999"])
    | large
)
frames = st.builds(Frame, texts) | st.builds(
    Frame, texts.map(str.encode) | st.binary(max_size=300), st.just(False)
)
CLOSING = st.sampled_from(
    [
        (Frame(b"\xff\xfe{}"), CLOSE_INVALID_DATA),
        (Frame(b'{"type": "ping", "x": "\xed\xa0\x80"}'), CLOSE_INVALID_DATA),
        (Frame("x" * (WS_MAX_SIZE + 1)), CLOSE_TOO_BIG),
        (Frame(b"\x00" * (WS_MAX_SIZE + 1000), as_text=False), CLOSE_TOO_BIG),
    ]
)


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_every_frame_gets_a_documented_answer_or_close(
    socket: Socket, data: st.DataObject
) -> None:
    errors_before = _error_lines(socket.captured)
    if data.draw(st.sampled_from(["close", "frames", "frames", "frames"]), label="how") == "close":
        frame, code = data.draw(CLOSING, label="closing frame")
        await socket.refuse(frame, code)
    else:
        await socket.exchange(data.draw(st.lists(frames, min_size=1, max_size=6), label="frames"))
    assert _error_lines(socket.captured) == errors_before, "a frame made the server log an error"
