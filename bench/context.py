"""What every benchmark of one run shares: the running engine and baseline, the options, the
load tool, and a few measurements of the engine's state (CPU used, queue backlog)."""

from __future__ import annotations

import asyncio
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from redis.asyncio import Redis

from processes import Children, Engine

STREAM, GROUP = "jadetrade:signals", "executors"  # app/workers/queue.py
PENDING = ("queued", "executing")  # app/models/signal.py PENDING_STATUSES


@dataclass
class Options:
    connections: int = 32
    throughput_s: float = 15.0
    warmup_s: float = 3.0
    rate: float = 300.0
    rate_s: float = 15.0
    rate_connections: int = 64  # cap of the fixed-rate generator's connections
    py_spy: str | None = None  # path of py-spy: sample the engine (bench/cpu_profile.py)
    floor_rate: float = 5.0
    floor_s: float = 10.0
    alert_rate: float = 100.0
    alert_s: float = 30.0
    drain_s: float = 60.0
    users: int = 4
    timeout_s: float = 10.0
    sustained_rate: float = 1000.0
    sustained_s: float = 60.0


@dataclass
class Context:
    children: Children
    engine: Engine
    bare_port: int
    workdir: Path
    options: Options
    wrk: str | None  # path of wrk, None: the Python generator does the throughput pass too
    bare_pid: int = 0
    results: dict[str, Any] = field(default_factory=dict)
    _db: asyncpg.Connection | None = None

    async def db(self) -> asyncpg.Connection:
        if self._db is None:
            self._db = await asyncpg.connect(self.engine.database_dsn)
        return self._db

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def pending(self, user_ids: list[str]) -> int:
        db = await self.db()
        count: int = await db.fetchval(
            "SELECT count(*) FROM trading_signals WHERE user_id = ANY($1) AND status = ANY($2)",
            user_ids,
            list(PENDING),
        )
        return count

    async def finished(self, user_ids: list[str]) -> int:
        """Signals of `user_ids` no longer pending (executed, skipped, rejected, failed)."""
        db = await self.db()
        count: int = await db.fetchval(
            "SELECT count(*) FROM trading_signals WHERE user_id = ANY($1) AND NOT status = ANY($2)",
            user_ids,
            list(PENDING),
        )
        return count

    async def settle(self, user_ids: list[str], limit_s: float = 60.0) -> float:
        """Wait until no new signal of `user_ids` has arrived for a second: the engine may
        still be working through requests whose client gave up. Seconds waited."""
        db = await self.db()
        sql = "SELECT count(*) FROM trading_signals WHERE user_id = ANY($1)"
        began = time.monotonic()
        count = await db.fetchval(sql, user_ids)
        while time.monotonic() - began < limit_s:
            await asyncio.sleep(1.0)
            now = await db.fetchval(sql, user_ids)
            if now == count:
                break
            count = now
        return time.monotonic() - began - 1.0

    async def wait_quiet(self, limit_s: float = 30.0, busy_share: float = 0.25) -> float:
        """Wait until the engine process uses less than `busy_share` of a core over a
        second (it may still be answering requests whose client gave up, or logging their
        disconnects). Seconds waited."""
        began = time.monotonic()
        proc = psutil.Process(self.engine.proc.pid)

        def used() -> float:
            times = proc.cpu_times()
            return float(times.user + times.system)

        before = used()
        while time.monotonic() - began < limit_s:
            await asyncio.sleep(1.0)
            now = used()
            if now - before < busy_share:
                break
            before = now
        return time.monotonic() - began - 1.0

    async def discard_backlog(self, user_ids: list[str]) -> tuple[int, float]:
        """Once the engine has stopped taking in signals of `user_ids` (`settle`), end their
        still-queued signals as skipped and move the consumer group past their doorbells, so
        that one pass's backlog does not take CPU from the next (signals already executing
        finish normally), then wait for the engine to go quiet. How many signals were
        discarded, and how long the engine stayed busy after the pass."""
        busy_s = await self.settle(user_ids)
        db = await self.db()
        # Rows a worker is claiming right now are skipped, not waited for: waiting on them while
        # holding others could deadlock with its finish-and-claim, which locks two rows. Those
        # signals execute normally; the rounds repeat while queued rows are still found.
        discarded = 0
        for _ in range(20):
            done = await db.fetchval(
                "WITH doomed AS (SELECT id FROM trading_signals"
                " WHERE user_id = ANY($1) AND status = 'queued'"
                " ORDER BY id FOR UPDATE SKIP LOCKED),"
                " ended AS (UPDATE trading_signals s SET status = 'skipped', processed_at = now(),"
                " status_reason = 'bench: backlog discarded between passes'"
                " FROM doomed WHERE s.id = doomed.id RETURNING 1)"
                " SELECT count(*) FROM ended",
                user_ids,
            )
            discarded += int(done)
            if not done:
                break
        redis = Redis.from_url(self.engine.redis_url)
        try:
            await redis.xgroup_setid(STREAM, GROUP, "$")
        finally:
            await redis.aclose()
        # Let signals that were mid-execution finish before the next pass starts.
        deadline = time.monotonic() + 10
        while await self.pending(user_ids) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        return discarded, busy_s + await self.wait_quiet()


class CpuMeter:
    """CPU seconds used during a pass by each group of server processes (`groups()` lists
    their pids; asked again at the end so that processes started meanwhile, such as new
    PostgreSQL backends, count from zero) and by the load generator (wrk: a child of this
    script reaped in the pass; the Python generator: this process)."""

    def __init__(self, groups: Callable[[], dict[str, list[int]]]) -> None:
        self.groups = groups
        self.start = self._sample()
        self.rusage = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        self.wall = time.perf_counter()

    def _sample(self) -> dict[int, float]:
        found: dict[int, float] = {}
        for pids in self.groups().values():
            for pid in pids:
                try:
                    times = psutil.Process(pid).cpu_times()
                except psutil.Error:
                    continue
                found[pid] = times.user + times.system
        return found

    def stop(self) -> dict[str, float]:
        end = self._sample()
        used: dict[str, float] = {}
        for group, pids in self.groups().items():
            used[group] = sum(end.get(p, 0.0) - self.start.get(p, 0.0) for p in pids)
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        used["generator"] = sum(
            (now.ru_utime + now.ru_stime) - (before.ru_utime + before.ru_stime)
            for now, before in ((me, self.rusage[0]), (kids, self.rusage[1]))
        )
        used["wall"] = time.perf_counter() - self.wall
        return used


def percentile(values: list[float], p: float, total: int | None = None) -> float:
    """Nearest-rank percentile; with `total` > len(values) the missing ones count as +inf."""
    n = len(values) if total is None else total
    if n == 0:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * n))
    return ordered[rank - 1] if rank <= len(ordered) else math.inf


def ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "unfinished"
    return f"{value:,.1f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"
