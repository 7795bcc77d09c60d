"""Redis client (created by the app's lifespan, never at import) and the `RedisDep` dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis


def create_redis(url: str) -> Redis:
    return Redis.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        protocol=2,  # ElastiCache/Valkey and Redis 6.2 alike; the engine needs nothing of RESP3
    )


async def get_redis(request: Request) -> Redis:  # async: no thread-pool hop per request
    redis: Redis = request.app.state.redis
    return redis


RedisDep = Annotated[Redis, Depends(get_redis)]
