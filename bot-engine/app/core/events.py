"""Real-time events: what changed and for whom, published on Redis pub/sub after the commit.

Any process may publish (the API's webhook intake, a worker's executor, the price updater);
every API replica's WebSocket hub (`app.api.websocket`) delivers what it receives to the
sockets of the user it concerns, so a dashboard sees a change whichever process made it.

Channels:
- `jadetrade:ev:user:<user_id>` — one user's signals, trades, positions and notifications;
- `jadetrade:ev:prices` — price updates, for everyone who subscribed to them.

A message is one JSON object `{"type", "ts", "data"}`, serialized once by the publisher; the
hub adds each connection's sequence number. Pub/sub is fire-and-forget: a client that was
disconnected catches up through the REST API, which is the record. Events therefore never
block or fail the work that produced them: `EventPublisher` queues them in memory (bounded)
and a background task publishes them in order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.notifications import NOTICE_STREAM, Notice
from app.logging.logger import get_logger

log = get_logger("events")

USER_CHANNEL = "jadetrade:ev:user:{user_id}"
PRICE_CHANNEL = "jadetrade:ev:prices"
# Symbols someone is watching over a WebSocket: symbol → expiry (unix seconds). The price
# updater prices them too; hubs refresh their symbols well before they expire.
WANTED_PRICES_KEY = "jadetrade:prices:wanted"
MAX_NOTICES = 100_000  # the notice stream's bound; the notifier keeps far fewer waiting

# A queued item: (channel, encoded event) to publish, or (stream, fields) to append.
_Item = tuple[str, bytes | dict[str, str]]


class EventType(StrEnum):
    SIGNAL_RECEIVED = "signal_received"
    SIGNAL_UPDATE = "signal_update"
    TRADE_EXECUTED = "trade_executed"
    TRADE_UPDATE = "trade_update"
    POSITION_UPDATE = "position_update"
    PRICE_UPDATE = "price_update"
    NOTIFICATION = "notification"


def user_channel(user_id: str) -> str:
    return USER_CHANNEL.format(user_id=user_id)


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")  # plain notation, never float
    if isinstance(value, uuid.UUID):  # asyncpg's own UUID subclass, which orjson does not know
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(event_type: EventType, data: Mapping[str, Any]) -> bytes:
    """The wire form of one event: `{"type", "ts", "data"}` (Decimals as strings)."""
    return orjson.dumps(
        {"type": event_type.value, "ts": datetime.now(UTC), "data": data},
        default=_json_default,
        option=orjson.OPT_UTC_Z,
    )


async def publish(
    redis: Redis, channel: str, event_type: EventType, data: Mapping[str, Any]
) -> None:
    """Publish one event now (the caller handles Redis errors)."""
    await redis.publish(channel, encode(event_type, data))


class EventPublisher:
    """Queues events without waiting and publishes them in order from `run()`.

    A full queue (Redis unreachable for long) drops the newest events and counts them; the
    REST API still has every change."""

    def __init__(self, redis: Redis, *, max_queued: int = 10_000, batch: int = 256) -> None:
        self.redis = redis
        self.batch = batch
        self.dropped = 0
        self.published = 0
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(max_queued)

    def emit(self, user_id: str, event_type: EventType, data: Mapping[str, Any]) -> None:
        self._put((user_channel(user_id), encode(event_type, data)))

    def emit_price(self, data: Mapping[str, Any]) -> None:
        self._put((PRICE_CHANNEL, encode(EventType.PRICE_UPDATE, data)))

    def notify(self, notice: Notice) -> None:
        """Queue a notice for the notifier worker (a stream entry, not a pub/sub message)."""
        self._put((NOTICE_STREAM, notice.fields()))

    def _put(self, item: _Item) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("events_dropped", dropped=self.dropped)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        """Publish queued events in batches (one round trip each), in the order emitted."""
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._send(batch)

    async def flush(self, timeout_s: float = 2.0) -> None:
        """Publish what is queued now (on shutdown), giving up after `timeout_s`."""
        batch: list[_Item] = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if batch:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._send(batch, retry=False)
            except TimeoutError:
                log.warning("events_not_flushed", count=len(batch))

    async def _send(self, batch: list[_Item], *, retry: bool = True) -> None:
        delay = 0.2
        while True:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for target, payload in batch:
                        if isinstance(payload, bytes):
                            pipe.publish(target, payload)
                        else:
                            pipe.xadd(target, payload,  # type: ignore[arg-type]
                                      maxlen=MAX_NOTICES, approximate=True)  # fmt: skip
                    await pipe.execute()
                self.published += len(batch)
                return
            except (RedisError, OSError) as exc:
                if not retry:
                    raise
                # Keep the order: this batch goes out before anything queued after it.
                log.warning("events_publish_failed", error_type=type(exc).__name__,
                            count=len(batch), retry_in_s=delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


SIGNAL_FIELDS = (
    "id", "seq", "signal_type", "symbol", "exchange", "status", "status_reason", "price",
    "suggested_stop_loss", "suggested_take_profit", "strategy_id", "source", "created_at",
    "processed_at",
)  # fmt: skip
TRADE_FIELDS = (
    "id", "signal_id", "position_id", "exchange", "symbol", "side", "order_type", "reduce_only",
    "status", "quantity", "price", "filled_quantity", "avg_fill_price", "fee", "fee_currency",
    "realized_pnl", "client_order_id", "exchange_order_id", "executed_at", "created_at",
)  # fmt: skip
POSITION_FIELDS = (
    "id", "exchange", "symbol", "side", "status", "quantity", "entry_price", "current_price",
    "leverage", "stop_loss", "take_profit", "unrealized_pnl", "realized_pnl", "margin",
    "liquidation_price", "signal_id", "opened_at", "closed_at",
)  # fmt: skip


def signal_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """A signal as `GET /api/signals/{id}` shows it (without the raw alert)."""
    return {name: row[name] for name in SIGNAL_FIELDS}


def trade_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """A trade as `GET /api/trades/{id}` shows it."""
    return {name: row[name] for name in TRADE_FIELDS}


def position_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """A position as `GET /api/positions/{id}` shows it."""
    return {name: row[name] for name in POSITION_FIELDS}
