"""Benchmark 2: alert-to-order latency with the in-process workers.

First a floor pass: 5 alerts/s for 10 s from one user, the latency of an engine with
nothing queued. Then the load pass: alerts at a fixed rate (100/s for 30 s, open loop,
bench/loadgen.py) for several
`pro` users created through the CLI against the running stack (`users create`, `tokens
issue`, `auth dev-token`), whose risk limits are raised through `PUT /api/risk-settings` so
that the daily-trade and open-position limits do not refuse the run. Per (user, symbol) the
alerts alternate a long_entry that really trades on the paper exchange (200 USDT, stop loss
3 % below the synthetic market price) and the long_exit that closes it (bench/alerts.py).

After the last alert the bench waits for the queue to drain (up to `--drain-seconds`), then
reads the engine's own timestamps from its PostgreSQL:

- alert-to-order = entry trade `real_trades.executed_at` − `trading_signals.created_at`
  (the webhook's commit), for every executed entry: p50/p95/p99/max;
- split into queue wait (first `bot_execution_logs.started_at` − created_at) and execution
  (executed_at − started_at), and per 5-second window of arrival (does a backlog build?);
- every signal's final status, and the doorbells the queue carried per signal.

Target: p99 ≤ 25 ms at 100 alerts/s.

    python bench/run.py --only alert-to-order
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import httpx
from redis.asyncio import Redis

import cpu_profile
import loadgen
from alerts import ENTRY_SYMBOLS, EntryExitCycle
from context import STREAM, Context, CpuMeter, ms, percentile
from processes import cli_json, wait

RISK_LIMITS = {"max_daily_trades": 100_000, "max_open_positions": 1000}

LATENCY_SQL = """
SELECT s.created_at,
       extract(epoch FROM t.executed_at - s.created_at) * 1000 AS total_ms,
       extract(epoch FROM l.started_at - s.created_at) * 1000 AS wait_ms,
       extract(epoch FROM t.executed_at - l.started_at) * 1000 AS exec_ms
FROM trading_signals s
JOIN real_trades t
  ON t.signal_id = s.id AND t.client_order_id = 'jt' || replace(s.id::text, '-', '') || 'e'
