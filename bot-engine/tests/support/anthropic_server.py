"""A local stand-in for the Anthropic Messages API, speaking its HTTP wire protocol.

The real SDK (`anthropic.AsyncAnthropic(base_url=server.url)`) talks to it unchanged. Served
on a free loopback port (stdlib server in a background thread):

- `GET /v1/models` and `GET /v1/models/{id}`: the configured models (unknown: 404).
- `POST /v1/messages`: validated as the real API validates (400 `invalid_request_error`
  naming the field; unknown model 404), then answered from the scripted `Turn`s, FIFO, as a
  whole message or, with `"stream": true`, as the real server-sent event sequence over a
  chunked HTTP/1.1 body (`message_start`, `content_block_start`, one `ping`,
  `content_block_delta`s, `content_block_stop`, `message_delta`, `message_stop`).
- `POST /v1/messages/count_tokens`: the input token count the same request would report.

Every request needs the key (else 401), as `x-api-key` or, as SDK 2.x sends it,
`Authorization: Bearer`, and `anthropic-version` (else 400); every answer
carries a `request-id` header and errors have the API's `{"type": "error", ...}` shape.

Prompt caching is emulated: the prompt (tools, system, messages, in that order) counts about
one token per 4 characters of JSON; a `cache_control` breakpoint whose prefix reaches
`min_cacheable_tokens` is written to the cache the first time (`cache_creation_input_tokens`)
and read from it when a later request repeats the prefix (`cache_read_input_tokens`), with
`input_tokens` only the part after the last breakpoint. Shorter prefixes are silently not
cached, as the real API does. Entries do not expire.

Requests are recorded in `requests` (without the key); faults come from scripted turns
(`status`, `fail_after`) and `set_chunk_delay`, `hold`/`release`; `clear` resets everything.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import select
import socket
import string
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, urlsplit

from tests.support.http_server import BackgroundHttpServer, KeepAliveHandler, OwnedHttpServer

DEFAULT_MODELS = ("claude-sonnet-5-5", "claude-haiku-5-5")
MODEL_MAX_OUTPUT_TOKENS = 64_000
MODEL_MAX_INPUT_TOKENS = 200_000
MAX_CACHE_BREAKPOINTS = 4
StopReason = Literal["end_turn", "tool_use", "max_tokens", "refusal"]

_ALPHABET = string.ascii_letters + string.digits
_MODEL_PATH = re.compile(r"/v1/models/(?P<id>[^/]+)")
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_TOOL_USE_ID = re.compile(r"[a-zA-Z0-9_-]+")
_REQUEST_FIELDS = frozenset(
    {
        "model", "max_tokens", "messages", "system", "tools", "tool_choice", "stream",
        "metadata", "stop_sequences", "temperature", "top_p", "top_k", "thinking",
        "cache_control", "container", "context_management", "diagnostics", "inference_geo",
        "mcp_servers", "output_config", "service_tier", "speed", "user_profile_id",
        "workspace_id",
    }
)  # fmt: skip
_BLOCK_TYPES = ("text", "tool_use", "tool_result")
# Keys each content block may carry (the SDK's `*BlockParam` types); any other is refused,
# as the real API refuses it.
_BLOCK_KEYS = {
    "text": frozenset({"type", "text", "cache_control", "citations"}),
    "tool_use": frozenset(
        {"type", "id", "name", "input", "cache_control", "caller", "toolset_name"}
    ),
    "tool_result": frozenset(
        {"type", "tool_use_id", "content", "is_error", "cache_control", "toolset_name"}
    ),
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ERROR_MESSAGES = {
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "timeout_error": "Request timeout",
}


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _tokens(chars: int) -> int:
    """The stand-in's tokenizer: about one token per 4 characters."""
    return math.ceil(chars / 4)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- scripting
@dataclass(frozen=True)
class ToolCall:
    """A `tool_use` block the scripted model emits."""

    name: str
    input: dict[str, Any]
    id: str = field(default_factory=lambda: _new_id("toolu_"))


