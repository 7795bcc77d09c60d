"""The embedded stack: start, reuse by a second process, stop only what you started, keep data."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from app.core.database import ensure_database, to_libpq_url
from app.embedded import postgres, redis
from app.embedded.ports import free_port
from app.embedded.stack import LocalStack


async def test_reuse_stop_and_persistence(tmp_path: Path) -> None:
    first = LocalStack(tmp_path, free_port(), free_port())
    urls = first.up()
    try:
        assert first.started_anything
        second = LocalStack(tmp_path, free_port(), free_port())  # other ports: must not matter
        assert second.up() == urls
        assert not second.started_anything
        second.down()  # started nothing, stops nothing
        assert first.running() == urls

        await ensure_database(urls.database_url)
        conn = await asyncpg.connect(to_libpq_url(urls.database_url))
        await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
        await conn.close()
        client = aioredis.Redis.from_url(urls.redis_url)
        await client.set("kept", "yes")
        await client.aclose()
    finally:
        first.down()
    assert postgres.read_running(tmp_path / "pgdata") is None
    assert redis.read_running(tmp_path / "redis") is None

    restarted = LocalStack(tmp_path, free_port(), free_port())
    urls = restarted.up()
    try:
        conn = await asyncpg.connect(to_libpq_url(urls.database_url))
        assert await conn.fetchval("SELECT v FROM kept") == "still here"
        await conn.close()
        client = aioredis.Redis.from_url(urls.redis_url)
        assert await client.get("kept") == b"yes"
        await client.aclose()
    finally:
        restarted.down()
