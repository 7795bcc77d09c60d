"""The processes a benchmark run starts — the engine (with its embedded PostgreSQL and Redis),
the bare baseline app, load generators, CLI calls — and their clean-up.

Every child is registered the moment it starts and `Children.stop_all()` ends the ones still
running, newest first: SIGTERM, then SIGKILL after a grace period. The engine stops its own
PostgreSQL and Redis on SIGTERM; `stop_embedded()` then makes sure of it from the data
directory's pid files, so nothing outlives the run even if the engine had to be killed.
Processes are only ever signalled by the pid we started, never by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "bot-engine" / ".venv" / "bin"
JADETRADE = BIN / "jadetrade"
PYTHON = BIN / "python"

# Settings the engine must not inherit from the caller's shell: they would point it at
# another database or change what is measured.
_SCRUBBED = (
    "DATABASE_URL",
    "REDIS_URL",
    "PUBLIC_URL",
    "ENVIRONMENT",
    "AUTH_MODE",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "LOKI_URL",
    "WORKER_CONCURRENCY",
    "DATABASE_POOL_SIZE",
    "DATABASE_MAX_OVERFLOW",
    "TRADINGVIEW_IP_ALLOWLIST",
    "MAX_ALERT_AGE_S",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    grace_s: float


class Children:
    def __init__(self) -> None:
        self._children: list[Child] = []

    def start(
        self,
        name: str,
        args: Sequence[str | Path],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdout: IO[Any] | int | None = subprocess.DEVNULL,
        stderr: IO[Any] | int | None = subprocess.DEVNULL,
        grace_s: float = 5.0,
    ) -> subprocess.Popen[bytes]:
        # A session of its own: Ctrl-C reaches only this script, which then stops the child
        # in order (the engine must get the chance to stop PostgreSQL and Redis).
        proc = subprocess.Popen(
            [str(a) for a in args],
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        self._children.append(Child(name, proc, grace_s))
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        for child in self._children:
            if child.proc is proc:
                _terminate(child)
        self._children = [c for c in self._children if c.proc is not proc]

    def stop_all(self) -> None:
        while self._children:
            _terminate(self._children.pop())


def _terminate(child: Child) -> None:
    proc = child.proc
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=child.grace_s)
    except subprocess.TimeoutExpired:
        print(f"  {child.name} (pid {proc.pid}) ignored SIGTERM; killing it", file=sys.stderr)
        proc.kill()
        proc.wait()


async def wait(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """Wait for a child without blocking the event loop (and without a thread to cancel)."""
    deadline = time.monotonic() + timeout_s
    while (code := proc.poll()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"pid {proc.pid} still running after {timeout_s:.0f} s")
        await asyncio.sleep(0.05)
    return code


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{url} exited with code {proc.returncode} before answering")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout_s:.0f} s")


# ------------------------------------------------------------------------------ the engine
@dataclass
class Engine:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    local_dir: Path
    port: int
    pg_port: int
    redis_port: int
    info: dict[str, str]  # what `jadetrade run --json` printed
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/jadetrade"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def server_pids(self) -> dict[str, list[int]]:
        """Engine process, PostgreSQL (postmaster and backends) and Redis, for CPU accounting."""
        pids: dict[str, list[int]] = {"engine": [self.proc.pid], "postgres": [], "redis": []}
        try:
            postmaster = int((self.local_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
            parent = psutil.Process(postmaster)
            pids["postgres"] = [postmaster] + [p.pid for p in parent.children()]
        except (OSError, ValueError, psutil.Error):
            pass
        with contextlib.suppress(OSError, ValueError, KeyError):
            state = json.loads((self.local_dir / "redis" / "redis.json").read_text())
            pids["redis"] = [int(state["pid"])]
        return pids


def engine_env(workdir: Path, extra: Mapping[str, str]) -> tuple[dict[str, str], dict[str, int]]:
    ports = {"PORT": free_port(), "LOCAL_PG_PORT": free_port(), "LOCAL_REDIS_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update({k: str(v) for k, v in ports.items()})
    env.update(
        {
            "ENVIRONMENT": "development",
            "HOST": "127.0.0.1",
            "LOCAL_DIR": str(workdir / "local"),
            **extra,
        }
    )
    return env, ports


async def start_engine(
    children: Children, workdir: Path, extra_env: Mapping[str, str], timeout_s: float = 120
) -> Engine:
    """`jadetrade run --json` on embedded defaults in `workdir`, answering on /health."""
    env, ports = engine_env(workdir, extra_env)
    out_path, log_path = workdir / "engine.json", workdir / "engine.log"
    with out_path.open("wb") as out, log_path.open("wb") as log:
        # cwd = workdir: no developer `.env` is picked up.
        proc = children.start(
            "engine",
            [JADETRADE, "run", "--json"],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=log,
            grace_s=30.0,
        )
    deadline = time.monotonic() + timeout_s
    while not out_path.read_bytes().endswith(b"\n"):
        if proc.poll() is not None:
            raise RuntimeError(f"the engine exited with code {proc.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the engine printed nothing in {timeout_s:.0f} s; see {log_path}")
        await asyncio.sleep(0.1)
    info = json.loads(out_path.read_bytes().splitlines()[0])
    engine = Engine(
        proc,
        env,
        workdir / "local",
        ports["PORT"],
        ports["LOCAL_PG_PORT"],
        ports["LOCAL_REDIS_PORT"],
        info,
        log_path,
    )
    await wait_healthy(engine.url + "/health", proc, max(5.0, deadline - time.monotonic()))
    return engine


def stop_embedded(local_dir: Path) -> None:
    """Stop PostgreSQL and Redis of `local_dir` if the engine could not (no-op otherwise)."""
    if not local_dir.exists():
        return
    from app.embedded import postgres, redis

    if postgres.read_running(local_dir / "pgdata") is not None:
        print("  PostgreSQL was still running; stopping it", file=sys.stderr)
        postgres.stop(local_dir / "pgdata")
    if redis.read_running(local_dir / "redis") is not None:
        print("  Redis was still running; stopping it", file=sys.stderr)
        redis.stop(local_dir / "redis")


async def cli_json(children: Children, engine: Engine, *args: str, timeout_s: float = 60) -> Any:
    """Run `jadetrade ARGS --json` against the running engine's stack; its JSON answer."""
    out = engine.local_dir.parent / f"cli-{time.monotonic_ns()}.json"
    with out.open("wb") as fh:
        proc = children.start(
            "jadetrade " + args[0],
            [JADETRADE, *args, "--json"],
            env=engine.env,
            cwd=engine.local_dir.parent,
            stdout=fh,
        )
    code = await wait(proc, timeout_s)
    text = out.read_text()
    if code != 0:
        raise RuntimeError(f"jadetrade {' '.join(args)} failed ({code}): {text.strip()}")
    return json.loads(text)


# ------------------------------------------------------------------------------ the baseline
async def start_bare(children: Children, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    with (workdir / "bare.log").open("wb") as log:
        proc = children.start(
            "bare app",
            [PYTHON, REPO / "bench" / "bare_app.py", "--port", str(port)],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    # The bare app has no /health: a GET on the POST-only path answers 405 once it is up.
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the bare app exited; see {workdir / 'bare.log'}")
            try:
                await client.get(f"http://127.0.0.1:{port}/api/webhooks/tradingview")
                return proc, port
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise TimeoutError("the bare app did not start in 30 s")