@dataclass(frozen=True)
class Turn:
    """What the model answers to one `/v1/messages` request.

    `text` is the text deltas in order (joined in a non-streamed answer); `fail_after`
    streams that many of them and then an `overloaded_error` event (a non-streamed request
    gets HTTP 529); `status` answers an HTTP error instead of a message (`error_type` and
    `message` default by status; a 429 carries `retry-after`, by default 1 second).
    Token counts default to what the request and the output measure (see the module); an
    explicit `input_tokens` replaces the uncached count, the cache fields stay emulated.
    Only requests that pass validation take a turn."""

    text: Sequence[str] = ()
    tool_calls: Sequence[ToolCall] = ()
    stop_reason: StopReason | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    fail_after: int | None = None
    status: int | None = None
    error_type: str | None = None
    message: str | None = None
    retry_after: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.text, str):  # a bare string would stream one delta per character
            raise TypeError("Turn.text is a sequence of deltas: write text=('...',)")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"Turn.status must be an HTTP error status, not {self.status}")
        if self.fail_after is not None and self.fail_after < 0:
            raise ValueError("Turn.fail_after must be >= 0")

    @property
    def reason(self) -> StopReason:
        if self.stop_reason is not None:
            return self.stop_reason
        return "tool_use" if self.tool_calls else "end_turn"


# --------------------------------------------------------------------------- recording
@dataclass(frozen=True)
class RecordedRequest:
    """One request as received: header names lower-cased, the API key left out; `body` is
    the parsed JSON (None when there was none or it did not parse)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any

    @property
    def system_text(self) -> str:
        """The system prompt, its text blocks joined by newlines."""
        system = self.body.get("system") if isinstance(self.body, dict) else None
        if isinstance(system, str):
            return system
        if isinstance(system, list):
            return "\n".join(_texts(system))
        return ""

    @property
    def last_user_text(self) -> str:
        """The text of the last user message (its text blocks joined by newlines)."""
        message = self._last_user_message()
        content = message.get("content") if message else None
        if isinstance(content, str):
            return content
        return "\n".join(_texts(content)) if isinstance(content, list) else ""

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The `tool_result` blocks of the last user message."""
        message = self._last_user_message()
        content = message.get("content") if message else None
        if not isinstance(content, list):
            return []
        return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]

    def _last_user_message(self) -> dict[str, Any] | None:
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        for message in reversed(messages if isinstance(messages, list) else []):
            if isinstance(message, dict) and message.get("role") == "user":
                return message
        return None


def _texts(blocks: list[Any]) -> list[str]:
    return [
        b["text"]
        for b in blocks
        if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
    ]


