"""A local stand-in for the Telegram Bot API, speaking its wire protocol.

Serves `GET|POST /bot<token>/getMe` and `/bot<token>/sendMessage` on a free loopback port
(stdlib server in a background thread). Parameters come as a query string, a JSON body or a
form-encoded body, as the real API takes them, and every answer has the Bot API's shape:
`{"ok": true, "result": ...}` or `{"ok": false, "error_code": N, "description": "..."}`
(with `"parameters": {"retry_after": N}` on 429). A token of the right shape but not this
bot's is 401 `Unauthorized`; a path that is not `/bot<id>:<secret>/<method>` is 404.

Delivered messages are recorded in `messages`; faults are injected with `fail_next`,
`set_latency`, `block_chat` and `mark_chat_missing`, and removed with `clear_faults`.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import zlib
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.http_server import BackgroundHttpServer, KeepAliveHandler, OwnedHttpServer

MAX_MESSAGE_LENGTH = 4096  # code points, after entity parsing (there is none in plain text)
_PATH = re.compile(r"/bot(?P<token>[^/]*)/(?P<method>[A-Za-z0-9_]+)")
_TOKEN_SHAPE = re.compile(r"\d+:[A-Za-z0-9_-]+")
_CHAT_ID = re.compile(r"-?\d{1,20}")
_CHANNEL = re.compile(r"@[A-Za-z][A-Za-z0-9_]{3,31}")


def new_bot_token() -> str:
    """A token in Telegram's form: `<bot id>:<35 characters of [A-Za-z0-9_-]>`."""
    bot_id = 1_000_000_000 + secrets.randbelow(9_000_000_000)
    return f"{bot_id}:AA{secrets.token_urlsafe(25)[:33]}"


@dataclass(frozen=True)
class ApiCall:
    """One request as the server understood it."""

    http_method: str
    method: str  # the Bot API method, as written in the path
    params: dict[str, Any]
    content_type: str


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Fault:
    status: int
    description: str
    retry_after: int | None
    raw_body: bytes | None


