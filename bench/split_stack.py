"""The deployment's shape on a stack of its own: `jadetrade serve --no-workers` (one API
process) on an embedded PostgreSQL and Redis under `<dir>/local`, a `pro` user with a webhook
token and an access token made through the CLI, and `jadetrade worker` processes sharing them.

Benchmarks 3 (WebSocket) and 5 (sustained intake) each start one next to the engine of
bench/run.py. They cannot share the main engine's stack: its in-process workers would compete
with the separate worker for the same signal stream.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from alert_to_order import RISK_LIMITS
from context import Context
from processes import JADETRADE, Engine, cli_json, engine_env, wait_healthy


@dataclass
class SplitStack:
    api: Engine
    user_id: str
    webhook_token: str
    access_token: str
    worker: subprocess.Popen[bytes] | None = None
    extra: dict[str, list[int]] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.api.port}/ws/connect?token={self.access_token}"

    def pids(self) -> dict[str, list[int]]:
        found = self.api.server_pids()
        return {"engine": found["engine"], "redis": found["redis"], **self.extra}


async def start_stack(
    ctx: Context, workdir: Path, name: str, extra_env: Mapping[str, str]
) -> SplitStack:
    """`jadetrade serve --no-workers`, which starts the embedded stack under `workdir/local`
    and migrates it; then a `pro` user with a webhook token and an access token (CLI). The
    main engine's webhook rate limit applies here too."""
    extra = {"WEBHOOK_RATE_LIMIT": ctx.engine.env["WEBHOOK_RATE_LIMIT"], **extra_env}
    env, ports = engine_env(workdir, extra)
    log_path = workdir / "api.log"
    with log_path.open("wb") as log:
        proc = ctx.children.start(
            f"{name} api (serve --no-workers)",
            [JADETRADE, "serve", "--no-workers", "--json"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            grace_s=30.0,
        )
    api = Engine(
        proc,
        env,
        workdir / "local",
        ports["PORT"],
        ports["LOCAL_PG_PORT"],
        ports["LOCAL_REDIS_PORT"],
        {},
        log_path,
    )
    await wait_healthy(api.url + "/health", proc, 120)
    user = await cli_json(
        ctx.children, api, "users", "create", "--email", f"{name}-bench@bench.local",
        "--tier", "pro",
    )  # fmt: skip
    token, access = await asyncio.gather(
        cli_json(ctx.children, api, "tokens", "issue", user["id"], "--name", f"{name}-bench"),
        cli_json(ctx.children, api, "auth", "dev-token", user["id"]),
    )
    return SplitStack(api, user["id"], token["token"], access["access_token"])


async def raise_risk_limits(url: str, access_token: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        answer = await client.put(
            "/api/risk-settings",
            json=RISK_LIMITS,
            headers={"Authorization": f"Bearer {access_token}"},
        )
        answer.raise_for_status()


async def start_worker(ctx: Context, stack: SplitStack, workdir: Path, name: str) -> None:
    """`jadetrade worker` on the stack's database and Redis, once it has logged that its
    workers started."""
    log_path = workdir / "worker.log"
    with log_path.open("wb") as log:
        stack.worker = ctx.children.start(
            f"{name} worker",
            [JADETRADE, "worker", "--json"],
            env=stack.api.env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            grace_s=30.0,
        )
    deadline = time.monotonic() + 60
    while b"workers_started" not in log_path.read_bytes():
        if stack.worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start; see {log_path}")
        await asyncio.sleep(0.1)