# --------------------------------------------------------------------------- answers
class ApiError(Exception):
    """An error answer in the API's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or _ERROR_TYPES.get(status, "api_error")
        self.headers = dict(headers or {})


def _invalid(message: str) -> ApiError:
    return ApiError(400, message, "invalid_request_error")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class StreamAnswer:
    """Server-sent events to write one by one; the stream can be held after `message_start`."""

    events: list[tuple[str, dict[str, Any]]]
    headers: dict[str, str]


@dataclass(frozen=True)
class _Usage:
    input_tokens: int
    cache_creation: int
    cache_read: int
    ttl: str  # "5m" or "1h": which bucket of `cache_creation` the written tokens go to

    def as_dict(self, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation if self.ttl == "5m" else 0,
                "ephemeral_1h_input_tokens": self.cache_creation if self.ttl == "1h" else 0,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }


class Hold:
    """Returned by `AnthropicServer.hold()`; leaving the `with` block releases the streams."""

    def __init__(self, server: AnthropicServer) -> None:
        self._server = server

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.release()


# --------------------------------------------------------------------------- HTTP
class _Handler(KeepAliveHandler):
    server: OwnedHttpServer

    def do_GET(self) -> None:
        self._handle(self._body())

    def do_POST(self) -> None:
        self._handle(self._body())

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers, up to the blank line
                pass
            return body
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, body: bytes) -> None:
        received = time.perf_counter()
        owner: AnthropicServer = self.server.owner
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = owner.answer(self.command, self.path, headers, body)
        if isinstance(answer, StreamAnswer):
            self._stream(owner, answer, received)
        else:
            self.reply(answer.status, answer.body, headers=answer.headers)

    def _stream(self, owner: AnthropicServer, answer: StreamAnswer, received: float) -> None:
        """The events as one chunked body, each chunk written (and so sent) as produced."""
        first_delta = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            for n, (event, data) in enumerate(answer.events):
                if n:
                    owner._pause()
                payload = f"event: {event}\ndata: {_json(data)}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
                if event == "content_block_delta" and first_delta:
                    first_delta = False
                    owner._note_stream(received, time.perf_counter())
                if event == "message_start" and not owner._park(self.connection):
                    self.close_connection = True
                    return
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            owner._note_disconnect()


def _peer_closed(sock: socket.socket) -> bool:
    """Whether the client hung up. Mid-answer it sends nothing, so readable means EOF."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class AnthropicServer(BackgroundHttpServer):
    """The Messages API for `models` on a free loopback port; pass `url` as `base_url`."""

    def __init__(
        self,
        models: Sequence[str] = DEFAULT_MODELS,
        min_cacheable_tokens: int = 1024,
    ) -> None:
        super().__init__(_Handler)
        self.models = tuple(models)
        self.min_cacheable_tokens = min_cacheable_tokens
        self.api_key = "sk-ant-test-" + secrets.token_urlsafe(32)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._released = threading.Event()
        self._released.set()
        self._requests: list[RecordedRequest] = []
        self._turns: list[Turn] = []
        self._cache: set[str] = set()
        self._chunk_delay_s = 0.0
        self._held = 0
        self._disconnects = 0
        self._stream_times: list[tuple[float, float]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """The `POST /v1/messages` requests, oldest first."""
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/messages"]

    # ------------------------------------------------------------------ scripting
    def script(self, *turns: Turn) -> None:
        """Queue answers: each valid `/v1/messages` request takes the next one."""
        with self._lock:
            self._turns.extend(turns)

    @property
    def pending_turns(self) -> int:
        """Scripted turns not answered yet."""
        with self._lock:
            return len(self._turns)

    # ------------------------------------------------------------------ faults
    def set_chunk_delay(self, seconds: float) -> None:
        """Wait this long between stream events (a slow model)."""
        with self._lock:
            self._chunk_delay_s = seconds

    def hold(self) -> Hold:
        """Park every stream right after its `message_start` until `release` (or the end of
        the returned context manager); a client hanging up meanwhile counts in
        `disconnects`."""
        self._released.clear()
        return Hold(self)

    def release(self) -> None:
        self._released.set()

    @property
    def held(self) -> int:
        """Streams parked by `hold` right now."""
        with self._lock:
            return self._held

    @property
    def disconnects(self) -> int:
        """Streams whose client went away before the end."""
        with self._lock:
            return self._disconnects

    def wait_held(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until `count` streams are parked; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._held >= count, timeout)

    def wait_disconnects(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until `count` streams have lost their client; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._disconnects >= count, timeout)

    def clear(self) -> None:
        """Forget scripts, recorded requests, the prompt cache and faults."""
        with self._lock:
            self._turns.clear()
            self._requests.clear()
            self._cache.clear()
            self._chunk_delay_s = 0.0
            self._disconnects = 0
            self._stream_times.clear()
        self._released.set()

    def stop(self) -> None:
        self._stopping.set()
        self._released.set()
        super().stop()

    # ------------------------------------------------------------------ used by the handler
    def _pause(self) -> None:
        with self._lock:
            delay = self._chunk_delay_s
        if delay > 0:
            self._stopping.wait(delay)

    def _park(self, sock: socket.socket) -> bool:
        """Wait while held; False if the client hung up meanwhile."""
        if self._released.is_set():
            return True
        with self._changed:
            self._held += 1
            self._changed.notify_all()
        try:
            while not self._released.wait(0.02):
                if _peer_closed(sock):
                    self._note_disconnect()
                    return False
            return True
        finally:
            with self._changed:
                self._held -= 1
                self._changed.notify_all()

    @property
    def stream_times(self) -> list[tuple[float, float]]:
        """Per streamed answer: when its request had been read and when its first text delta
        was written (`time.perf_counter()`): the model's own share of a time to first byte."""
        with self._lock:
            return list(self._stream_times)

    def _note_stream(self, received: float, first_delta: float) -> None:
        with self._lock:
            self._stream_times.append((received, first_delta))

    def _note_disconnect(self) -> None:
        with self._changed:
            self._disconnects += 1
            self._changed.notify_all()

    # ------------------------------------------------------------------ answering
    def answer(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Answer | StreamAnswer:
        """The answer to one request; called from the handler threads."""
        request_id = _new_id("req_")
        parts = urlsplit(target)
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        recorded = RecordedRequest(
            method=method,
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers={k: v for k, v in headers.items() if k not in ("x-api-key", "authorization")},
            body=parsed,
        )
        with self._lock:
            self._requests.append(recorded)
        try:
            if self.api_key not in (headers.get("x-api-key"), _bearer(headers)):
                raise ApiError(401, "invalid x-api-key", "authentication_error")
            if not headers.get("anthropic-version"):
                raise _invalid("anthropic-version: header is required")
            result = self._route(recorded, body, request_id)
        except ApiError as error:
            payload = {
                "type": "error",
                "error": {"type": error.error_type, "message": error.message},
                "request_id": request_id,
            }
            answer_headers = {"request-id": request_id, **error.headers}
            return Answer(error.status, _json(payload).encode(), answer_headers)
        if isinstance(result, StreamAnswer):
            return result
        return Answer(200, _json(result).encode(), {"request-id": request_id})

    def _route(
        self, request: RecordedRequest, raw: bytes, request_id: str
    ) -> dict[str, Any] | StreamAnswer:
        path = request.path.rstrip("/")
        if request.method == "GET" and path == "/v1/models":
            return self._list_models(request.query)
        if request.method == "GET" and (match := _MODEL_PATH.fullmatch(path)):
            return self._model(match["id"])
        if request.method == "POST" and path in ("/v1/messages", "/v1/messages/count_tokens"):
            if not raw or not isinstance(request.body, dict):
                raise _invalid("There was an error parsing the body of your request: JSON object")
            if path.endswith("count_tokens"):
                body = {k: v for k, v in request.body.items() if k != "max_tokens"}
                _validate(body | {"max_tokens": 1}, self.models)
                return {"input_tokens": self._usage(body, record=False).input_tokens}
            _validate(request.body, self.models)
            return self._message(request.body, request_id)
        raise ApiError(404, "Not Found", "not_found_error")

    # ------------------------------------------------------------------ models
    def _model(self, model_id: str) -> dict[str, Any]:
        if model_id not in self.models:
            raise ApiError(404, f"model: {model_id}", "not_found_error")
        return {
            "type": "model",
            "id": model_id,
            "display_name": _display_name(model_id),
            "created_at": "2026-01-15T00:00:00Z",
            "lifecycle": "active",
            "max_input_tokens": MODEL_MAX_INPUT_TOKENS,
            "max_tokens": MODEL_MAX_OUTPUT_TOKENS,
        }

    def _list_models(self, query: Mapping[str, str]) -> dict[str, Any]:
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            raise _invalid("limit: Input should be a valid integer") from None
        if not 1 <= limit <= 1000:
            raise _invalid("limit: Input should be between 1 and 1000")
        ids = list(self.models)
        if (after := query.get("after_id")) in ids:
            ids = ids[ids.index(after) + 1 :]
        if (before := query.get("before_id")) in ids:
            ids = ids[: ids.index(before)][-limit:]
        page = ids[:limit]
        return {
            "data": [self._model(model_id) for model_id in page],
            "has_more": len(ids) > len(page),
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }

    # ------------------------------------------------------------------ messages
    def _message(self, body: dict[str, Any], request_id: str) -> dict[str, Any] | StreamAnswer:
        with self._lock:
            turn = self._turns.pop(0) if self._turns else None
        if turn is None:
            turn = Turn(text=(f"(stand-in model) {len(body['messages'])} messages received.",))
        stream = body.get("stream") is True
        if turn.status is not None:
            raise _scripted_error(turn)
        if turn.fail_after is not None and not stream:
            raise ApiError(529, "Overloaded", "overloaded_error")
        usage = self._usage(body, record=True)
        if turn.input_tokens is not None:
            usage = _Usage(turn.input_tokens, usage.cache_creation, usage.cache_read, usage.ttl)
        output_tokens = _output_tokens(turn, body["max_tokens"])
        message = {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": _content(turn),
            "stop_reason": turn.reason,
            "stop_sequence": None,
            "usage": usage.as_dict(output_tokens),
        }
        if not stream:
            return message
        return StreamAnswer(_events(turn, message, usage), {"request-id": request_id})

    def _usage(self, body: Mapping[str, Any], *, record: bool) -> _Usage:
        """Input tokens split into cached and uncached parts; `record` writes new prefixes."""
        segments = _segments(body)
        total = _tokens(sum(len(text) for text, _ in segments))
        model = str(body["model"])
        digest = hashlib.sha256(model.encode())
        chars = 0
        breakpoints: list[tuple[int, str, str]] = []  # (tokens, cache key, ttl) per breakpoint
        for text, ttl in segments:
            chars += len(text)
            digest.update(text.encode())
            if ttl is not None and _tokens(chars) >= self.min_cacheable_tokens:
                breakpoints.append((_tokens(chars), digest.copy().hexdigest(), ttl))
        if not breakpoints:
            return _Usage(total, 0, 0, "5m")
        with self._lock:
            read = max((tokens for tokens, key, _ in breakpoints if key in self._cache), default=0)
            if record:
                self._cache.update(key for _, key, _ in breakpoints)
        cached, _, ttl = breakpoints[-1]
        return _Usage(total - cached, cached - read, read, ttl)


def _bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _display_name(model_id: str) -> str:
    """`claude-sonnet-5-5` → `Claude Sonnet 5.5`."""
    parts = model_id.split("-")
    words = [p.capitalize() for p in parts if not p.isdigit()]
    version = ".".join(p for p in parts if p.isdigit() and len(p) <= 2)
    return " ".join(words + ([version] if version else []))


def _scripted_error(turn: Turn) -> ApiError:
    status = turn.status or 500
    error_type = turn.error_type or _ERROR_TYPES.get(status, "api_error")
    headers: dict[str, str] = {}
    if status == 429 or turn.retry_after is not None:
        headers["retry-after"] = f"{turn.retry_after if turn.retry_after is not None else 1:g}"
    if status == 429:
        headers["anthropic-ratelimit-requests-remaining"] = "0"
    message = turn.message or _ERROR_MESSAGES.get(error_type, error_type.replace("_", " "))
    return ApiError(status, message, error_type, headers)


def _output_tokens(turn: Turn, max_tokens: int) -> int:
    if turn.output_tokens is not None:
        return turn.output_tokens
    if turn.reason == "max_tokens":
        return max_tokens  # the model ran into the limit
    chars = sum(len(t) for t in turn.text) + sum(len(_json(c.input)) for c in turn.tool_calls)
    return max(1, _tokens(chars))


def _content(turn: Turn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.text:
        blocks.append({"type": "text", "text": "".join(turn.text)})
    for call in turn.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.input})
    return blocks


def _events(turn: Turn, message: dict[str, Any], usage: _Usage) -> list[tuple[str, dict[str, Any]]]:
    """The stream of `message`, as the real API sends it; cut by `turn.fail_after`."""
    start = dict(message, content=[], stop_reason=None, usage=usage.as_dict(1))
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]

    def ping() -> None:
        if not any(name == "ping" for name, _ in events):
            events.append(("ping", {"type": "ping"}))

    overloaded = (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    if turn.fail_after is not None and not turn.text:  # nothing to stream before failing
        ping()
        events.append(overloaded)
        return events
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": t} for t in turn.text]
        else:
            opening = dict(block, input={})
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in _pieces(_json(block["input"]))
            ]
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            )
        )
        ping()
        for n, delta in enumerate(deltas):
            if block["type"] == "text" and n == turn.fail_after:
                events.append(overloaded)
                return events
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        if block["type"] == "text" and turn.fail_after is not None:
            events.append(overloaded)  # fail_after reaches past the text: fail at its end
            return events
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    ping()
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _pieces(text: str, count: int = 3) -> list[str]:
    """`text` in up to `count` parts, as the API streams tool input JSON."""
    size = max(1, math.ceil(len(text) / count))
    return [text[i : i + size] for i in range(0, len(text), size)]


