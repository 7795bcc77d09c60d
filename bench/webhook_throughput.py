"""Benchmark 1: webhook throughput and latency, the engine against a bare FastAPI endpoint.

Both servers run in the same `make bench` run, one after the other, loaded by the same
generator with the same alert bodies (bench/alerts.py `exit_mix`, bench/webhook.lua):

1. Throughput, closed loop: `wrk -t1 -c32 -d15s` (after a 3 s warm-up) on bare, engine, the
   API process alone, and bare again (the baseline brackets the engines on a shared machine)
   — requests/s, p50/p99 latency, non-2xx answers, socket errors. Target: ≥ 70 % of bare.
2. Latency at a fixed arrival rate: 300 alerts/s for 15 s from the open-loop Python
   generator (bench/loadgen.py), latency counted from when each alert was due.
   Target: engine p99 < 50 ms.

The engine is `jadetrade run` with in-process workers: they execute the queued exits while
the webhook is under load, as they would on a single-process deployment. Between passes the
leftover queue is discarded (and its size reported) so one pass's backlog does not slow the
next. "API alone" is the deployment's API task: `jadetrade serve --no-workers` on a stack of
its own (bench/split_stack.py) with no worker running, so its passes measure intake only; its
signals stay queued.

    python bench/run.py --only throughput
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
from pathlib import Path
from typing import Any

import cpu_profile
import loadgen
from alerts import exit_mix
from context import Context, CpuMeter, Options, ms
from processes import wait
from split_stack import SplitStack, start_stack

LUA = __file__.rsplit("/", 1)[0] + "/webhook.lua"
PATH = "/api/webhooks/tradingview"
TARGET_RATIO = 0.7  # of the bare endpoint's requests/s


async def closed_pass(
    ctx: Context, port: int, token: str, tag: str, seconds: float
) -> dict[str, Any]:
    """wrk -t1 -cN (or the Python closed-loop generator when wrk is missing)."""
    opts = ctx.options
    if ctx.wrk is None:
        result = await loadgen.closed_loop(
            "127.0.0.1",
            port,
            PATH,
            exit_mix(token, tag),
            connections=opts.connections,
            duration_s=seconds,
            timeout_s=opts.timeout_s,
        )
        return result.summary()
    out = ctx.workdir / f"wrk-{tag}.txt"
    with out.open("wb") as fh:
        proc = ctx.children.start(
            "wrk",
            [
                ctx.wrk,
                "-t1",
                f"-c{opts.connections}",
                f"-d{seconds:g}s",
                "--timeout",
                f"{opts.timeout_s:g}s",
                "-s",
                LUA,
                f"http://127.0.0.1:{port}{PATH}",
                "--",
                token,
                tag,
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    await wait(proc, seconds + opts.timeout_s + 30)
    text = out.read_text()
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{text}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    errors = {k: raw[f"{k}_errors"] for k in ("connect", "read", "write")}
    errors["timeout"] = raw["timeouts"]
    return {
        "requests": raw["requests"],
        "answered": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "non_2xx": raw["non_2xx"],  # wrk counts answers with status >= 400
        "errors": {k: v for k, v in errors.items() if v},
    }


async def rate_pass(ctx: Context, port: int, token: str, tag: str) -> dict[str, Any]:
    opts = ctx.options
    result = await loadgen.fixed_rate(
        "127.0.0.1",
        port,
        PATH,
        exit_mix(token, tag),
        rate=opts.rate,
        duration_s=opts.rate_s,
        timeout_s=opts.timeout_s,
        max_connections=opts.rate_connections,
    )
    summary = result.summary()
    unanswered = result.errors["timeout"] + result.errors["unsent"]
    summary["over_3s"] = sum(1 for v in result.latencies_ms if v > 3000) + unanswered
    summary["answers"] = dict(result.statuses_by_body)
    return summary


def local_dir(workdir: Path) -> Path:
    """The API-alone stack's data directory (PostgreSQL, Redis) inside the run's workdir."""
    return workdir / "api-only" / "local"


def _groups(ctx: Context, target: str, api: SplitStack | None = None) -> dict[str, list[int]]:
    if target == "bare":
        return {"server": [ctx.bare_pid]}
    groups = (api.api if target == "api" and api is not None else ctx.engine).server_pids()
    groups["server"] = groups.pop("engine")
    return groups


async def _measured(
    ctx: Context, target: str, run: Any, api: SplitStack | None = None
) -> dict[str, Any]:
    meter = CpuMeter(lambda: _groups(ctx, target, api))
    result: dict[str, Any] = await run
    result["cpu_s"] = meter.stop()
    return result


async def run(ctx: Context) -> dict[str, Any]:
    demo_user = ctx.engine.info["user_id"]
    workdir = local_dir(ctx.workdir).parent
    workdir.mkdir(parents=True, exist_ok=True)
    print("   starting the API process alone (jadetrade serve --no-workers) ...", flush=True)
    api = await start_stack(ctx, workdir, "api-only", {})
    try:
        return await _run(ctx, api, demo_user)
    finally:
        ctx.children.stop(api.api.proc)


async def _run(ctx: Context, api: SplitStack, demo_user: str) -> dict[str, Any]:
    opts = ctx.options
    tokens = {
        "bare": ctx.engine.info["webhook_token"],
        "engine": ctx.engine.info["webhook_token"],
        "api": api.webhook_token,
    }
    ports = {"bare": ctx.bare_port, "engine": ctx.engine.port, "api": api.api.port}
    tool = (
        f"wrk -t1 -c{opts.connections} -d{opts.throughput_s:g}s"
        if ctx.wrk
        else f"Python closed-loop generator, {opts.connections} connections, "
        f"{opts.throughput_s:g} s (wrk not available)"
    )
    print(
        f"\n== 1. Webhook throughput and latency ({tool}; fixed rate: "
        f"{opts.rate:g}/s for {opts.rate_s:g} s, Python open-loop generator)"
    )
    results: dict[str, Any] = {"tool": tool, "closed": {}, "rate": {}}

    # bare, engine, API alone, bare again: the machine is shared, so the baseline brackets them.
    passes = (("bare", "bare"), ("engine", "engine"), ("api", "api"), ("bare_after", "bare"))
    for label, target in passes:
        port, token = ports[target], tokens[target]
        if label != "bare_after":
            print(
                f"   {label}: warm-up {opts.warmup_s:g} s, then {opts.throughput_s:g} s ...",
                flush=True,
            )
            await closed_pass(ctx, port, token, f"{label}-warm", opts.warmup_s)
        else:
            print(f"   bare again: {opts.throughput_s:g} s ...", flush=True)
        if target == "engine":
            await ctx.discard_backlog([demo_user])
        spy = None
        if target == "engine" and opts.py_spy:
            spy_out = ctx.workdir / "py-spy-webhook.txt"
            spy = cpu_profile.start(
                ctx.children, opts.py_spy, ctx.engine.proc.pid, opts.throughput_s, spy_out
            )
        res = await _measured(
            ctx, target, closed_pass(ctx, port, token, f"{label}-tp", opts.throughput_s), api
        )
        if spy is not None:
            await wait(spy, 30)
            res["profile"] = cpu_profile.summarize(spy_out)
        if target == "engine":
            res["backlog_discarded"], res["busy_after_s"] = await ctx.discard_backlog([demo_user])
        results["closed"][label] = res

    for target, port in ports.items():
        print(f"   {target}: {opts.rate:g} alerts/s for {opts.rate_s:g} s ...", flush=True)
        await asyncio.sleep(1.0)
        res = await _measured(
            ctx, target, rate_pass(ctx, port, tokens[target], f"{target}-rate"), api
        )
        if target == "engine":
            res["backlog_discarded"], res["busy_after_s"] = await ctx.discard_backlog([demo_user])
        results["rate"][target] = res

    report(results, opts)
    return results


def _cpu(res: dict[str, Any]) -> str:
    cpu = res["cpu_s"]
    answered = max(1, res["answered"])
    parts = [
        f"{name} {cpu[name] * 1000 / answered:.2f}"
        for name in ("server", "postgres", "redis")
        if name in cpu
    ]
    return ", ".join(parts) + f" (generator {cpu['generator']:.1f} s of {cpu['wall']:.1f} s)"


def report(results: dict[str, Any], opts: Options) -> None:
    closed, fixed = results["closed"], results["rate"]
    rate = opts.rate
    print(f"\n   Throughput ({results['tool']})")
    print(
        f"   {'':9} {'req/s':>9} {'p50':>10} {'p99':>10} {'max':>10} {'non-2xx':>8} "
        f"{'errors':>8}  CPU ms per request"
    )
    for name in ("bare", "engine", "api", "bare_after"):
        r = closed[name]
        label = {"api": "API alone", "bare_after": "bare (2)"}.get(name, name)
        print(
            f"   {label:9} {r['rps']:9,.0f} {ms(r['p50_ms']):>10} {ms(r['p99_ms']):>10} "
            f"{ms(r['max_ms']):>10} {r['non_2xx']:8} {sum(r['errors'].values()):8}  {_cpu(r)}"
        )
    bare_rps = (closed["bare"]["rps"] + closed["bare_after"]["rps"]) / 2
    for name, label, key in (("engine", "engine", "ratio"), ("api", "API alone", "api_ratio")):
        ratio = closed[name]["rps"] / bare_rps if bare_rps else math.nan
        results[key] = ratio
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        print(
            f"   {label}/bare requests/s: {ratio:.1%} of the mean of both bare passes "
            f"(target >= {TARGET_RATIO:.0%}: {verdict})"
        )
    results["bare_rps"] = bare_rps
    if "profile" in closed["engine"]:
        print("   py-spy, engine during its throughput pass:\n" + closed["engine"]["profile"])
    if "backlog_discarded" in closed["engine"]:
        print(
            f"   queue left behind by the engine pass: {closed['engine']['backlog_discarded']} "
            "signals (discarded before the next pass)"
        )

    print(f"\n   Fixed arrival rate: {rate:g} alerts/s (latency from when each alert was due)")
    print(
        f"   {'':9} {'sent':>6} {'answered/s':>10} {'p50':>10} {'p99':>10} {'max':>10} "
        f"{'non-2xx':>8} {'>3 s':>6} {'timeout':>7} {'unsent':>6}  CPU ms per request"
    )
    for name in ("bare", "engine", "api"):
        r = fixed[name]
        label = "API alone" if name == "api" else name
        print(
            f"   {label:9} {r['requests']:6} {r['rps']:10,.0f} {ms(r['p50_ms']):>10} "
            f"{ms(r['p99_ms']):>10} {ms(r['max_ms']):>10} {r['non_2xx']:8} {r['over_3s']:6} "
            f"{r['errors'].get('timeout', 0):7} {r['errors'].get('unsent', 0):6}  {_cpu(r)}"
        )
    p99 = fixed["engine"]["p99_ms"]
    print(
        f"   engine p99 at {rate:g}/s: {ms(p99)}  (target < 50 ms: "
        f"{'met' if p99 < 50 else 'MISSED'})"
    )
    answers = fixed["engine"].get("answers", {})
    if answers:
        print(
            f"   engine answers: {', '.join(f'{k} {v}' for k, v in sorted(answers.items()))}; "
            f"queue left behind: {fixed['engine'].get('backlog_discarded', 0)} signals; the "
            f"engine stayed busy for {fixed['engine'].get('busy_after_s', 0):.0f} s after the "
            "pass (alerts the client had given up on)"
        )
    print(
        "   (>3 s: answered after 3 s or not at all — TradingView gives up after 3 s; timeout: "
        f"no answer in {opts.timeout_s:g} s; unsent: all {opts.rate_connections} connections busy)"
    )


if __name__ == "__main__":
    import sys

    import run as bench_run

    sys.exit(bench_run.main(["--only", "throughput", *sys.argv[1:]]))
