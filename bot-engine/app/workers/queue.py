"""The signal queue: a Redis stream with one consumer group shared by every executor.

A message is a doorbell, not the work itself: it names a signal, and the executor reads the
signal — and every earlier pending signal of the same user and symbol — from PostgreSQL.
Duplicated doorbells are therefore harmless, which is what lets the sweeper re-enqueue
anything committed but unfinished without risk. Messages of crashed consumers are reclaimed
with XAUTOCLAIM; a message delivered too often goes to the dead-letter stream.

Only Redis ≤ 6.2 commands are used (ElastiCache, Valkey and the embedded server alike).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

STREAM = "jadetrade:signals"
DEAD_LETTER_STREAM = "jadetrade:signals:dead"
GROUP = "executors"
# Bound the stream; acknowledged doorbells are worthless and the sweeper restores lost ones.
MAX_STREAM_LENGTH = 100_000


@dataclass(frozen=True)
class Doorbell:
    message_id: bytes
    signal_id: uuid.UUID
    user_id: str
    symbol: str
    deliveries: int = 1


async def enqueue(
    redis: Redis,
    signal_id: uuid.UUID,
    user_id: str,
    symbol: str,
    *,
    announce: tuple[str, bytes] | None = None,
) -> None:
    """Ring the doorbell of a committed signal. `announce` (channel, message) is published
    first, on the same connection: every subscriber sees it before any event of the
    signal's execution, which can only start once the doorbell is in the stream."""
    fields = {"signal_id": str(signal_id), "user_id": user_id, "symbol": symbol}
    if announce is None:
        await redis.xadd(STREAM, fields, maxlen=MAX_STREAM_LENGTH, approximate=True)  # type: ignore[arg-type]
        return
    async with redis.pipeline(transaction=False) as pipe:
        pipe.publish(*announce)
        pipe.xadd(STREAM, fields, maxlen=MAX_STREAM_LENGTH, approximate=True)  # type: ignore[arg-type]
        await pipe.execute()


async def ensure_group(redis: Redis) -> None:
    try:
        await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _doorbell(message_id: bytes, fields: dict[bytes, bytes], deliveries: int = 1) -> Doorbell:
    return Doorbell(
        message_id=message_id,
        signal_id=uuid.UUID(fields[b"signal_id"].decode()),
        user_id=fields[b"user_id"].decode(),
        symbol=fields[b"symbol"].decode(),
        deliveries=deliveries,
    )


async def read(redis: Redis, consumer: str, *, count: int, block_ms: int) -> list[Doorbell]:
    """New doorbells for this consumer (blocks up to `block_ms`)."""
    reply: Any = await redis.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=count, block=block_ms)
    if not reply:
        return []
    _stream, messages = reply[0]
    return [_doorbell(mid, fields) for mid, fields in messages if fields]


async def reclaim(
    redis: Redis, consumer: str, *, min_idle_ms: int, count: int = 100
) -> list[Doorbell]:
    """Doorbells another consumer took but did not acknowledge in `min_idle_ms` (it died)."""
    reply: Any = await redis.xautoclaim(
        STREAM, GROUP, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
    )
    messages = reply[1]
    if not messages:
        return []
    pending: Any = await redis.xpending_range(
        STREAM,
        GROUP,
        min=messages[0][0],
        max=messages[-1][0],
        count=len(messages) + 10,
        consumername=consumer,
    )
    deliveries = {entry["message_id"]: int(entry["times_delivered"]) for entry in pending}
    return [_doorbell(mid, fields, deliveries.get(mid, 1)) for mid, fields in messages if fields]


async def ack(redis: Redis, *message_ids: bytes) -> None:
    if message_ids:
        await redis.xack(STREAM, GROUP, *message_ids)


async def dead_letter(redis: Redis, bell: Doorbell, reason: str) -> None:
    await redis.xadd(
        DEAD_LETTER_STREAM,
        {
            "signal_id": str(bell.signal_id),
            "user_id": bell.user_id,
            "symbol": bell.symbol,
            "reason": reason,
            "deliveries": str(bell.deliveries),
        },
        maxlen=MAX_STREAM_LENGTH,
        approximate=True,
    )
    await ack(redis, bell.message_id)


async def depth(redis: Redis) -> int:
    """Messages delivered to no consumer yet plus those not acknowledged."""
    try:
        groups: Any = await redis.xinfo_groups(STREAM)
    except ResponseError:
        return 0
    for group in groups:
        if group["name"] in (GROUP, GROUP.encode()):
            lag = group.get("lag")
            return int(group["pending"]) + (int(lag) if lag is not None else 0)
    return 0
