"""Fixed-window rate limits in Redis, shared by every API replica.

One INCR per request on a key that names the window; the key expires with its window. If
Redis is unreachable the limit is not enforced (an alert must not be lost because the rate
limiter is down) and the caller is told so it can log it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int
    enforced: bool = True


def _window(bucket: str, window_s: int, now: float) -> tuple[str, int]:
    """The key of `bucket`'s current window, and the seconds until the next one starts."""
    window = int(now // window_s)
    return f"jadetrade:rl:{bucket}:{window}", max(1, int((window + 1) * window_s - now + 0.999))


async def hit(redis: Redis, bucket: str, limit: int, window_s: int = 60) -> Verdict:
    """Count one request in `bucket`; allowed while the window's count is within `limit`."""
    key, retry_after = _window(bucket, window_s, time.time())
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_s + 1)
            count, _ = await pipe.execute()
    except RedisError:
        return Verdict(allowed=True, retry_after_s=0, enforced=False)
    return Verdict(allowed=int(count) <= limit, retry_after_s=retry_after)


async def check(redis: Redis, bucket: str, limit: int, window_s: int = 60) -> Verdict:
    """Whether `bucket` is still within `limit` this window, without counting a request."""
    key, retry_after = _window(bucket, window_s, time.time())
    try:
        count = await redis.get(key)
    except RedisError:
        return Verdict(allowed=True, retry_after_s=0, enforced=False)
    return Verdict(allowed=int(count or 0) < limit, retry_after_s=retry_after)
