"""Worker runtime: runs the engine's background workers as asyncio tasks, in the API process
(`jadetrade serve`) or in a process of their own (`jadetrade worker`), and stops them cleanly.

Each runtime announces itself in Redis with a heartbeat key that expires when the process
dies, so operators (and later the queue consumers' reclaim logic) can tell live workers from
dead ones: `jadetrade:workers:<worker_id>` → JSON {pid, host, started_at, beat_at}.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import orjson
from redis.asyncio import Redis

from app.logging.logger import get_logger

log = get_logger("worker")

HEARTBEAT_KEY = "jadetrade:workers:{worker_id}"
HEARTBEAT_INTERVAL_S = 10.0
HEARTBEAT_TTL_S = 30

WorkerFn = Callable[[], Awaitable[None]]


class WorkerRuntime:
    def __init__(self, redis: Redis, *, role: str) -> None:
        self.redis = redis
        self.role = role
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started_at = datetime.now(UTC)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._on_stop: list[Callable[[], Awaitable[None]]] = []

    def add(self, name: str, worker: WorkerFn) -> None:
        """Register a worker coroutine; it is started by `start()`."""
        if name in self._tasks:
            raise ValueError(f"worker {name!r} registered twice")
        self._tasks[name] = asyncio.create_task(self._supervise(name, worker), name=name)

    def on_stop(self, cleanup: Callable[[], Awaitable[None]]) -> None:
        """Run `cleanup` after the workers have stopped (close what they shared)."""
        self._on_stop.append(cleanup)

    async def start(self) -> None:
        await self._beat()
        self.add("heartbeat", self._heartbeat_loop)
        log.info(
            "workers_started", worker_id=self.worker_id, role=self.role, workers=sorted(self._tasks)
        )

    async def stop(self, timeout_s: float = 15.0) -> None:
        """Cancel every worker and wait for them. A cancellation can be lost on Python 3.11
        (asyncio.wait_for inside redis-py may swallow it), so it is repeated until each task
        has ended, for at most `timeout_s`."""
        tasks = list(self._tasks.values())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pending: set[asyncio.Task[None]] = set(tasks)
        while pending:
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=0.5)
            if pending and loop.time() > deadline:
                log.error("workers_did_not_stop", workers=sorted(t.get_name() for t in pending))
                break
        await asyncio.gather(*(t for t in tasks if t.done()), return_exceptions=True)
        self._tasks.clear()
        for cleanup in self._on_stop:
            try:
                await cleanup()
            except Exception as exc:  # the rest of the shutdown still happens
                log.warning("worker_cleanup_failed", error_type=type(exc).__name__)
        self._on_stop.clear()
        try:
            await self.redis.delete(HEARTBEAT_KEY.format(worker_id=self.worker_id))
        except Exception as exc:
            log.warning("heartbeat_cleanup_failed", error_type=type(exc).__name__)
        log.info("workers_stopped", worker_id=self.worker_id)

    async def _supervise(self, name: str, worker: WorkerFn) -> None:
        """Run `worker` until cancelled; restart it with a capped backoff if it crashes."""
        delay = 0.5
        while True:
            try:
                await worker()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker_crashed", worker=name, restart_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _beat(self) -> None:
        payload = orjson.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "role": self.role,
                "started_at": self.started_at.isoformat(),
                "beat_at": datetime.now(UTC).isoformat(),
            }
        )
        await self.redis.set(
            HEARTBEAT_KEY.format(worker_id=self.worker_id), payload, ex=HEARTBEAT_TTL_S
        )

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)
            try:
                await self._beat()
            except Exception as exc:
                log.warning("heartbeat_failed", error_type=type(exc).__name__)


async def live_workers(redis: Redis) -> list[dict[str, object]]:
    """Every worker runtime whose heartbeat has not expired."""
    found: list[dict[str, object]] = []
    async for key in redis.scan_iter(match=HEARTBEAT_KEY.format(worker_id="*"), count=100):
        raw = await redis.get(key)
        if raw is not None:
            found.append(orjson.loads(raw))
    return found