# --------------------------------------------------------------------------- caching
def _segments(body: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """The prompt in cache order (tools, system, messages) as (JSON text, ttl of the
    breakpoint it ends, if any)."""
    segments: list[tuple[str, str | None]] = []

    def add(value: Any) -> None:
        control = value.get("cache_control") if isinstance(value, dict) else None
        ttl = str(control.get("ttl", "5m")) if isinstance(control, dict) else None
        segments.append((_json(value), ttl))

    for tool in body.get("tools") or []:
        add(tool)
    system = body.get("system")
    if isinstance(system, list):
        for block in system:
            add(block)
    elif system:
        add(system)
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, list):
            segments.append((_json({"role": message["role"]}), None))
            for block in content:
                add(block)
        else:
            add(message)
    control = body.get("cache_control")
    if isinstance(control, dict) and segments:  # automatic caching: up to the last block
        segments[-1] = (segments[-1][0], str(control.get("ttl", "5m")))
    return segments


# --------------------------------------------------------------------------- validation
def _validate(body: Mapping[str, Any], models: Sequence[str]) -> None:
    """Raise the 400 (or 404) the real API answers to this request body."""
    for key in body:
        if key not in _REQUEST_FIELDS:
            raise _invalid(f"{key}: Extra inputs are not permitted")
    model = body.get("model")
    if model is None:
        raise _invalid("model: Field required")
    if not isinstance(model, str):
        raise _invalid("model: Input should be a valid string")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise _invalid("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise _invalid("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        raise _invalid("max_tokens: Input should be greater than or equal to 1")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _invalid("stream: Input should be a valid boolean")
    breakpoints = _validate_system(body.get("system"))
    tool_names, tool_breakpoints = _validate_tools(body.get("tools"))
    breakpoints += tool_breakpoints + _validate_messages(body.get("messages"))
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        raise _invalid(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {breakpoints}."
        )
    _validate_tool_choice(body.get("tool_choice"), tool_names)
    if "cache_control" in body:
        _validate_cache_control(body["cache_control"], "cache_control")
    temperature = body.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float) or not 0 <= temperature <= 1
    ):
        raise _invalid("temperature: Input should be less than or equal to 1")
    stops = body.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
    ):
        raise _invalid("stop_sequences: Input should be a valid list of strings")
    if model not in models:
        raise ApiError(404, f"model: {model}", "not_found_error")
    if max_tokens > MODEL_MAX_OUTPUT_TOKENS:
        raise _invalid(
            f"max_tokens: {max_tokens} > {MODEL_MAX_OUTPUT_TOKENS}, which is the maximum "
            f"allowed number of output tokens for {model}"
        )