LEFT JOIN LATERAL (
  SELECT min(started_at) AS started_at FROM bot_execution_logs WHERE signal_id = s.id
) l ON true
WHERE s.user_id = ANY($1) AND s.signal_type = 'long_entry' AND t.executed_at IS NOT NULL
"""


async def _make_user(ctx: Context, i: int, tag: str) -> dict[str, str]:
    user = await cli_json(
        ctx.children,
        ctx.engine,
        "users",
        "create",
        "--email",
        f"bench-{tag}-{i}@bench.local",
        "--tier",
        "pro",
    )
    token, access = await asyncio.gather(
        cli_json(ctx.children, ctx.engine, "tokens", "issue", user["id"], "--name", "bench"),
        cli_json(ctx.children, ctx.engine, "auth", "dev-token", user["id"]),
    )
    async with httpx.AsyncClient(base_url=ctx.engine.url, timeout=10) as client:
        answer = await client.put(
            "/api/risk-settings",
            json=RISK_LIMITS,
            headers={"Authorization": f"Bearer {access['access_token']}"},
        )
        answer.raise_for_status()
    return {"id": user["id"], "token": token["token"]}


async def prepare(ctx: Context) -> list[dict[str, str]]:
    """Create the bench users (before anything is measured: the CLI takes CPU)."""
    tag = str(int(time.time()))
    count = ctx.options.users + 1  # the first one sends the floor pass
    users = await asyncio.gather(*(_make_user(ctx, i, tag) for i in range(count)))
    return list(users)


async def _stream_length(ctx: Context) -> int:
    redis = Redis.from_url(ctx.engine.redis_url)
    try:
        return int(await redis.xlen(STREAM))
    finally:
        await redis.aclose()


async def run(ctx: Context, users: list[dict[str, str]]) -> dict[str, Any]:
    """The floor pass (a few alerts a second: the latency of an idle engine) with the first
    user, then the loaded pass with the others."""
    opts = ctx.options
    floor_users, load_users = users[:1], users[1:]
    keys = len(load_users) * len(ENTRY_SYMBOLS)
    print(
        f"\n== 2. Alert-to-order latency ({opts.alert_rate:g} alerts/s for {opts.alert_s:g} s, "
        f"{len(load_users)} pro users x {len(ENTRY_SYMBOLS)} symbols = {keys} keys, entry/exit "
        f"alternating per key; in-process workers)",
        flush=True,
    )
    await ctx.wait_quiet()
    print(f"   floor: {opts.floor_rate:g} alerts/s for {opts.floor_s:g} s, one user ...")
    floor = await _pass(ctx, floor_users, opts.floor_rate, opts.floor_s, 30.0, profile=False)
    print(f"   load: {opts.alert_rate:g} alerts/s for {opts.alert_s:g} s ...")
    load = await _pass(ctx, load_users, opts.alert_rate, opts.alert_s, opts.drain_s, profile=True)
    report_floor(floor, opts.floor_rate)
    report(load, opts.alert_rate)
    return {"floor": floor, "load": load}


async def _pass(
    ctx: Context,
    users: list[dict[str, str]],
    rate: float,
    seconds: float,
    drain_limit_s: float,
    *,
    profile: bool,
) -> dict[str, Any]:
    opts = ctx.options
    ids = [u["id"] for u in users]
    await asyncio.sleep(1.0)
    stream_before = await _stream_length(ctx)
    meter = CpuMeter(ctx.engine.server_pids)
    body = EntryExitCycle(
        [u["token"] for u in users],
        f"a2o-{int(time.time())}",
        price_seed=int(ctx.engine.env.get("PAPER_PRICE_SEED", "0")),
    )
    load = await loadgen.fixed_rate(
        "127.0.0.1",
        ctx.engine.port,
        "/api/webhooks/tradingview",
        body,
        rate=rate,
        duration_s=seconds,
        timeout_s=opts.timeout_s,
        max_connections=opts.rate_connections,
    )
    sent_done = time.monotonic()
    pending = await ctx.pending(ids)
    # From here on only the workers run: their CPU per signal is the executor's cost.
    finished_before = await ctx.finished(ids)
    drain_meter = CpuMeter(ctx.engine.server_pids)
    spy = spy_out = None
    if profile and opts.py_spy and pending:
        spy_out = ctx.workdir / "py-spy-executor.txt"
        spy = cpu_profile.start(
            ctx.children, opts.py_spy, ctx.engine.proc.pid, min(drain_limit_s, 20), spy_out
        )
    print(
        f"   sent {load.sent} alerts; {pending} signals still pending; draining up to "
        f"{drain_limit_s:g} s ...",
        flush=True,
    )
    while pending and time.monotonic() - sent_done < drain_limit_s:
        await asyncio.sleep(0.5)
        pending = await ctx.pending(ids)
    drain_s = time.monotonic() - sent_done
    drain_cpu = drain_meter.stop()
    drained = await ctx.finished(ids) - finished_before
    cpu = meter.stop()
    profile_text = None
    if spy is not None and spy_out is not None:
        await wait(spy, 60)
        profile_text = cpu_profile.summarize(spy_out)
    doorbells = await _stream_length(ctx) - stream_before

    db = await ctx.db()
    statuses = await db.fetch(
        "SELECT signal_type, status, count(*) AS n FROM trading_signals"
        " WHERE user_id = ANY($1) GROUP BY 1, 2 ORDER BY 1, 2",
        ids,
    )
    reasons = await db.fetch(
        "SELECT signal_type, status, status_reason, count(*) AS n FROM trading_signals"
        " WHERE user_id = ANY($1) AND status IN ('rejected', 'failed', 'skipped')"
        " GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 5",
        ids,
    )
    # Alerts of one (user, symbol) are sent 240 ms apart; does the engine commit them in the
    # order they were sent? (The executor runs them in commit order.)
    order = await db.fetch(
        "SELECT user_id, symbol, raw_payload->>'alert_id' AS alert_id FROM trading_signals"
        " WHERE user_id = ANY($1) ORDER BY seq",
        ids,
    )
    last_sent: dict[tuple[str, str], int] = {}
    reordered = 0
    for r in order:
        key, sent_as = (r["user_id"], r["symbol"]), int(r["alert_id"].rsplit("-", 1)[1])
        if sent_as < last_sent.get(key, -1):
            reordered += 1
        last_sent[key] = max(sent_as, last_sent.get(key, -1))
    rows = await db.fetch(LATENCY_SQL, ids)
    durations = await db.fetch(
        "SELECT duration_ms FROM bot_execution_logs WHERE user_id = ANY($1)"
        " AND status = 'completed'",
        ids,
    )
    span = await db.fetchrow(
        "SELECT min(created_at) AS first, max(processed_at) AS last, count(*) AS n"
        " FROM trading_signals WHERE user_id = ANY($1) AND processed_at IS NOT NULL",
        ids,
    )
    assert span is not None  # an aggregate always returns one row
    entries_sent = sum(r["n"] for r in statuses if r["signal_type"] == "long_entry")
    total = [float(r["total_ms"]) for r in rows]
    waits = [float(r["wait_ms"]) for r in rows if r["wait_ms"] is not None]
    execs = [float(r["exec_ms"]) for r in rows if r["exec_ms"] is not None]
    windows: dict[int, list[float]] = defaultdict(list)
    if rows:
        first = min(r["created_at"] for r in rows)
        for r in rows:
            windows[int((r["created_at"] - first).total_seconds() // 5)].append(
                float(r["total_ms"])
            )
    processed_per_s = (
        span["n"] / (span["last"] - span["first"]).total_seconds()
        if span["n"] and span["last"] > span["first"]
        else 0.0
    )

    result: dict[str, Any] = {
        "http": load.summary(),
        "entries_sent": entries_sent,
        "entries_executed": len(total),
        "alert_to_order_ms": {p: percentile(total, p) for p in (50, 95, 99)}
        | {"max": max(total, default=float("nan"))},
        "alert_to_order_all_entries_ms": {
            p: percentile(total, p, entries_sent) for p in (50, 95, 99)
        },
        "queue_wait_ms": {p: percentile(waits, p) for p in (50, 99)},
        "execution_ms": {p: percentile(execs, p) for p in (50, 99)},
        "executor_duration_ms": {
            p: percentile([float(r["duration_ms"]) for r in durations], p) for p in (50, 99)
        },
        "statuses": {f"{r['signal_type']}:{r['status']}": r["n"] for r in statuses},
        "reasons": [(r["signal_type"], r["status"], r["status_reason"], r["n"]) for r in reasons],
        "pending_at_end": pending,
        "reordered": reordered,
        "drain_s": drain_s,
        "processed_per_s": processed_per_s,
        "doorbells": doorbells,
        "windows_p50_ms": {w * 5: percentile(v, 50) for w, v in sorted(windows.items())},
        "cpu_s": cpu,
        "drained": drained,
        "drain_cpu_s": drain_cpu,
        "profile": profile_text,
    }
    return result


def report_floor(r: dict[str, Any], rate: float) -> None:
    a2o, execs = r["alert_to_order_ms"], r["execution_ms"]
    print(
        f"\n   Floor ({rate:g} alerts/s, one user): {r['entries_executed']} entries executed of "
        f"{r['entries_sent']}; alert-to-order p50 {ms(a2o[50])}, p99 {ms(a2o[99])}, max "
        f"{ms(a2o['max'])}; of which execution to fill p50 {ms(execs[50])}, p99 {ms(execs[99])}"
    )


def report(r: dict[str, Any], rate: float) -> None:
    http = r["http"]
    a2o, every = r["alert_to_order_ms"], r["alert_to_order_all_entries_ms"]
    print(f"\n   Load ({rate:g} alerts/s)")
    print(
        f"   webhook answers: {http['answered']}/{http['requests']} answered, p50 "
        f"{ms(http['p50_ms'])}, p99 {ms(http['p99_ms'])}, non-2xx {http['non_2xx']}, "
        f"errors {http['errors'] or 0}"
    )
    recorded = sum(r["statuses"].values())
    print(f"   signals recorded: {recorded} of {http['requests']} alerts sent")
    print(f"   executed entries: {r['entries_executed']} of {r['entries_sent']} recorded")
    print(
        f"   alert-to-order (executed entries): p50 {ms(a2o[50])}  p95 {ms(a2o[95])}  "
        f"p99 {ms(a2o[99])}  max {ms(a2o['max'])}"
    )
    print(
        f"   alert-to-order (all entries sent, unfinished = late): p50 {ms(every[50])}  "
        f"p95 {ms(every[95])}  p99 {ms(every[99])}"
    )
    print(
        f"     of which queue wait: p50 {ms(r['queue_wait_ms'][50])}, p99 "
        f"{ms(r['queue_wait_ms'][99])}; execution to fill: p50 {ms(r['execution_ms'][50])}, "
        f"p99 {ms(r['execution_ms'][99])}"
    )
    print(
        f"     executor time per signal (bot_execution_logs.duration_ms, entries and exits): "
        f"p50 {ms(r['executor_duration_ms'][50])}, p99 {ms(r['executor_duration_ms'][99])}"
    )
    windows = r["windows_p50_ms"]
    if windows:
        print(
            "     p50 by arrival window: "
            + ", ".join(f"{start}-{start + 5} s {ms(v)}" for start, v in windows.items())
        )
    print("   final signal status: " + ", ".join(f"{k} {v}" for k, v in r["statuses"].items()))
    for signal_type, status, reason, n in r["reasons"]:
        print(f"     {n} x {signal_type} {status}: {reason}")
    print(
        f"   alerts committed before an alert of the same user and symbol sent earlier: "
        f"{r['reordered']} (an exit committed before its entry is skipped; the next entry then "
        "finds the position open and is rejected)"
    )
    print(
        f"   signals processed {r['processed_per_s']:.1f}/s overall (arrival {rate:g}/s); queue "
        f"drained in {r['drain_s']:.1f} s after the last alert"
        + (f", {r['pending_at_end']} still pending at the deadline" if r["pending_at_end"] else "")
        + f"; {r['doorbells']} doorbells for {r['http']['requests']} alerts"
    )
    cpu = r["cpu_s"]
    print(
        f"   CPU during the pass ({cpu['wall']:.0f} s wall): engine {cpu['engine']:.1f} s, "
        f"PostgreSQL {cpu['postgres']:.1f} s, Redis {cpu['redis']:.1f} s, "
        f"generator {cpu['generator']:.1f} s"
    )
    drained, dcpu = r["drained"], r["drain_cpu_s"]
    if drained:
        print(
            f"   while draining (workers only): {drained} signals in {dcpu['wall']:.1f} s = "
            f"{drained / dcpu['wall']:.1f}/s; CPU per signal: engine "
            f"{dcpu['engine'] * 1000 / drained:.1f} ms, PostgreSQL "
            f"{dcpu['postgres'] * 1000 / drained:.1f} ms"
        )
    if r["profile"]:
        print("   py-spy, engine while the workers drained the queue:\n" + r["profile"])
    p99 = a2o[99]
    verdict = "met" if p99 <= 25 else "MISSED"
    print(f"   alert-to-order p99: {ms(p99)}  (target <= 25 ms: {verdict})")


if __name__ == "__main__":
    import sys

    import run as bench_run

    sys.exit(bench_run.main(["--only", "alert-to-order", *sys.argv[1:]]))
