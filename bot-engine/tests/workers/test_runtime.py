"""The worker runtime: heartbeats in Redis, crash restarts, clean stop; `jadetrade worker`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.core.redis import create_redis
from app.embedded.ports import free_port
from app.workers.runtime import HEARTBEAT_TTL_S, WorkerRuntime, live_workers
from tests.conftest import CapturedLogs


@pytest.fixture
async def redis(settings: Settings, clean_state: None) -> AsyncIterator[Redis]:
    assert settings.REDIS_URL is not None
    client = create_redis(settings.REDIS_URL.get_secret_value())
    yield client
    await client.aclose()


async def _until(condition: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_heartbeat_announces_and_stop_withdraws(redis: Redis) -> None:
    runtime = WorkerRuntime(redis, role="worker")
    await runtime.start()
    try:
        (seen,) = await live_workers(redis)
        assert seen["pid"] == os.getpid()
        assert seen["role"] == "worker"
        ttl = await redis.ttl(f"jadetrade:workers:{runtime.worker_id}")
        assert 0 < ttl <= HEARTBEAT_TTL_S
    finally:
        await runtime.stop()
    assert await live_workers(redis) == []


async def test_a_crashing_worker_is_restarted(redis: Redis) -> None:
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("transient failure")
        await asyncio.Event().wait()

    runtime = WorkerRuntime(redis, role="worker")
    await runtime.start()
    runtime.add("flaky", flaky)

    async def restarted_twice() -> bool:
        return len(runs) >= 3

    try:
        await _until(restarted_twice)
        with pytest.raises(ValueError, match="registered twice"):
            runtime.add("flaky", flaky)
    finally:
        await runtime.stop()


async def test_worker_process_runs_and_stops_on_sigterm(
    settings: Settings, redis: Redis, captured_logs: CapturedLogs
) -> None:
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.DATABASE_URL.get_secret_value(),
        "REDIS_URL": settings.REDIS_URL.get_secret_value(),
        "LOCAL_DIR": str(settings.LOCAL_DIR),
        "WORKER_METRICS_PORT": str(metrics_port := free_port()),
    }
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "jadetrade"),
        "worker",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:

        async def announced() -> bool:
            return any(w["pid"] == proc.pid for w in await live_workers(redis))

        await _until(announced, within_s=60)
        # The worker serves its own metrics (alert-to-order, orders, exchange errors, …).
        async with httpx.AsyncClient() as client:
            scraped = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scraped.status_code == 200
        families = {
            line.split()[2] for line in scraped.text.splitlines() if line.startswith("# TYPE")
        }
        assert {"jadetrade_alert_to_order_seconds", "jadetrade_orders_total",
                "jadetrade_exchange_errors_total", "jadetrade_executions_in_flight",
                "jadetrade_risk_rejections_total"} <= families  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        raw, _ = await asyncio.wait_for(proc.communicate(), 30)
        output = raw.decode()
        captured_logs.add(output)
    assert proc.returncode == 0, output
    assert not any(w["pid"] == proc.pid for w in await live_workers(redis))