def _validate_cache_control(value: Any, where: str) -> int:
    """1 for a valid breakpoint, 0 for none."""
    if value is None:
        return 0
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise _invalid(f"{where}.type: Input should be 'ephemeral'")
    if value.get("ttl", "5m") not in ("5m", "1h"):
        raise _invalid(f"{where}.ttl: Input should be '5m' or '1h'")
    extra = set(value) - {"type", "ttl"}
    if extra:
        raise _invalid(f"{where}.{min(extra)}: Extra inputs are not permitted")
    return 1


def _validate_text_block(block: Any, where: str) -> int:
    if not isinstance(block, dict):
        raise _invalid(f"{where}: Input should be a valid dictionary")
    if block.get("type") != "text":
        raise _invalid(f"{where}.type: Input should be 'text'")
    if not isinstance(block.get("text"), str):
        raise _invalid(f"{where}.text: Field required")
    if not block["text"]:
        raise _invalid(f"{where}: text content blocks must be non-empty")
    return _validate_cache_control(block.get("cache_control"), f"{where}.cache_control")


def _validate_system(system: Any) -> int:
    if system is None or isinstance(system, str):
        return 0
    if not isinstance(system, list):
        raise _invalid("system: Input should be a valid string or a list of text blocks")
    return sum(_validate_text_block(block, f"system.{i}") for i, block in enumerate(system))


