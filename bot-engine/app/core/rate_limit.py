"""Fixed-window rate limits in Redis, shared by every API replica.

One INCR per request on a key that names the window; the key expires with its window. If
Redis is unreachable the limit is not enforced (an alert must not be lost because the rate
limiter is down) and the caller is told so it can log it. A webhook's two limits (its source's
bad tokens, its token's alerts) are decided together by one script: one round trip.
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


# KEYS: the source's bad-token window, the token's alert window. ARGV: the bad-token limit
# (negative: the source is not throttled), the alert window's time to live. Returns -1 when the
# source is throttled (nothing counted), else the token's count in its window.
_ADMIT = b"""
local limit = tonumber(ARGV[1])
if limit >= 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= limit then
    return -1
end
local count = redis.call('INCR', KEYS[2])
if count == 1 then
    redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return count
"""


@dataclass(frozen=True)
class Admission:
    """Both verdicts on one webhook: its source first (`source.allowed` False: refuse before
    anything else), then its token's alert rate (counted only when the source is allowed)."""

    source: Verdict
    token: Verdict


async def admit(
    redis: Redis,
    source_bucket: str,
    source_limit: int | None,
    token_bucket: str,
    token_limit: int,
    window_s: int = 60,
) -> Admission:
    """Refuse a source with `source_limit` bad tokens this window (None: never), otherwise
    count one alert against `token_bucket`'s `token_limit`, in one round trip."""
    now = time.time()
    source_key, source_retry = _window(source_bucket, window_s, now)
    token_key, token_retry = _window(token_bucket, window_s, now)
    bad_limit = -1 if source_limit is None else source_limit
    try:
        # EVALSHA, loading the script first if this server does not know it yet.
        count = int(await redis.register_script(_ADMIT)(
            keys=[source_key, token_key], args=[bad_limit, window_s + 1]))  # fmt: skip
    except RedisError:
        unenforced = Verdict(allowed=True, retry_after_s=0, enforced=False)
        return Admission(unenforced, unenforced)
    if count < 0:
        return Admission(Verdict(False, source_retry), Verdict(True, 0))
    return Admission(Verdict(True, 0), Verdict(count <= token_limit, token_retry))
