"""Benchmark 3: WebSocket connections, broadcast fan-out and cross-process event latency.

The WebSocket side runs on a stack of its own, next to the engine bench/run.py started:
`jadetrade serve --no-workers` (one API process) on an embedded PostgreSQL and Redis under
`<workdir>/ws/local`, joined for part 3 by a `jadetrade worker` sharing them (part 3 runs
first, on the fresh API process, and the worker stops before parts 1 and 2). One `pro` user
holds every connection (`WS_MAX_CONNECTIONS_PER_USER=100000`); every other setting keeps its
default (app-level heartbeat after 25 s of client silence, which the clients answer; INFO logs
as JSON lines to a file). The clients are 4 processes of this file (`client` mode: aiohttp on
uvloop, the cheaper of the two client libraries, see `client-check`), each connecting from its
own loopback address (127.0.0.2-5) so that they do not share one source-port range, steered
over a Unix socket. Their garbage collector is off and runs between passes only, so that no
pause of a client's lands in a server's latency; the servers keep Python's defaults.

1. Idle connections: connections ramp to 1,000 / 2,500 / 5,000 / 10,000; at each step the API
   process's RSS (psutil, that process alone) and RSS per connection, connect time (from the
   TCP connect to the `connected` message), failures, and the engine's CPU per connection.
2. Broadcast latency: 5,000 / 2,500 / 1,000 clients subscribed to `prices`; this process
   publishes 5 price updates a second for 10 s on `jadetrade:ev:prices`, each carrying
   `time.time_ns()` at publication; every client computes receive time - sent time per message,
   counts the broadcasts it missed and checks that `seq` has no gaps. Baseline, interleaved
   with the engine at each size: a bare `websockets` server (`bare-ws` mode of this file, its
   own process) that forwards each message of its Redis channel to all its sockets, reached
   by the same clients from the same publisher.
3. Cross-process event latency: 200 alerts at 10/s (long_entry and long_exit alternating on
   BTCUSDT, after 10 unmeasured warm-up alerts) to the API process, and one dashboard socket
   on it; the time from just before the webhook POST to `signal_received`, `trade_executed`
   and `position_update` of that alert's signal (client and sender are one process: one
   clock). Two processes (API + worker) against the single-process engine of bench/run.py
   (in-process workers) as the baseline.

    python bench/run.py --only websocket
    python bench/websocket_fanout.py client-check   # aiohttp vs websockets, as clients
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import psutil
import uvloop
from app.core.events import PRICE_CHANNEL, EventType, encode
from redis.asyncio import Redis

from context import Context, CpuMeter, ms, percentile
from processes import (
    PYTHON,
    Children,
    free_port,
    wait,
)
from split_stack import SplitStack, raise_risk_limits, start_stack, start_worker

THIS = Path(__file__).resolve()
CLIENT_PROCESSES = 4
IDLE_STEPS = (1_000, 2_500, 5_000, 10_000)
BROADCAST_SIZES = (5_000, 2_500, 1_000)  # descending: each step closes connections
BROADCAST_RATE, BROADCAST_S = 5.0, 10.0
DELIVERY_WAIT_S = 10.0  # after the last broadcast, for the stragglers
ALERTS, ALERT_RATE = 200, 10.0
WARMUP_ALERTS = 10
EVENT_WAIT_S = 15.0
HANDSHAKES_IN_FLIGHT = 16  # per client process
HOLD_S = 3.0  # after each ramp step: let the server settle, then read its RSS and idle CPU
REPLY_TIMEOUT_S = 30.0
BARE_CHANNEL = "bench:bare:prices"
CONTROL_LIMIT = 1 << 28  # a client's report holds every latency it measured
WS_ENV = {"WS_MAX_CONNECTIONS_PER_USER": "100000"}
PONG = '{"type":"pong"}'
SUBSCRIBE_PRICES = '{"type":"subscribe","topic":"prices"}'
TOPICS = ("signals", "trades", "positions")
STORY = ("signal_received", "trade_executed", "position_update")


def local_dir(workdir: Path) -> Path:
    """The WebSocket stack's data directory (PostgreSQL, Redis) inside the run's workdir."""
    return workdir / "ws" / "local"


def raise_nofile() -> tuple[int, int, int]:
    """Raise the soft open-files limit to the hard one: (soft before, soft now, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard


def _rss(pid: int | None = None) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _port_range() -> str:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return f"{low}-{high}"


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_bytes(orjson.dumps(data))


def _shares(total: int, parts: int) -> list[int]:
    base, extra = divmod(max(0, total), parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _quantiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values, default=math.nan),
    }


# ============================================================================ client processes
@dataclass(eq=False)
class _Socket:
    ws: aiohttp.ClientWebSocketResponse[bool]
    seq: int = 0
    gaps: int = 0
    got: int = 0
    reply: asyncio.Future[str] | None = None
    task: asyncio.Task[None] | None = None
    error: str | None = None

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()