def _validate_tools(tools: Any) -> tuple[set[str], int]:
    if tools is None:
        return set(), 0
    if not isinstance(tools, list):
        raise _invalid("tools: Input should be a valid list")
    names: set[str] = set()
    breakpoints = 0
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            raise _invalid(f"{where}: Input should be a valid dictionary")
        name = tool.get("name")
        if not isinstance(name, str):
            raise _invalid(f"{where}.name: Field required")
        if not _TOOL_NAME.fullmatch(name):
            raise _invalid(f"{where}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if name in names:
            raise _invalid("tools: Tool names must be unique.")
        names.add(name)
        if "description" in tool and not isinstance(tool["description"], str):
            raise _invalid(f"{where}.description: Input should be a valid string")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _invalid(f"{where}.input_schema: Field required")
        if schema.get("type") != "object":
            raise _invalid(f"{where}.input_schema.type: Input should be 'object'")
        if tool.get("type", "custom") not in ("custom", None):
            raise _invalid(f"{where}.type: Input should be 'custom'")
        breakpoints += _validate_cache_control(tool.get("cache_control"), f"{where}.cache_control")
    return names, breakpoints


def _validate_tool_choice(choice: Any, tool_names: set[str]) -> None:
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise _invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if kind in ("any", "tool") and not tool_names:
        raise _invalid("tool_choice: tool_choice may only be specified while providing tools")
    if kind == "tool" and choice.get("name") not in tool_names:
        raise _invalid(f"tool_choice.name: tool '{choice.get('name')}' is not among the tools")


def _validate_messages(messages: Any) -> int:
    """Check the conversation; the number of cache breakpoints in it."""
    if messages is None:
        raise _invalid("messages: Field required")
    if not isinstance(messages, list):
        raise _invalid("messages: Input should be a valid list")
    if not messages:
        raise _invalid("messages: at least one message is required")
    breakpoints = 0
    tool_use_ids: set[str] = set()
    previous_uses: list[str] = []  # tool_use ids of the previous (assistant) message
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise _invalid(f"{where}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _invalid(f"{where}.role: Input should be 'user' or 'assistant'")
        for key in message:
            if key not in ("role", "content"):
                raise _invalid(f"{where}.{key}: Extra inputs are not permitted")
        if i == 0 and role != "user":
            raise _invalid('messages: first message must use the "user" role')
        if i > 0 and messages[i - 1].get("role") == role:
            raise _invalid(
                'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row'
            )
        if "content" not in message:
            raise _invalid(f"{where}.content: Field required")
        content = message["content"]
        final_assistant = role == "assistant" and i == len(messages) - 1
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            blocks = content
        else:
            raise _invalid(f"{where}.content: Input should be a valid string or list of blocks")
        if not blocks and not final_assistant:
            raise _invalid(
                f"{where}: all messages must have non-empty content except for the optional "
                "final assistant message"
            )
        uses: list[str] = []
        answered: set[str] = set()
        other_seen = False
        for j, block in enumerate(blocks):
            at = f"{where}.content.{j}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in _BLOCK_TYPES:
                raise _invalid(
                    f"{at}.type: Input tag '{kind}' found using 'type' does not match any of "
                    "the expected tags: 'text', 'tool_use', 'tool_result'"
                )
            assert isinstance(block, dict)
            unknown = set(block) - _BLOCK_KEYS[kind]
            if unknown:
                raise _invalid(f"{at}.{kind}.{min(unknown)}: Extra inputs are not permitted")
            breakpoints += _validate_cache_control(
                block.get("cache_control"), f"{at}.cache_control"
            )
            if kind == "text":
                _validate_text_block(block, at)
                other_seen = True
            elif kind == "tool_use":
                if role != "assistant":
                    raise _invalid(f"{at}: tool_use blocks may only appear in assistant messages")
                block_id = block.get("id")
                if not isinstance(block_id, str) or not _TOOL_USE_ID.fullmatch(block_id):
                    raise _invalid(f"{at}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
                if block_id in tool_use_ids:
                    raise _invalid(f"{at}: `tool_use` ids must be unique")
                if not isinstance(block.get("name"), str):
                    raise _invalid(f"{at}.name: Field required")
                if not isinstance(block.get("input"), dict):
                    raise _invalid(f"{at}.input: Input should be a valid dictionary")
                tool_use_ids.add(block_id)
                uses.append(block_id)
            else:
                if role != "user":
                    raise _invalid(f"{at}: tool_result blocks may only appear in user messages")
                use_id = block.get("tool_use_id")
                if not isinstance(use_id, str):
                    raise _invalid(f"{at}.tool_use_id: Field required")
                if use_id not in previous_uses:
                    raise _invalid(
                        f"{at}: unexpected `tool_use_id` found in `tool_result` blocks: {use_id}. "
                        "Each `tool_result` block must have a corresponding `tool_use` block in "
                        "the previous message."
                    )
                if other_seen:
                    raise _invalid(
                        f"{at}: `tool_result` blocks must come first in the content of a user "
                        "message, before any other content"
                    )
                _validate_tool_result(block, at)
                answered.add(use_id)
        if role == "user" and previous_uses:
            missing = [use_id for use_id in previous_uses if use_id not in answered]
            if missing:
                raise _invalid(
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message."
                )
        previous_uses = uses
    if previous_uses:  # the conversation ends with unanswered tool calls
        raise _invalid(
            f"messages.{len(messages) - 1}: `tool_use` ids were found without `tool_result` "
            f"blocks immediately after: {', '.join(previous_uses)}. Each `tool_use` block must "
            "have a corresponding `tool_result` block in the next message."
        )
    return breakpoints


def _validate_tool_result(block: dict[str, Any], at: str) -> None:
    content = block.get("content")
    if isinstance(content, list):
        for k, part in enumerate(content):
            _validate_text_block(part, f"{at}.content.{k}")
    elif content is not None and not isinstance(content, str):
        raise _invalid(f"{at}.content: Input should be a valid string or list of blocks")
    if "is_error" in block and not isinstance(block["is_error"], bool):
        raise _invalid(f"{at}.is_error: Input should be a valid boolean")
