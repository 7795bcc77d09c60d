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


async def hit(redis: Redis, bucket: str, limit: int, window_s: int = 60) -> Verdict:
    now = time.time()
    window = int(now // window_s)
    key = f"jadetrade:rl:{bucket}:{window}"
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_s + 1)
            count, _ = await pipe.execute()
    except RedisError:
        return Verdict(allowed=True, retry_after_s=0, enforced=False)
    retry_after = max(1, int((window + 1) * window_s - now + 0.999))
    return Verdict(allowed=int(count) <= limit, retry_after_s=retry_after)