class ApiError(Exception):
    """An `ok: false` answer."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            answer["parameters"] = {"retry_after": self.retry_after}
        return answer


class _Handler(KeepAliveHandler):
    server: OwnedHttpServer

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(length) if length else b"")

    def _handle(self, body: bytes) -> None:
        owner: TelegramBotApiServer = self.server.owner
        content_type = self.headers.get("Content-Type", "")
        answer = owner.answer(self.command, self.path, content_type, body)
        self.reply(
            answer.status, answer.body, content_type=answer.content_type, headers=answer.headers
        )


class TelegramBotApiServer(BackgroundHttpServer):
    """One bot's Bot API on a free loopback port; `base_url` is what a client is given."""

    def __init__(self, token: str | None = None, *, username: str = "jadetrade_test_bot") -> None:
        super().__init__(_Handler)
        self.token = token or new_bot_token()
        self.bot_id = int(self.token.split(":", 1)[0])
        self.username = username
        self._lock = threading.Lock()
        self._released = threading.Event()  # ends every pending delay (clear_faults, stop)
        self._messages: list[tuple[str, str]] = []
        self._calls: list[ApiCall] = []
        self._next_message_id: dict[str, int] = {}
        self._faults: list[_Fault] = []
        self._latency_s = 0.0
        self._held = 0
        self._blocked: set[str] = set()
        self._missing: set[str] = set()

    # ------------------------------------------------------------------ what it serves
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[tuple[str, str]]:
        """Delivered messages, oldest first, as (chat_id, text)."""
        with self._lock:
            return list(self._messages)

    @property
    def calls(self) -> list[ApiCall]:
        """Every request with a well-formed path, answered or not, oldest first."""
        with self._lock:
            return list(self._calls)

    # ------------------------------------------------------------------ faults
    def fail_next(
        self,
        n: int,
        status: int,
        description: str | None = None,
        retry_after: int | None = None,
        *,
        raw_body: bytes | None = None,
    ) -> None:
        """Answer the next `n` requests with this error (or, with `raw_body`, that body as
        text/html, like a proxy in front of the API), whatever they ask."""
        if description is None:
            phrase = HTTPStatus(status).phrase
            description = (
                f"Too Many Requests: retry after {retry_after}"
                if status == 429 and retry_after is not None
                else phrase
            )
        with self._lock:
            self._faults.extend([_Fault(status, description, retry_after, raw_body)] * n)

    def set_latency(self, seconds: float) -> None:
        """Answer every request after `seconds` (a hanging API); `clear_faults` ends it."""
        with self._lock:
            self._latency_s = seconds
            self._released.clear()

    @property
    def held(self) -> int:
        """Requests being held by `set_latency` right now."""
        with self._lock:
            return self._held

    def block_chat(self, chat_id: str) -> None:
        """The user of `chat_id` blocked the bot: 403 from now on."""
        with self._lock:
            self._blocked.add(chat_id)

    def mark_chat_missing(self, chat_id: str) -> None:
        """`chat_id` is no chat the bot knows: 400 "Bad Request: chat not found"."""
        with self._lock:
            self._missing.add(chat_id)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._latency_s = 0.0
            self._blocked.clear()
            self._missing.clear()
            self._released.set()

    def stop(self) -> None:
        self._released.set()
        super().stop()

    # ------------------------------------------------------------------ answering
    def answer(self, http_method: str, target: str, content_type: str, body: bytes) -> Answer:
        """The answer to one request; called from the handler threads."""
        with self._lock:
            latency = self._latency_s
            self._held += latency > 0
        if latency > 0:
            self._released.wait(latency)
            with self._lock:
                self._held -= 1
        try:
            result = self._dispatch(http_method, target, content_type, body)
        except _RawAnswer as raw:
            return Answer(raw.status, raw.body, content_type="text/html")
        except ApiError as error:
            headers = {}
            if error.retry_after is not None:
                headers["Retry-After"] = str(error.retry_after)
            return Answer(error.status, json.dumps(error.body()).encode(), headers=headers)
        return Answer(200, json.dumps({"ok": True, "result": result}).encode())

    def _dispatch(self, http_method: str, target: str, content_type: str, body: bytes) -> Any:
        parts = urlsplit(target)
        path = _PATH.fullmatch(parts.path)
        if path is None or not _TOKEN_SHAPE.fullmatch(path["token"]):
            raise ApiError(404, "Not Found")
        params = _params(parts.query, content_type, body)
        with self._lock:
            self._calls.append(ApiCall(http_method, path["method"], params, content_type))
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            if fault.raw_body is not None:
                raise _RawAnswer(fault.status, fault.raw_body)
            raise ApiError(fault.status, fault.description, fault.retry_after)
        if path["token"] != self.token:
            raise ApiError(401, "Unauthorized")
        method = path["method"].lower()  # Bot API method names are case-insensitive
        if method == "getme":
            return self._me()
        if method == "sendmessage":
            return self._send_message(params)
        raise ApiError(404, "Not Found: method not found")

    def _me(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "JadeTrade Test",
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = "" if params.get("chat_id") is None else str(params["chat_id"])
        text = params.get("text")
        text = "" if text is None else str(text)
        if not chat_id:
            raise ApiError(400, "Bad Request: chat_id is empty")
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_MESSAGE_LENGTH:
            raise ApiError(400, "Bad Request: message is too long")
        options = params.get("link_preview_options")
        if isinstance(options, str):
            try:
                options = json.loads(options)
            except ValueError:
                options = None
            if not isinstance(options, dict):
                raise ApiError(400, "Bad Request: can't parse link preview options JSON object")
        chat = _chat(chat_id)
        with self._lock:
            if chat is None or chat_id in self._missing:
                raise ApiError(400, "Bad Request: chat not found")
            if chat_id in self._blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            message_id = self._next_message_id.get(chat_id, 1)
            self._next_message_id[chat_id] = message_id + 1
            self._messages.append((chat_id, text))
        return {
            "message_id": message_id,
            "from": {
                "id": self.bot_id,
                "is_bot": True,
                "first_name": "JadeTrade Test",
                "username": self.username,
            },
            "chat": chat,
            "date": int(time.time()),
            "text": text,
        }


class _RawAnswer(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _params(query: str, content_type: str, body: bytes) -> dict[str, Any]:
    """Request parameters: the query string, then the body (JSON or form-encoded) over it."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return params
    if media_type == "application/json":
        try:
            decoded = json.loads(body)
        except ValueError:
            raise ApiError(400, "Bad Request: can't parse JSON") from None
        if not isinstance(decoded, dict):
            raise ApiError(400, "Bad Request: JSON object expected")
        params.update(decoded)
    elif media_type == "application/x-www-form-urlencoded":
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def _chat(chat_id: str) -> dict[str, Any] | None:
    """The Chat object for `chat_id`, or None for an id that can name no chat."""
    if _CHANNEL.fullmatch(chat_id):
        username = chat_id[1:]
        numeric = -1_000_000_000_000 - zlib.crc32(username.lower().encode())
        return {"id": numeric, "title": username, "username": username, "type": "channel"}
    if not _CHAT_ID.fullmatch(chat_id) or int(chat_id) == 0:
        return None
    numeric = int(chat_id)
    if numeric > 0:
        return {"id": numeric, "first_name": "Trader", "type": "private"}
    kind = "supergroup" if chat_id.startswith("-100") else "group"
    return {"id": numeric, "title": "Traders", "type": kind}
