"""Benchmark 5: sustained intake — one API process and one worker process, 1,000 alerts/s
for 60 s.

The deployment's shape (bench/split_stack.py): `jadetrade serve --no-workers` and one
`jadetrade worker` on a stack of their own, with default settings (the worker executes with
`WORKER_CONCURRENCY` 4). The open-loop generator (bench/loadgen.py) sends the exit mix of
benchmark 1 (bench/alerts.py `exit_mix`: exits with no position open, which the worker
checks against the book and skips), each alert due at `start + i / rate`, latency counted
from when it was due. Every second the bench reads the backlog: signals of the run still
`queued` or `executing` in PostgreSQL, which is the queue whatever Redis holds. After the
pass it waits up to `--drain-seconds` for the backlog to empty.

Reported: answered per second, non-2xx answers and socket errors, latency p50/p99/max, the
backlog every 5 s, its maximum and how long it took to drain, the signals' final statuses, and
CPU seconds of the API process, the worker, PostgreSQL, Redis and the generator. The target
is no error and a bounded queue: the backlog must not grow with time.

    python bench/run.py --only sustained [--sustained-rate 1000 --sustained-seconds 60]
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg

import loadgen
from alerts import exit_mix
from context import PENDING, Context, CpuMeter, ms
from split_stack import SplitStack, start_stack, start_worker

PATH = "/api/webhooks/tradingview"
SAMPLE_S = 1.0
_PENDING_SQL = "SELECT count(*) FROM trading_signals WHERE user_id = $1 AND status = ANY($2)"


def local_dir(workdir: Path) -> Path:
    """This benchmark's data directory (PostgreSQL, Redis) inside the run's workdir."""
    return workdir / "sustained" / "local"


async def _sample_backlog(
    db: asyncpg.Connection, user_id: str, began: float, series: list[tuple[float, int]]
) -> None:
    while True:
        pending = await db.fetchval(_PENDING_SQL, user_id, list(PENDING))
        series.append((time.perf_counter() - began, int(pending)))
        await asyncio.sleep(SAMPLE_S)


def _groups(stack: SplitStack) -> dict[str, list[int]]:
    found = stack.api.server_pids()
    assert stack.worker is not None
    return {
        "api": found["engine"],
        "worker": [stack.worker.pid],
        "postgres": found["postgres"],
        "redis": found["redis"],
    }


async def _pass(ctx: Context, stack: SplitStack) -> dict[str, Any]:
    opts = ctx.options
    db = await asyncpg.connect(stack.api.database_dsn)
    series: list[tuple[float, int]] = []
    meter = CpuMeter(lambda: _groups(stack))
    began = time.perf_counter()
    sampler = asyncio.create_task(_sample_backlog(db, stack.user_id, began, series))
    try:
        load = await loadgen.fixed_rate(
            "127.0.0.1",
            stack.api.port,
            PATH,
            exit_mix(stack.webhook_token, "sustained"),
            rate=opts.sustained_rate,
            duration_s=opts.sustained_s,
            timeout_s=opts.timeout_s,
            max_connections=opts.rate_connections,
        )
        load_end = time.perf_counter() - began
        drained_at = None
        while time.perf_counter() - began < load_end + opts.drain_s:
            if series and series[-1][0] > load_end and series[-1][1] == 0:
                drained_at = series[-1][0]
                break
            await asyncio.sleep(SAMPLE_S / 4)
        cpu = meter.stop()
    finally:
        sampler.cancel()
    statuses = dict(
        await db.fetch(
            "SELECT status, count(*) FROM trading_signals WHERE user_id = $1 GROUP BY status",
            stack.user_id,
        )
    )
    await db.close()
    summary = load.summary()
    during = [n for t, n in series if t <= load_end]
    half = len(during) // 2
    return {
        "rate": opts.sustained_rate,
        "seconds": opts.sustained_s,
        "load": summary,
        "errors": dict(load.errors),
        "over_3s": sum(1 for v in load.latencies_ms if v > 3000)
        + load.errors["timeout"]
        + load.errors["unsent"],
        "backlog": series,
        "backlog_max": max(during, default=0),
        "backlog_max_first_half": max(during[:half], default=0),
        "backlog_max_second_half": max(during[half:], default=0),
        "backlog_at_end_of_load": during[-1] if during else 0,
        "load_s": load_end,
        "drain_s": None if drained_at is None else drained_at - load_end,
        "statuses": statuses,
        "cpu_s": cpu,
    }


def _report(r: dict[str, Any]) -> None:
    load, cpu = r["load"], r["cpu_s"]
    print(
        f"   sent {load['requests']:,}, answered {load['answered']:,} "
        f"({load['rps']:,.0f}/s over {r['load_s']:.1f} s), non-2xx {load['non_2xx']}, "
        f"errors {r['errors'] or 0}, answered after 3 s or never {r['over_3s']}"
    )
    print(
        f"   latency from due: p50 {ms(load['p50_ms'])}, p99 {ms(load['p99_ms'])}, "
        f"max {ms(load['max_ms'])}"
    )
    every5 = [f"{t:.0f}s {n:,}" for t, n in r["backlog"] if round(t) % 5 == 0]
    print("   backlog (queued or executing signals): " + ", ".join(dict.fromkeys(every5)))
    drained = "not drained" if r["drain_s"] is None else f"drained {r['drain_s']:.1f} s after"
    print(
        f"   backlog max {r['backlog_max']:,} (first half {r['backlog_max_first_half']:,}, "
        f"second half {r['backlog_max_second_half']:,}); at the end of the load "
        f"{r['backlog_at_end_of_load']:,}, {drained}"
    )
    print(f"   final statuses: {r['statuses']}")
    wall = cpu["wall"]
    shares = ", ".join(f"{k} {v:.1f} s ({v / wall:.0%})" for k, v in cpu.items() if k != "wall")
    print(f"   CPU over {wall:.0f} s: {shares}")
    verdict = _verdict(r)
    print(f"   target (no error, bounded queue): {verdict}")


def _verdict(r: dict[str, Any]) -> str:
    load = r["load"]
    clean = load["non_2xx"] == 0 and not r["errors"] and load["answered"] == load["requests"]
    # Bounded: the backlog of the second half is no larger than the first half's, and
    # what is left at the end is under a second of arrivals.
    bounded = (
        r["backlog_max_second_half"] <= max(r["backlog_max_first_half"], r["rate"])
        and r["backlog_at_end_of_load"] <= r["rate"]
    )
    if clean and bounded:
        return "met"
    reasons = []
    if not clean:
        reasons.append("errors or unanswered alerts")
    if not bounded:
        reasons.append("the backlog grew")
    return "missed: " + ", ".join(reasons)


async def run(ctx: Context) -> dict[str, Any]:
    opts = ctx.options
    print(
        f"\n== 5. Sustained intake: one API process + one worker, "
        f"{opts.sustained_rate:g} alerts/s for {opts.sustained_s:g} s",
        flush=True,
    )
    workdir = local_dir(ctx.workdir).parent
    workdir.mkdir(parents=True, exist_ok=True)
    await ctx.wait_quiet()
    print("   starting jadetrade serve --no-workers and jadetrade worker ...", flush=True)
    stack = await start_stack(ctx, workdir, "sustained", {})
    try:
        await start_worker(ctx, stack, workdir, "sustained")
        result = await _pass(ctx, stack)
        result["verdict"] = _verdict(result)
    finally:
        if stack.worker is not None:
            ctx.children.stop(stack.worker)
        ctx.children.stop(stack.api.proc)
    _report(result)
    return result