class _ClientWorker:
    """One client process: groups of sockets ("engine", "bare") and what they measured."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.groups: dict[str, list[_Socket]] = defaultdict(list)
        self.tag: str | None = None
        self.measured: list[_Socket] = []
        self.latencies = array("q")  # microseconds
        self.broadcast_of = array("q")  # which broadcast each latency belongs to

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        kind = cmd["cmd"]
        if kind == "open":
            return await self.open(cmd["group"], cmd["url"], cmd["count"], cmd["in_flight"])
        if kind == "subscribe":
            return await self.subscribe(cmd["group"], cmd["topic"])
        if kind == "close":
            return await self.close_to(cmd["group"], cmd["keep"])
        if kind == "start":
            return self.start(cmd["group"], cmd["tag"])
        if kind == "progress":
            return {"got": sum(s.got for s in self.measured)}
        if kind == "report":
            return self.report(cmd["expected"])
        if kind == "status":
            gc.collect()
            return {"open": self._alive(cmd["group"]), "rss": _rss()}
        raise ValueError(f"unknown command {kind!r}")

    def _alive(self, group: str) -> int:
        return sum(1 for s in self.groups[group] if s.alive)

    async def _read(self, s: _Socket) -> None:
        try:
            async for msg in s.ws:
                now = time.time_ns()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                message = orjson.loads(msg.data)
                seq = message.get("seq")
                if seq is not None:
                    if seq != s.seq + 1:
                        s.gaps += 1
                    s.seq = seq
                kind = message.get("type")
                if kind == "price_update":
                    data = message["data"]
                    if data.get("run") == self.tag:
                        self.latencies.append((now - data["sent_ns"]) // 1000)
                        self.broadcast_of.append(data["n"])
                        s.got += 1
                elif kind == "ping":
                    await s.ws.send_str(PONG)
                elif s.reply is not None and not s.reply.done():
                    s.reply.set_result(str(kind))
        except Exception as exc:  # a broken socket is counted, not fatal to the others
            s.error = type(exc).__name__
        finally:
            if s.reply is not None and not s.reply.done():
                s.reply.set_result(f"closed {s.ws.close_code}")

    async def _open_one(self, group: str, url: str, gate: asyncio.Semaphore) -> float | str:
        async with gate:
            began = time.perf_counter()
            try:
                ws = await self.session.ws_connect(
                    url, autoping=True, heartbeat=None, compress=0, decode_text=False
                )
            except aiohttp.WSServerHandshakeError as exc:
                return f"HTTP {exc.status}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                return type(exc).__name__
            s = _Socket(ws)
            s.reply = asyncio.get_running_loop().create_future()
            s.task = asyncio.create_task(self._read(s))
            try:
                async with asyncio.timeout(REPLY_TIMEOUT_S):
                    kind = await s.reply
            except TimeoutError:
                kind = "no `connected` in time"
            if kind != "connected":
                await ws.close()
                return kind
            self.groups[group].append(s)
            return (time.perf_counter() - began) * 1000

    async def open(self, group: str, url: str, count: int, in_flight: int) -> dict[str, Any]:
        gate = asyncio.Semaphore(in_flight)
        results = await asyncio.gather(*(self._open_one(group, url, gate) for _ in range(count)))
        times = [r for r in results if isinstance(r, float)]
        errors = Counter(r for r in results if isinstance(r, str))
        return {
            "opened": len(times),
            "errors": dict(errors),
            "connect_ms": times,
            "open": self._alive(group),
            "rss": _rss(),
        }

    async def subscribe(self, group: str, topic: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        text = orjson.dumps({"type": "subscribe", "topic": topic}).decode()

        async def one(s: _Socket) -> float | str:
            s.reply = loop.create_future()
            began = time.perf_counter()
            await s.ws.send_str(text)
            try:
                async with asyncio.timeout(REPLY_TIMEOUT_S):
                    kind = await s.reply
            except TimeoutError:
                return "no `subscribed` in time"
            return (time.perf_counter() - began) * 1000 if kind == "subscribed" else kind

        results = await asyncio.gather(*(one(s) for s in self.groups[group] if s.alive))
        return {
            "ms": [r for r in results if isinstance(r, float)],
            "errors": dict(Counter(r for r in results if isinstance(r, str))),
        }

    async def close_to(self, group: str, keep: int) -> dict[str, Any]:
        alive = [s for s in self.groups[group] if s.alive]
        extra = alive[keep:]
        await asyncio.gather(*(s.ws.close() for s in extra), return_exceptions=True)
        await asyncio.gather(*(s.task for s in extra if s.task), return_exceptions=True)
        self.groups[group] = alive[:keep]
        return {"open": self._alive(group)}

    def start(self, group: str, tag: str) -> dict[str, Any]:
        # The collector is off in client processes (see _client_main); collect now, between
        # passes, so that no pause of the client's own lands in a measurement.
        gc.collect()
        gc.freeze()
        self.tag = tag
        self.measured = [s for s in self.groups[group] if s.alive]
        for s in self.measured:
            s.got = s.gaps = 0
        self.latencies = array("q")
        self.broadcast_of = array("q")
        return {"sockets": len(self.measured)}

    def report(self, expected: int) -> dict[str, Any]:
        self.tag = None
        closed = [s for s in self.measured if not s.alive]
        return {
            "latencies_us": self.latencies.tolist(),
            "broadcast_of": self.broadcast_of.tolist(),
            "lost": sum(max(0, expected - s.got) for s in self.measured),
            "duplicates": sum(max(0, s.got - expected) for s in self.measured),
            "gaps": sum(s.gaps for s in self.measured),
            "with_seq": sum(1 for s in self.measured if s.seq),
            "closed": len(closed),
            "close_codes": dict(Counter(str(s.ws.close_code) for s in closed)),
        }


async def _client_main(control: str, index: int) -> None:
    # A client holding 2,500 sockets has millions of long-lived objects: a full collection
    # took 200-450 ms in a trial run and landed in the latencies of every server alike.
    gc.disable()
    raise_nofile()
    connector = aiohttp.TCPConnector(limit=0, local_addr=(f"127.0.0.{2 + index}", 0))
    timeout = aiohttp.ClientTimeout(total=REPLY_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        worker = _ClientWorker(session)
        reader, writer = await asyncio.open_unix_connection(control, limit=CONTROL_LIMIT)
        writer.write(orjson.dumps({"hello": index}) + b"\n")
        # An empty line: the orchestrator is gone (or said exit) — leave with it.
        while line := await reader.readline():
            cmd = orjson.loads(line)
            if cmd["cmd"] == "exit":
                break
            writer.write(orjson.dumps(await worker.handle(cmd)) + b"\n")
            await writer.drain()
        writer.close()


class _ClientPool:
    """The client processes and their control links (one JSON line per command and reply)."""

    def __init__(self, children: Children, workdir: Path, count: int = CLIENT_PROCESSES) -> None:
        self.children = children
        self.workdir = workdir
        self.count = count
        self.procs: list[subprocess.Popen[bytes]] = []
        self._links: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self._done = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = orjson.loads(await reader.readline())
        self._links[int(hello["hello"])] = (reader, writer)
        await self._done.wait()  # keep the link open for as long as the pool runs

    async def start(self, timeout_s: float = 30.0) -> None:
        path = self.workdir / "control.sock"
        self._server = await asyncio.start_unix_server(
            self._accepted, path=str(path), limit=CONTROL_LIMIT
        )
        for i in range(self.count):
            with (self.workdir / f"client-{i}.log").open("wb") as log:
                self.procs.append(
                    self.children.start(
                        f"ws client {i}",
                        [PYTHON, THIS, "client", "--control", path, "--index", str(i)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + timeout_s
        while len(self._links) < self.count:
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    raise RuntimeError(f"ws client {i} exited; see {self.workdir}/client-{i}.log")
            if time.monotonic() > deadline:
                raise TimeoutError("the WebSocket client processes did not start")
            await asyncio.sleep(0.05)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def call(self, i: int, cmd: dict[str, Any]) -> dict[str, Any]:
        reader, writer = self._links[i]
        writer.write(orjson.dumps(cmd) + b"\n")
        await writer.drain()
        line = await reader.readline()
        if not line:
            raise RuntimeError(f"ws client {i} exited; see {self.workdir}/client-{i}.log")
        reply: dict[str, Any] = orjson.loads(line)
        return reply

    async def each(self, cmd: dict[str, Any], **per_client: list[Any]) -> list[dict[str, Any]]:
        """`cmd` to every client, with `per_client[key][i]` as `key` for client i."""
        return list(
            await asyncio.gather(
                *(
                    self.call(i, cmd | {k: v[i] for k, v in per_client.items()})
                    for i in range(self.count)
                )
            )
        )

    def stop(self) -> None:
        for _reader, writer in self._links.values():
            with contextlib.suppress(OSError, RuntimeError):
                writer.write(b'{"cmd":"exit"}\n')
        self._done.set()
        if self._server is not None:
            self._server.close()
        self._links.clear()
        for proc in self.procs:
            self.children.stop(proc)
        self.procs.clear()


# ============================================================================ the bare server
async def _bare_main(port: int, redis_url: str, channel: str) -> None:
    """A minimal fan-out: websockets' asyncio server, one Redis subscription, `broadcast()`."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.exceptions import ConnectionClosed

    raise_nofile()
    watchers: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        try:
            await ws.send('{"type":"connected"}')
            async for raw in ws:
                message = orjson.loads(raw)
                kind = message.get("type")
                if kind == "subscribe":
                    watchers.add(ws)
                    await ws.send(orjson.dumps({"type": "subscribed", "data": message}).decode())
                elif kind == "ping":
                    await ws.send(PONG)
        except ConnectionClosed:
            pass
        finally:
            watchers.discard(ws)

    redis = Redis.from_url(redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    async with serve(handler, "127.0.0.1", port, backlog=4096):
        print("ready", flush=True)
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                broadcast(watchers, message["data"].decode())


async def _start_bare(
    children: Children, workdir: Path, redis_url: str
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log_path = workdir / "bare-ws.log"
    with log_path.open("wb") as log:
        proc = children.start(
            "bare ws server",
            [PYTHON, THIS, "bare-ws", "--port", str(port), "--redis", redis_url],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while b"ready" not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the bare ws server did not start; see {log_path}")
        await asyncio.sleep(0.05)
    return proc, port


# ============================================================================ 1. idle connections
async def _idle(stack: SplitStack, pool: _ClientPool) -> dict[str, Any]:
    pid = stack.api.proc.pid
    await asyncio.sleep(1.0)
    rss0 = _rss(pid)
    clients_rss0 = sum(_rss(p) for p in pool.pids)
    steps: list[dict[str, Any]] = []
    open_now = 0
    print(
        f"   API process pid {pid}: RSS {rss0 / 2**20:,.1f} MiB with no connection; ramping "
        f"with {pool.count} client processes, {HANDSHAKES_IN_FLIGHT} handshakes in flight each",
        flush=True,
    )
    for target in IDLE_STEPS:
        shares = _shares(target - open_now, pool.count)
        cpu0, began = _cpu(pid), time.perf_counter()
        replies = await pool.each(
            {
                "cmd": "open",
                "group": "engine",
                "url": stack.ws_url,
                "in_flight": HANDSHAKES_IN_FLIGHT,
            },
            count=shares,
        )
        ramp_s = time.perf_counter() - began
        ramp_cpu = _cpu(pid) - cpu0
        connect = [t for r in replies for t in r["connect_ms"]]
        errors: Counter[str] = Counter()
        for r in replies:
            errors.update(r["errors"])
        await asyncio.sleep(1.0)
        hold_cpu0 = _cpu(pid)
        await asyncio.sleep(HOLD_S)
        idle_cpu = (_cpu(pid) - hold_cpu0) / HOLD_S
        status = await pool.each({"cmd": "status", "group": "engine"})
        open_now = sum(s["open"] for s in status)
        rss = _rss(pid)
        server_sockets = sum(
            1
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == stack.api.port
        )
        opened = len(connect)
        step = {
            "target": target,
            "opened": opened,
            "failed": sum(errors.values()),
            "errors": dict(errors),
            "open": open_now,
            "server_sockets": server_sockets,
            "connect_ms": _quantiles(connect),
            "ramp_s": ramp_s,
            "per_s": opened / ramp_s if ramp_s else math.nan,
            "cpu_ms_per_connection": ramp_cpu * 1000 / opened if opened else math.nan,
            "idle_cpu_share": idle_cpu,
            "rss_mib": rss / 2**20,
            "rss_kib_per_connection": (rss - rss0) / 1024 / open_now if open_now else math.nan,
            "client_kib_per_connection": (sum(s["rss"] for s in status) - clients_rss0)
            / 1024
            / max(open_now, 1),
        }
        steps.append(step)
        q = step["connect_ms"]
        print(
            f"   {target:>6,}: {open_now:,} open ({server_sockets:,} server sockets), "
            f"{step['failed']} failed{' ' + str(dict(errors)) if errors else ''}; connect p50 "
            f"{ms(q['p50'])} p99 {ms(q['p99'])}; RSS {step['rss_mib']:,.1f} MiB",
            flush=True,
        )
        if open_now < target * 0.9:
            print(f"   stopping the ramp: only {open_now:,} of {target:,} connections are open")
            break
    return {"rss0_mib": rss0 / 2**20, "steps": steps}


def _idle_verdict(r: dict[str, Any]) -> str:
    top = r["steps"][-1]
    return "met" if top["open"] >= max(IDLE_STEPS) and not top["failed"] else "MISSED"


def _report_idle(r: dict[str, Any]) -> None:
    print(
        f"\n   Idle connections on one API process (RSS with none: {r['rss0_mib']:,.1f} MiB)\n"
        "   target  open    failed  connect p50 / p99 / max       conn/s  engine CPU/conn"
        "  idle CPU  RSS MiB   RSS/conn  client RSS/conn"
    )
    for s in r["steps"]:
        q = s["connect_ms"]
        print(
            f"   {s['target']:>6,}  {s['open']:>6,}  {s['failed']:>6,}  "
            f"{ms(q['p50']):>9} / {ms(q['p99']):>9} / {ms(q['max']):>9}  {s['per_s']:>6,.0f}  "
            f"{s['cpu_ms_per_connection']:>11.2f} ms  {s['idle_cpu_share']:>7.1%}  "
            f"{s['rss_mib']:>7,.1f}  {s['rss_kib_per_connection']:>5.1f} KiB  "
            f"{s['client_kib_per_connection']:>9.1f} KiB"
        )
    top = r["steps"][-1]
    print(
        f"   {top['open']:,} connections held, {top['failed']} failed (target "
        f"{max(IDLE_STEPS):,}: {_idle_verdict(r)})"
    )


# ============================================================================ 2. broadcast
async def _publish(redis: Redis, channel: str, tag: str) -> int:
    count = round(BROADCAST_RATE * BROADCAST_S)
    start = time.monotonic()
    for n in range(count):
        delay = start + n / BROADCAST_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        data = {
            "symbol": "BTCUSDT",
            "exchange": "paper",
            "price": "1",
            "run": tag,
            "n": n,
            "sent_ns": time.time_ns(),
        }
        await redis.publish(channel, encode(EventType.PRICE_UPDATE, data))
    return count


async def _broadcast_pass(
    pool: _ClientPool, group: str, redis: Redis, channel: str, pids: dict[str, list[int]]
) -> dict[str, Any]:
    tag = f"{group}-{time.time_ns()}"
    started = await pool.each({"cmd": "start", "group": group, "tag": tag})
    sockets = sum(r["sockets"] for r in started)
    meter = CpuMeter(lambda: pids)
    sent = await _publish(redis, channel, tag)
    deadline = time.monotonic() + DELIVERY_WAIT_S
    while time.monotonic() < deadline:
        got = sum(r["got"] for r in await pool.each({"cmd": "progress"}))
        if got >= sent * sockets:
            break
        await asyncio.sleep(0.2)
    cpu = meter.stop()
    reports = await pool.each({"cmd": "report", "expected": sent})
    latencies = [v / 1000 for r in reports for v in r["latencies_us"]]
    # When the last client got each broadcast: how long one fan-out took, broadcast by
    # broadcast (a backlog shows as a rising series, a stall as one slow broadcast).
    done: dict[int, float] = defaultdict(float)
    for r in reports:
        for n, v in zip(r["broadcast_of"], r["latencies_us"], strict=True):
            done[n] = max(done[n], v / 1000)
    fanout = [done[n] for n in sorted(done)]
    per_s = round(BROADCAST_RATE)
    by_second = [percentile(fanout[i : i + per_s], 50) for i in range(0, len(fanout), per_s)]
    codes: Counter[str] = Counter()
    for r in reports:
        codes.update(r["close_codes"])
    return {
        "server": group,
        "clients": sockets,
        "broadcasts": sent,
        "expected": sent * sockets,
        "delivered": len(latencies),
        "lost": sum(r["lost"] for r in reports),
        "duplicates": sum(r["duplicates"] for r in reports),
        "seq_gaps": sum(r["gaps"] for r in reports) if group == "engine" else None,
        "closed": sum(r["closed"] for r in reports),
        "close_codes": dict(codes),
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": max(latencies, default=math.nan),
        },
        "fanout_ms": _quantiles(fanout),
        "fanout_by_second_ms": by_second,
        "cpu_s": cpu,
    }


async def _broadcast(
    stack: SplitStack, pool: _ClientPool, bare_port: int, bare_pid: int
) -> dict[str, Any]:
    engine_pid = stack.api.proc.pid
    biggest = BROADCAST_SIZES[0]
    shares = _shares(biggest, pool.count)
    await pool.each({"cmd": "close", "group": "engine"}, keep=shares)
    began = time.perf_counter()
    subscribed = await pool.each({"cmd": "subscribe", "group": "engine", "topic": "prices"})
    subscribe_s = time.perf_counter() - began
    sub_ms = [t for r in subscribed for t in r["ms"]]
    sub_errors = sum(sum(r["errors"].values()) for r in subscribed)
    rss0_bare = _rss(bare_pid)
    bare_open = await pool.each(
        {
            "cmd": "open",
            "group": "bare",
            "url": f"ws://127.0.0.1:{bare_port}/",
            "in_flight": HANDSHAKES_IN_FLIGHT,
        },
        count=shares,
    )
    await pool.each({"cmd": "subscribe", "group": "bare", "topic": "prices"})
    await asyncio.sleep(1.0)
    bare_kib = (_rss(bare_pid) - rss0_bare) / 1024 / max(1, sum(r["open"] for r in bare_open))
    print(
        f"   {len(sub_ms):,} engine sockets subscribed to prices in {subscribe_s:.1f} s "
        f"(reply p50 {ms(percentile(sub_ms, 50))}, p99 {ms(percentile(sub_ms, 99))}, "
        f"{sub_errors} failed); bare server: {sum(r['open'] for r in bare_open):,} sockets, "
        f"{bare_kib:.1f} KiB RSS each",
        flush=True,
    )
    redis = Redis.from_url(stack.api.redis_url)
    passes: list[dict[str, Any]] = []
    try:
        for size in BROADCAST_SIZES:
            keep = _shares(size, pool.count)
            for group in ("engine", "bare"):
                await pool.each({"cmd": "close", "group": group}, keep=keep)
            for group, channel in (("engine", PRICE_CHANNEL), ("bare", BARE_CHANNEL)):
                pids = {
                    "server": [engine_pid if group == "engine" else bare_pid],
                    "redis": stack.pids()["redis"],
                    "clients": pool.pids,
                }
                result = await _broadcast_pass(pool, group, redis, channel, pids)
                passes.append(result)
                q = result["latency_ms"]
                print(
                    f"   {size:>5,} clients, {group:<6}: p50 {ms(q['p50'])}, p99 {ms(q['p99'])}, "
                    f"max {ms(q['max'])}; lost {result['lost']:,} of {result['expected']:,}; "
                    "last client's latency per broadcast, median by second: "
                    + ", ".join(f"{v:,.0f}" for v in result["fanout_by_second_ms"])
                    + " ms",
                    flush=True,
                )
    finally:
        await redis.aclose()
    for group in ("engine", "bare"):
        await pool.each({"cmd": "close", "group": group, "keep": 0})
    return {
        "subscribe_s": subscribe_s,
        "subscribe_ms": _quantiles(sub_ms),
        "subscribe_failed": sub_errors,
        "bare_kib_per_connection": bare_kib,
        "passes": passes,
    }


def _report_broadcast(r: dict[str, Any]) -> None:
    print(
        f"\n   Broadcast: {BROADCAST_RATE:g} price updates/s for {BROADCAST_S:g} s on Redis "
        "pub/sub, latency = client receive - publish (ms)\n"
        "   clients  server  delivered / expected  lost  seq gaps  closed       p50       p90"
        "       p99       max  fan-out p50 / max   pass  server CPU (per delivery)  clients CPU"
    )
    for p in r["passes"]:
        q, cpu = p["latency_ms"], p["cpu_s"]
        gaps = "n/a" if p["seq_gaps"] is None else f"{p['seq_gaps']:,}"
        print(
            f"   {p['clients']:>7,}  {p['server']:<6}  {p['delivered']:>9,} / {p['expected']:>9,}  "
            f"{p['lost']:>4,}  {gaps:>8}  {p['closed']:>6,}  {ms(q['p50']):>8}  "
            f"{ms(q['p90']):>8}  {ms(q['p99']):>8}  {ms(q['max']):>8}  "
            f"{ms(p['fanout_ms']['p50']):>8} / {ms(p['fanout_ms']['max']):>8}  "
            f"{cpu['wall']:>4.1f} s  {cpu['server'] / cpu['wall']:>5.0%} "
            f"({cpu['server'] * 1e6 / max(p['delivered'], 1):>4.1f} µs)"
            f"  {cpu['clients'] / cpu['wall']:>17.0%}"
        )
    engine = {p["clients"]: p for p in r["passes"] if p["server"] == "engine"}
    bare = {p["clients"]: p for p in r["passes"] if p["server"] == "bare"}
    for n, p in sorted(engine.items()):
        if n in bare:
            e99, b99 = p["latency_ms"]["p99"], bare[n]["latency_ms"]["p99"]
            print(f"   {n:>5,} clients: engine p99 {ms(e99)} vs bare {ms(b99)} ({e99 / b99:.1f}x)")
    top = engine.get(max(BROADCAST_SIZES))
    if top is not None:
        p99 = top["latency_ms"]["p99"]
        verdict = "met" if p99 < 250 and top["lost"] == 0 else "MISSED"
        print(
            f"   engine p99 at {max(BROADCAST_SIZES):,} clients: {ms(p99)}, lost {top['lost']}"
            f" (target p99 < 250 ms: {verdict})"
        )


# ============================================================================ 3. cross-process
async def _cross_pass(api_url: str, ws_url: str, webhook_token: str, tag: str) -> dict[str, Any]:
    seen: dict[tuple[str, str, str], int] = {}  # (type, signal id, position status) → first ns
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(ws_url, heartbeat=None, compress=0)
        replies: asyncio.Queue[str] = asyncio.Queue()
        news = asyncio.Event()

        async def read() -> None:
            async for msg in ws:
                now = time.perf_counter_ns()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                message = orjson.loads(msg.data)
                kind, data = message.get("type"), message.get("data") or {}
                if kind == "ping":
                    await ws.send_str(PONG)
                elif kind in ("connected", "subscribed", "error"):
                    replies.put_nowait(kind)
                elif kind in STORY:
                    sid = str(
                        data.get("id") if kind == "signal_received" else data.get("signal_id")
                    )
                    status = str(data.get("status")) if kind == "position_update" else ""
                    if seen.setdefault((kind, sid, status), now) == now:
                        news.set()

        reader = asyncio.create_task(read())
        try:
            if await replies.get() != "connected":
                raise RuntimeError("the dashboard socket was refused")
            for topic in TOPICS:
                await ws.send_str(orjson.dumps({"type": "subscribe", "topic": topic}).decode())
                if await replies.get() != "subscribed":
                    raise RuntimeError(f"could not subscribe to {topic}")
            # Not measured: the first alerts of a fresh stack pay one-time costs (the paper
            # account, prepared statements, the first position of the symbol).
            await _send_alerts(api_url, webhook_token, tag + "-warm", WARMUP_ALERTS)
            await asyncio.sleep(1.0)
            seen.clear()
            sent = await _send_alerts(api_url, webhook_token, tag, ALERTS)
            deadline = time.monotonic() + EVENT_WAIT_S
            while not _all_seen(sent, seen) and (left := deadline - time.monotonic()) > 0:
                news.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(news.wait(), left)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await ws.close()
    return _cross_result(sent, seen)


async def _send_alerts(
    api_url: str, webhook_token: str, tag: str, count: int
) -> list[dict[str, Any]]:
    """`count` alerts at ALERT_RATE, open loop: even i a long_entry, odd i the long_exit."""
    sent: list[dict[str, Any]] = [{} for _ in range(count)]
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=api_url, timeout=10, limits=limits) as http:

        async def one(i: int) -> None:
            alert: dict[str, str] = {
                "token": webhook_token,
                "symbol": "BTCUSDT",
                "alert_id": f"{tag}-{i}",
            }
            if i % 2 == 0:
                alert |= {"action": "long_entry", "qty": "0.002", "stop_loss": "55000"}
            else:
                alert["action"] = "long_exit"
            began = time.perf_counter_ns()
            try:
                answer = await http.post("/api/webhooks/tradingview", json=alert)
            except httpx.HTTPError as exc:
                sent[i] = {"sent_ns": began, "error": type(exc).__name__}
                return
            body = answer.json() if answer.status_code == 200 else {}
            sent[i] = {
                "sent_ns": began,
                "answer_ms": (time.perf_counter_ns() - began) / 1e6,
                "status": answer.status_code,
                "signal_id": str(body.get("signal_id", "")),
                "outcome": body.get("status"),
            }

        start = time.monotonic()
        tasks = []
        for i in range(count):
            delay = start + i / ALERT_RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return sent


def _expected(sent: list[dict[str, Any]], i: int) -> list[tuple[str, str, str]]:
    """The events alert i should bring: its signal; its fill; the position it opened (an
    entry) or closed (an exit: the position names the entry's signal)."""
    sid = sent[i].get("signal_id")
    if not sid:
        return []
    if i % 2 == 0:
        position = ("position_update", sid, "open")
    else:
        position = ("position_update", str(sent[i - 1].get("signal_id")), "closed")
    return [("signal_received", sid, ""), ("trade_executed", sid, ""), position]


def _all_seen(sent: list[dict[str, Any]], seen: dict[tuple[str, str, str], int]) -> bool:
    return all(seen.get(key) is not None for i in range(len(sent)) for key in _expected(sent, i))


def _cross_result(
    sent: list[dict[str, Any]], seen: dict[tuple[str, str, str], int]
) -> dict[str, Any]:
    latency: dict[str, list[float]] = {kind: [] for kind in STORY}
    missing: Counter[str] = Counter()
    for i, alert in enumerate(sent):
        for key in _expected(sent, i):
            at = seen.get(key)
            if at is None:
                missing[key[0]] += 1
            else:
                latency[key[0]].append((at - alert["sent_ns"]) / 1e6)
    answers = [a["answer_ms"] for a in sent if "answer_ms" in a]
    # A stall shows as several consecutive alerts answered late (at 10/s, 100 ms apart).
    first = min((a["sent_ns"] for a in sent if a), default=0)
    slowest = sorted(
        (
            (a["answer_ms"], i, (a["sent_ns"] - first) / 1e9)
            for i, a in enumerate(sent)
            if "answer_ms" in a
        ),
        reverse=True,
    )[:5]
    return {
        "slowest_answers": [{"alert": i, "at_s": at, "answer_ms": v} for v, i, at in slowest],
        "alerts": len(sent),
        "accepted": sum(1 for a in sent if a.get("signal_id")),
        "http_errors": dict(
            Counter(str(a.get("status", a.get("error"))) for a in sent if not a.get("signal_id"))
        ),
        "webhook_ms": _quantiles(answers),
        "events_ms": {kind: _quantiles(v) | {"n": len(v)} for kind, v in latency.items()},
        "missing": dict(missing),
    }


class _FsyncProbe:
    """A small write and fsync every 100 ms, in a thread, on the disk of the data directories:
    the disk's own stalls during a pass (every webhook's commit waits for an fsync). Seldom
    enough not to add much to the journal commits PostgreSQL waits for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fsync-probe", daemon=True)

    def _run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while not self._stop.wait(0.1):
                os.write(fd, b"x" * 512)
                began = time.perf_counter()
                os.fsync(fd)
                self.latencies.append((time.perf_counter() - began) * 1000)
        finally:
            os.close(fd)

    def __enter__(self) -> _FsyncProbe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        return _quantiles(self.latencies) | {
            "n": len(self.latencies),
            "over_100ms": sum(1 for v in self.latencies if v > 100),
        }


async def _cross_process(ctx: Context, stack: SplitStack) -> dict[str, Any]:
    main = ctx.engine
    variants = (
        ("API + worker", stack.api.url, stack.ws_url, stack.webhook_token),
        (
            "single process",
            main.url,
            f"ws://127.0.0.1:{main.port}/ws/connect?token={main.info['access_token']}",
            main.info["webhook_token"],
        ),
    )
    results: dict[str, Any] = {}
    for name, api_url, ws_url, token in variants:
        print(f"   {name}: {ALERTS} alerts at {ALERT_RATE:g}/s ...", flush=True)
        # This process sends and receives: no collector pause of its own (40-60 ms in a
        # trial run) in the measurement.
        gc.collect()
        gc.disable()
        try:
            with _FsyncProbe(stack.api.local_dir.parent / "fsync-probe") as probe:
                result = await _cross_pass(api_url, ws_url, token, f"ws-{time.time_ns()}")
            results[name] = result | {"fsync_ms": probe.summary()}
        finally:
            gc.enable()
    return results


def _report_cross(r: dict[str, Any]) -> None:
    print(
        f"\n   Cross-process events: {ALERTS} alerts at {ALERT_RATE:g}/s, POST → event on the "
        "API process's socket (ms)\n"
        "   engine          accepted  webhook p50 / p99   "
        + "  ".join(f"{k} p50 / p99 / max (n)".ljust(36) for k in STORY)
    )
    for name, v in r.items():
        cells = []
        for kind in STORY:
            q = v["events_ms"][kind]
            cells.append(f"{ms(q['p50'])} / {ms(q['p99'])} / {ms(q['max'])} ({q['n']})".ljust(36))
        w = v["webhook_ms"]
        print(
            f"   {name:<15} {v['accepted']:>4}/{v['alerts']:<4} {ms(w['p50']):>8} / "
            f"{ms(w['p99']):>8}   " + "  ".join(cells)
        )
        print(
            "     slowest webhook answers: "
            + ", ".join(
                f"#{a['alert']} (at {a['at_s']:.1f} s) {ms(a['answer_ms'])}"
                for a in v["slowest_answers"]
            )
        )
        f = v["fsync_ms"]
        print(
            f"     disk during the pass: fsync p50 {ms(f['p50'])}, p99 {ms(f['p99'])}, max "
            f"{ms(f['max'])}, {f['over_100ms']} of {f['n']} over 100 ms"
        )
        if v["missing"] or v["http_errors"]:
            print(f"     missing events: {v['missing']}; refused alerts: {v['http_errors']}")


# ============================================================================ the benchmark
async def run(ctx: Context) -> dict[str, Any]:
    soft_before, soft, hard = raise_nofile()
    print(
        f"\n== 3. WebSocket: idle connections, broadcast fan-out, cross-process events\n"
        f"   open files: soft limit {soft_before:,} raised to {soft:,} (hard {hard:,}); "
        f"ephemeral ports {_port_range()} per client address",
        flush=True,
    )
    workdir = local_dir(ctx.workdir).parent
    workdir.mkdir(parents=True, exist_ok=True)
    await ctx.wait_quiet()
    print("   starting jadetrade serve --no-workers on a stack of its own ...", flush=True)
    results: dict[str, Any] = {"nofile": {"before": soft_before, "soft": soft, "hard": hard}}
    pool = _ClientPool(ctx.children, workdir)
    stack: SplitStack | None = None
    bare: subprocess.Popen[bytes] | None = None
    try:
        stack = (await asyncio.gather(start_stack(ctx, workdir, "ws", WS_ENV), pool.start()))[0]
        await asyncio.gather(
            raise_risk_limits(stack.api.url, stack.access_token),
            raise_risk_limits(ctx.engine.url, ctx.engine.info["access_token"]),
        )
        # Part 3 runs first, on the fresh API process: after parts 1 and 2 its heap holds
        # the garbage of 10,000 closed connections, whose collection would land in part 3.
        print("   3. cross-process events (first): starting jadetrade worker ...", flush=True)
        await start_worker(ctx, stack, workdir, "ws")
        await ctx.wait_quiet()
        results["cross_process"] = await _cross_process(ctx, stack)
        assert stack.worker is not None
        ctx.children.stop(stack.worker)
        bare, bare_port = await _start_bare(ctx.children, workdir, stack.api.redis_url)
        print("   1. idle connections ...", flush=True)
        results["idle"] = await _idle(stack, pool)
        print("   2. broadcast ...", flush=True)
        results["broadcast"] = await _broadcast(stack, pool, bare_port, bare.pid)
    finally:
        pool.stop()
        if bare is not None:  # before the API: it stops the Redis the bare server reads
            ctx.children.stop(bare)
        if stack is not None:
            if stack.worker is not None:  # the worker uses the API's stack
                ctx.children.stop(stack.worker)
            ctx.children.stop(stack.api.proc)
    _report_idle(results["idle"])
    _report_broadcast(results["broadcast"])
    _report_cross(results["cross_process"])
    return results


def summarize(r: dict[str, Any]) -> None:
    """The summary lines of bench/run.py."""
    top = r["idle"]["steps"][-1]
    print(
        f"   ws idle: {top['open']:,} connections on one API process, {top['failed']} failed, "
        f"RSS {top['rss_mib']:,.0f} MiB = {top['rss_kib_per_connection']:.1f} KiB per "
        f"connection (target 10,000: {_idle_verdict(r['idle'])})"
    )
    by = {(p["server"], p["clients"]): p for p in r["broadcast"]["passes"]}
    n = max(BROADCAST_SIZES)
    engine, bare = by.get(("engine", n)), by.get(("bare", n))
    if engine and bare:
        p99 = engine["latency_ms"]["p99"]
        print(
            f"   ws broadcast to {n:,} clients: engine p99 {ms(p99)}, bare websockets p99 "
            f"{ms(bare['latency_ms']['p99'])}; lost {engine['lost']} (target p99 < 250 ms: "
            f"{'met' if p99 < 250 and not engine['lost'] else 'MISSED'})"
        )
    for name, v in r["cross_process"].items():
        q = v["events_ms"]
        print(
            f"   ws events, {name}: POST → signal_received p99 {ms(q['signal_received']['p99'])}"
            f", trade_executed p99 {ms(q['trade_executed']['p99'])}, position_update p99 "
            f"{ms(q['position_update']['p99'])}"
        )


# ============================================================================ client-check
async def _library_client(lib: str, port: int, count: int, messages: int, out: Path) -> None:
    """Open `count` sockets with `lib`, write the RSS they took, read `messages` broadcasts
    on each and write the CPU it took per message."""
    raise_nofile()
    got = 0
    done = asyncio.Event()

    def seen(raw: bytes | str) -> None:
        nonlocal got
        orjson.loads(raw)
        got += 1
        if got >= count * messages:
            done.set()

    url = f"ws://127.0.0.1:{port}/"
    gate = asyncio.Semaphore(64)
    keep: list[object] = []
    rss0 = _rss()
    began = time.perf_counter()
    if lib == "aiohttp":
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def one_aiohttp() -> None:
            async with gate:
                ws = await session.ws_connect(url, heartbeat=None, compress=0, decode_text=False)
                await ws.receive()
                await ws.send_str(SUBSCRIBE_PRICES)
                await ws.receive()

            async def read() -> None:
                async for msg in ws:
                    seen(msg.data)

            keep.append(asyncio.create_task(read()))

        await asyncio.gather(*(one_aiohttp() for _ in range(count)))
    else:
        from websockets.asyncio.client import ClientConnection, connect

        async def one_websockets() -> None:
            async with gate:
                ws: ClientConnection = await connect(url, ping_interval=None, compression=None)
                await ws.recv()
                await ws.send(SUBSCRIBE_PRICES)
                await ws.recv()

            async def read() -> None:
                async for raw in ws:
                    seen(raw)

            keep.append(asyncio.create_task(read()))

        await asyncio.gather(*(one_websockets() for _ in range(count)))
    connect_s = time.perf_counter() - began
    await asyncio.sleep(1.0)
    rss = _rss()
    cpu0 = sum(os.times()[:2])
    _write(out, {"ready": True})
    await asyncio.wait_for(done.wait(), 120)
    cpu = sum(os.times()[:2]) - cpu0
    _write(
        out,
        {
            "lib": lib,
            "connect_s": connect_s,
            "kib_per_connection": (rss - rss0) / 1024 / count,
            "cpu_us_per_message": cpu * 1e6 / (count * messages),
        },
    )
    os._exit(0)  # no orderly close of thousands of sockets: the numbers are written


async def _client_check(count: int, messages: int) -> None:
    from app.embedded import redis as embedded_redis

    raise_nofile()
    children = Children()
    with tempfile.TemporaryDirectory(prefix="jadetrade-ws-check-") as tmp:
        workdir = Path(tmp)
        running = embedded_redis.start(workdir / "redis", free_port(), persistent=False)
        try:
            _pid, port = await _start_bare(children, workdir, running.url())
            redis = Redis.from_url(running.url())
            print(f"{count:,} sockets per library, {messages} broadcasts on each, bare server")
            for lib in ("aiohttp", "websockets", "aiohttp", "websockets"):
                out = workdir / f"check-{time.monotonic_ns()}.json"
                proc = children.start(
                    f"{lib} client",
                    [
                        PYTHON,
                        THIS,
                        "library-client",
                        "--lib",
                        lib,
                        "--port",
                        str(port),
                        "--count",
                        str(count),
                        "--messages",
                        str(messages),
                        "--out",
                        out,
                    ],
                )
                while not out.exists():
                    if proc.poll() is not None:
                        raise RuntimeError(f"the {lib} client failed")
                    await asyncio.sleep(0.1)
                for n in range(messages):
                    payload = {
                        "symbol": "BTCUSDT",
                        "exchange": "paper",
                        "price": "1",
                        "n": n,
                        "run": "check",
                        "sent_ns": time.time_ns(),
                    }
                    await redis.publish(BARE_CHANNEL, encode(EventType.PRICE_UPDATE, payload))
                    await asyncio.sleep(0.05)
                if await wait(proc, 120):
                    raise RuntimeError(f"the {lib} client failed")
                r = orjson.loads(out.read_bytes())
                print(
                    f"  {lib:<10}: connect {r['connect_s']:.2f} s, "
                    f"{r['kib_per_connection']:.1f} KiB RSS per socket, "
                    f"{r['cpu_us_per_message']:.1f} µs CPU per message received"
                )
            await redis.aclose()
        finally:
            children.stop_all()
            embedded_redis.stop(workdir / "redis")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode")
    client = sub.add_parser("client", help="(internal) a client process")
    client.add_argument("--control", required=True)
    client.add_argument("--index", type=int, required=True)
    bare = sub.add_parser("bare-ws", help="(internal) the bare websockets fan-out server")
    bare.add_argument("--port", type=int, required=True)
    bare.add_argument("--redis", required=True)
    check = sub.add_parser("client-check", help="aiohttp vs websockets as a client")
    check.add_argument("--count", type=int, default=2000)
    check.add_argument("--messages", type=int, default=50)
    lib = sub.add_parser("library-client", help="(internal) one client-check measurement")
    lib.add_argument("--lib", choices=("aiohttp", "websockets"), required=True)
    lib.add_argument("--port", type=int, required=True)
    lib.add_argument("--count", type=int, required=True)
    lib.add_argument("--messages", type=int, required=True)
    lib.add_argument("--out", type=Path, required=True)
    args, rest = p.parse_known_args(argv)
    if args.mode == "client":
        uvloop.run(_client_main(args.control, args.index))
    elif args.mode == "bare-ws":
        uvloop.run(_bare_main(args.port, args.redis, BARE_CHANNEL))
    elif args.mode == "client-check":
        uvloop.run(_client_check(args.count, args.messages))
    elif args.mode == "library-client":
        uvloop.run(_library_client(args.lib, args.port, args.count, args.messages, args.out))
    else:
        import run as bench_run

        return bench_run.main(["--only", "websocket", *rest])
    return 0


if __name__ == "__main__":
    sys.exit(main())
