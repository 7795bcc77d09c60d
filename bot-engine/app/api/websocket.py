"""`GET /ws/connect`: a user's live signals, trades, positions, prices and notifications.

Authentication is the REST API's: an access token, given as `?token=` (redacted from every log
line) or — better, since it stays out of proxy logs — as the `Sec-WebSocket-Protocol` pair
`bearer, <token>`. A bad or expired token closes the socket with 4001.

The client speaks JSON objects `{"type": "subscribe" | "unsubscribe" | "ping" | "pong",
"topic": ...}`; the protocol is documented, with examples, in docs/api/websocket.md.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from app.config import Settings
from app.core.auth import AccessClaims, AccessTokenVerifier
from app.core.errors import AppError
from app.core.pg import Pool
from app.core.ws_hub import (
    CLOSE_FORBIDDEN,
    CLOSE_HEARTBEAT,
    CLOSE_TOO_MANY,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
    Connection,
    FanoutUnavailable,
    Hub,
    control,
)
from app.exchanges.symbols import canonical_symbol
from app.logging.logger import get_logger

router = APIRouter(tags=["websocket"])
log = get_logger("websocket")

TOPICS = ("prices", "positions", "trades", "signals")
MAX_TOPICS = 50
MAX_MESSAGE_BYTES = 4096
BEARER_PROTOCOL = "bearer"
# Set by the engine's uvicorn protocol (app.api.ws_server); other servers go without them.
ABORT_EXTENSION = "jadetrade.abort"
SEND_NOWAIT_EXTENSION = "jadetrade.send_nowait"


def _credentials(websocket: WebSocket) -> tuple[str | None, str | None]:
    """(token, subprotocol to accept): from `Sec-WebSocket-Protocol: bearer, <token>`, else
    from `?token=`."""
    offered = websocket.scope.get("subprotocols") or []
    if BEARER_PROTOCOL in offered:
        rest = [p for p in offered if p != BEARER_PROTOCOL]
        return (rest[0] if rest else None), BEARER_PROTOCOL
    return websocket.query_params.get("token"), None


def topic_of(raw: object) -> str:
    """A subscribable topic in its canonical form; ValueError naming what is wrong."""
    if not isinstance(raw, str) or not raw:
        raise ValueError("`topic` must be a non-empty string")
    if raw in TOPICS:
        return raw
    name, sep, symbol = raw.partition(":")
    if sep and name == "prices":
        try:
            return "prices:" + canonical_symbol(symbol)
        except ValueError:
            raise ValueError(f"{symbol!r} is not a trading symbol") from None
    raise ValueError(f"unknown topic {raw!r}; topics: {', '.join(TOPICS)}, prices:<SYMBOL>")


class _Session:
    """The message loop of one authenticated connection."""

    def __init__(self, websocket: WebSocket, conn: Connection, hub: Hub, settings: Settings,
                 claims: AccessClaims) -> None:  # fmt: skip
        self.websocket = websocket
        self.conn = conn
        self.hub = hub
        self.heartbeat_s = settings.WS_HEARTBEAT_S
        self.expires_at = claims.expires_at

    def reply(self, message_type: str, data: dict[str, Any] | None = None) -> None:
        self.hub.deliver(self.conn, control(message_type, data))

    def error(self, code: str, message: str, **extra: Any) -> None:
        self.reply("error", {"code": code, "message": message, **extra})

    async def run(self) -> None:
        silent_since = time.monotonic()
        pinged = False
        closed = asyncio.create_task(self.conn.closed.wait())
        try:
            while not self.conn.closed.is_set():
                until_expiry = (self.expires_at - datetime.now(UTC)).total_seconds()
                if until_expiry <= 0:
                    await self.conn.shut(CLOSE_UNAUTHORIZED, "token expired")
                    return
                wait = min(self.heartbeat_s, until_expiry)
                receive = asyncio.ensure_future(self.websocket.receive())
                done, _ = await asyncio.wait({receive, closed}, timeout=wait,
                                             return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                if receive not in done:
                    receive.cancel()
                    await asyncio.gather(receive, return_exceptions=True)
                    if closed in done:
                        return
                    if time.monotonic() - silent_since < self.heartbeat_s:
                        continue
                    if pinged:  # a whole heartbeat without a word after our ping
                        await self.conn.shut(CLOSE_HEARTBEAT, "heartbeat timeout")
                        return
                    self.reply("ping")
                    pinged = True
                    continue
                message = receive.result()
                if message["type"] == "websocket.disconnect":
                    self.conn.close_code = message.get("code")
                    return
                silent_since, pinged = time.monotonic(), False
                self.handle(message.get("text"), message.get("bytes"))
        finally:
            closed.cancel()

    def handle(self, text: str | None, data: bytes | None) -> None:
        raw = text.encode() if text is not None else data  # the limit is in bytes, not characters
        if raw is None or len(raw) > MAX_MESSAGE_BYTES:
            self.error("message_too_large", f"messages are at most {MAX_MESSAGE_BYTES} bytes")
            return
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.error("invalid_json", "the message is not valid JSON")
            return
        if not isinstance(message, dict):
            self.error("invalid_message", "a message is a JSON object with a `type`")
            return
        kind = message.get("type")
        if kind == "ping":
            self.reply("pong")
        elif kind == "pong":
            pass  # the answer to our heartbeat; hearing it is all that matters
        elif kind in ("subscribe", "unsubscribe"):
            self._change_topic(kind, message.get("topic"))
        else:
            self.error("unknown_type", f"unknown message type {kind!r}; types: subscribe, "
                       "unsubscribe, ping, pong", field="type")  # fmt: skip

    def _change_topic(self, kind: str, raw: object) -> None:
        try:
            topic = topic_of(raw)
        except ValueError as exc:
            self.error("unknown_topic", str(exc), field="topic", topic=raw)
            return
        topics = self.conn.topics
        if kind == "subscribe":
            if topic not in topics and len(topics) >= MAX_TOPICS:
                self.error("too_many_topics", f"at most {MAX_TOPICS} topics per connection",
                           field="topic", topic=topic)  # fmt: skip
                return
            topics.add(topic)
            self.hub.topics_changed(self.conn, subscribed=topic)
            self.reply("subscribed", {"topic": topic})
        else:
            topics.discard(topic)
            self.hub.topics_changed(self.conn)
            self.reply("unsubscribed", {"topic": topic})


async def _user_exists(pool: Pool, user_id: str) -> bool:
    async with pool.acquire() as db:
        return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", user_id))


@router.websocket("/ws/connect")
async def connect(websocket: WebSocket) -> None:
    """Live updates of the authenticated user; see docs/api/websocket.md."""
    state = websocket.app.state
    hub: Hub = state.hub
    settings: Settings = state.settings
    verifier: AccessTokenVerifier = state.verifier
    token, subprotocol = _credentials(websocket)
    await websocket.accept(subprotocol=subprotocol)
    try:
        claims = await verifier.verify(token or "")
    except AppError as exc:
        log.info("ws_refused", reason=exc.code)
        await websocket.close(CLOSE_UNAUTHORIZED, exc.message[:120])
        return
    structlog.contextvars.bind_contextvars(user_id=claims.sub)
    if not await _user_exists(state.pg, claims.sub):
        await websocket.close(CLOSE_FORBIDDEN, "no engine account exists for this token")
        return
    if not hub.has_room(claims.sub):
        await websocket.close(CLOSE_TOO_MANY, f"at most {hub.max_per_user} connections per user")
        return

    async def send(text: str) -> None:
        await websocket.send_text(text)

    async def close(code: int, reason: str) -> None:
        await websocket.close(code, reason)

    extensions = websocket.scope.get("extensions") or {}
    conn = Connection(
        user_id=claims.sub,
        send=send,
        close=close,
        queue_size=settings.WS_SEND_QUEUE_SIZE,
        abort=extensions.get(ABORT_EXTENSION),
        send_nowait=extensions.get(SEND_NOWAIT_EXTENSION),
    )
    try:
        await hub.register(conn)
    except FanoutUnavailable:
        await conn.shut(CLOSE_TRY_AGAIN, "real-time updates are unavailable, try again")
        return
    session = _Session(websocket, conn, hub, settings, claims)
    try:
        session.reply(
            "connected",
            {
                "user_id": claims.sub,
                "connection_id": conn.id,
                "topics": [*TOPICS, "prices:<SYMBOL>"],
                "heartbeat_s": settings.WS_HEARTBEAT_S,
                "expires_at": claims.expires_at.isoformat(),
            },
        )
        await session.run()
    except WebSocketDisconnect as exc:
        conn.close_code = exc.code
    finally:
        await hub.unregister(conn)
        await conn.stop()
