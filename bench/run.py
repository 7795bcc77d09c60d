"""`make bench`: the engine's benchmarks, printed as numbers (no timed assertions anywhere).

One run starts the engine (`jadetrade run --json`, embedded PostgreSQL and Redis, in-process
workers) in a temporary LOCAL_DIR on free ports, and the bare FastAPI baseline next to it,
then runs

1. webhook throughput and latency, engine vs bare (bench/webhook_throughput.py);
2. alert-to-order latency (bench/alert_to_order.py);
3. WebSocket idle connections, broadcast fan-out and cross-process event latency, on a stack
   of its own (bench/websocket_fanout.py);
4. the assistant: retrieval quality and latency, time to first streamed byte
   (bench/assistant.py);
5. sustained intake: one API process and one worker process at 1,000 alerts/s for 60 s, on a
   stack of its own (bench/sustained.py);

and stops everything it started — also on failure, Ctrl-C or SIGTERM. wrk is installed from
Debian when missing and possible (root + apt-get); otherwise the Python generator runs the
throughput pass too, and the output says so. Absolute numbers depend on the machine and on
whatever else runs on it: compare the ratios measured within one run.

    bot-engine/.venv/bin/python bench/run.py
        [--only throughput|alert-to-order|websocket|assistant|sustained]
        [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import alert_to_order
import assistant
import sustained
import webhook_throughput
import websocket_fanout
from context import Context, Options, ms
from processes import Children, start_bare, start_engine, stop_embedded

# The engine as it runs by default, except the per-token webhook limit (30 a minute), which
# would answer 429 to nearly every benchmark request.
# The assistant benchmark asks more questions than a month's allowance.
ENGINE_ENV = {"WEBHOOK_RATE_LIMIT": "100000000", **assistant.CHAT_ENV}


def ensure_wrk() -> tuple[str | None, str]:
    """wrk's path (installing the Debian package if we can) and what happened."""
    found = shutil.which("wrk")
    if found:
        return found, f"wrk: {found}"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is not installed: apt-get install -y wrk ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        try:
            if subprocess.run(install, env=env, capture_output=True, timeout=300).returncode:
                subprocess.run(
                    ["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300
                )
                subprocess.run(install, env=env, capture_output=True, timeout=300)
        except subprocess.TimeoutExpired:
            pass
        found = shutil.which("wrk")
        if found:
            return found, f"wrk: installed from Debian ({found})"
    return None, (
        "wrk: NOT AVAILABLE (not installed and apt-get unusable) — the Python "
        "closed-loop generator runs the throughput pass instead"
    )


def speed_probe(steps: int = 5_000_000) -> float:
    """Nanoseconds per step of a plain Python loop: how fast this machine is right now. The
    same code measured minutes apart can differ when the host is shared; this says so."""
    began = time.perf_counter()
    total = 0
    for i in range(steps):
        total += i
    return (time.perf_counter() - began) / steps * 1e9


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"load average at start {load}, speed probe {speed_probe():.0f} ns per loop step"
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    d = Options()
    p = argparse.ArgumentParser(description="JadeTrade engine benchmarks")
    p.add_argument(
        "--only",
        choices=("throughput", "alert-to-order", "websocket", "assistant", "sustained"),
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--no-wrk", action="store_true", help="use the Python generator only")
    p.add_argument("--json-out", type=Path, help="also write every number to this file")
    p.add_argument("--py-spy", metavar="PATH", help="sample the engine with this py-spy")
    p.add_argument("--connections", type=int, default=d.connections)
    p.add_argument("--throughput-seconds", type=float, default=d.throughput_s)
    p.add_argument("--warmup-seconds", type=float, default=d.warmup_s)
    p.add_argument("--rate", type=float, default=d.rate, help="fixed-rate pass, alerts/s")
    p.add_argument("--rate-seconds", type=float, default=d.rate_s)
    p.add_argument("--floor-rate", type=float, default=d.floor_rate)
    p.add_argument("--floor-seconds", type=float, default=d.floor_s)
    p.add_argument("--alert-rate", type=float, default=d.alert_rate)
    p.add_argument("--alert-seconds", type=float, default=d.alert_s)
    p.add_argument("--drain-seconds", type=float, default=d.drain_s)
    p.add_argument("--users", type=int, default=d.users)
    p.add_argument("--sustained-rate", type=float, default=d.sustained_rate)
    p.add_argument("--sustained-seconds", type=float, default=d.sustained_s)
    args = p.parse_args(argv)
    positive = (
        "connections",
        "throughput_seconds",
        "rate",
        "rate_seconds",
        "alert_rate",
        "alert_seconds",
        "floor_rate",
        "floor_seconds",
        "users",
        "sustained_rate",
        "sustained_seconds",
    )
    for name in positive:
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


async def _bench(args: argparse.Namespace, ctx_parts: dict[str, Any]) -> dict[str, Any]:
    children: Children = ctx_parts["children"]
    workdir: Path = ctx_parts["workdir"]
    # SIGTERM/SIGHUP cancel the run like Ctrl-C does; the clean-up in main() follows.
    main_task = asyncio.current_task()
    assert main_task is not None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        asyncio.get_running_loop().add_signal_handler(sig, main_task.cancel)
    print("starting the engine (jadetrade run --json) and the bare app ...", flush=True)
    engine, (bare, bare_port) = await asyncio.gather(
        start_engine(children, workdir, ENGINE_ENV), start_bare(children, workdir)
    )
    print(
        f"engine {engine.url} (PostgreSQL :{engine.pg_port}, Redis :{engine.redis_port}), "
        f"bare app http://127.0.0.1:{bare_port}; data and logs in {workdir}"
    )
    ctx = Context(
        children,
        engine,
        bare_port,
        workdir,
        ctx_parts["options"],
        ctx_parts["wrk"],
        bare_pid=bare.pid,
    )
    try:
        users: list[dict[str, str]] = []
        if args.only in (None, "alert-to-order"):
            print(f"creating {ctx.options.users + 1} pro users through the CLI ...", flush=True)
            users = await alert_to_order.prepare(ctx)
        if args.only in (None, "throughput"):
            ctx.results["throughput"] = await webhook_throughput.run(ctx)
        if args.only in (None, "alert-to-order"):
            ctx.results["alert_to_order"] = await alert_to_order.run(ctx, users)
        if args.only in (None, "websocket"):
            ctx.results["websocket"] = await websocket_fanout.run(ctx)
        if args.only in (None, "assistant"):
            ctx.results["assistant"] = await assistant.run(ctx)
        if args.only in (None, "sustained"):
            ctx.results["sustained"] = await sustained.run(ctx)
        return ctx.results
    finally:
        await ctx.close()


def _summary(results: dict[str, Any], options: Options) -> None:
    print("\n== Summary (noisy shared machine: compare ratios within this run)")
    tp = results.get("throughput")
    if tp:
        closed, fixed = tp["closed"], tp["rate"]
        print(
            f"   webhook req/s: engine {closed['engine']['rps']:,.0f} ({tp['ratio']:.1%} of bare), "
            f"API alone {closed['api']['rps']:,.0f} ({tp['api_ratio']:.1%}), bare "
            f"{tp['bare_rps']:,.0f} (target >= 70 %)"
        )
        print(
            f"   webhook p99 at {options.rate:g}/s: engine "
            f"{ms(fixed['engine']['p99_ms'])}, API alone {ms(fixed['api']['p99_ms'])}, bare "
            f"{ms(fixed['bare']['p99_ms'])} (target < 50 ms)"
        )
    both = results.get("alert_to_order")
    if both:
        f = both["floor"]["alert_to_order_ms"]
        print(
            f"   alert-to-order at {options.floor_rate:g}/s (idle engine): p50 {ms(f[50])}, "
            f"p99 {ms(f[99])}"
        )
        a2o = both["load"]
        q = a2o["alert_to_order_ms"]
        print(
            f"   alert-to-order at {options.alert_rate:g}/s: p50 {ms(q[50])}, "
            f"p99 {ms(q[99])} over {a2o['entries_executed']} executed "
            f"entries of {a2o['entries_sent']} (target p99 <= 25 ms)"
        )
    if results.get("websocket"):
        websocket_fanout.summarize(results["websocket"])
    if results.get("assistant"):
        assistant.summarize(results["assistant"])
    sus = results.get("sustained")
    if sus:
        print(
            f"   sustained {sus['rate']:g} alerts/s for {sus['seconds']:g} s (API + worker): "
            f"answered {sus['load']['rps']:,.0f}/s, non-2xx {sus['load']['non_2xx']}, backlog max "
            f"{sus['backlog_max']:,}, {sus['verdict']}"
        )


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    options = Options(
        connections=args.connections,
        throughput_s=args.throughput_seconds,
        warmup_s=args.warmup_seconds,
        rate=args.rate,
        rate_s=args.rate_seconds,
        alert_rate=args.alert_rate,
        alert_s=args.alert_seconds,
        drain_s=args.drain_seconds,
        floor_rate=args.floor_rate,
        floor_s=args.floor_seconds,
        py_spy=args.py_spy,
        users=args.users,
        sustained_rate=args.sustained_rate,
        sustained_s=args.sustained_seconds,
    )
    began = time.monotonic()
    print(f"JadeTrade benchmarks — {machine()}")
    wrk: str | None = None
    if args.only in (None, "throughput"):
        wrk, note = (None, "wrk: not used (--no-wrk)") if args.no_wrk else ensure_wrk()
        print(note)

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    # Also when started with SIGINT ignored (a background job of a script): Ctrl-C or
    # `kill -INT` must still stop the run and clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    workdir = Path(tempfile.mkdtemp(prefix="jadetrade-bench-"))
    children = Children()
    parts = {"children": children, "workdir": workdir, "options": options, "wrk": wrk}
    code = 1
    results: dict[str, Any] = {}
    try:
        results = asyncio.run(_bench(args, parts))
        code = 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    except asyncio.CancelledError:
        print("\nstopped by a signal", file=sys.stderr)
        code = 143
    except SystemExit as exc:
        print(f"\nstopped by signal ({exc.code})", file=sys.stderr)
        code = int(exc.code or 1)
    except Exception:
        traceback.print_exc()
        log = workdir / "engine.log"
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-20:]
            print("last lines of the engine log:\n  " + "\n  ".join(tail), file=sys.stderr)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        print("\nstopping the engine, PostgreSQL, Redis and the bare app ...", flush=True)
        children.stop_all()
        stop_embedded(workdir / "local")
        stop_embedded(websocket_fanout.local_dir(workdir))
        stop_embedded(sustained.local_dir(workdir))
        stop_embedded(webhook_throughput.local_dir(workdir))
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
    if code == 0:
        _summary(results, options)
        if args.json_out:
            args.json_out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\ntotal {time.monotonic() - began:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
