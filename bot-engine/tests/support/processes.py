"""Engine processes for multi-process tests: `jadetrade serve` and `jadetrade worker` started
as the deployment runs them, against the test suite's PostgreSQL and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from app.config import Settings
from app.embedded.ports import free_port

JADETRADE = str(Path(sys.executable).parent / "jadetrade")
READY_DEADLINE_S = 60


def engine_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of an engine process sharing `settings`' database, Redis, token issuer
    (LOCAL_DIR and PUBLIC_URL) and encryption key."""
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        ENVIRONMENT=settings.ENVIRONMENT.value,
        DATABASE_URL=settings.DATABASE_URL.get_secret_value(),
        REDIS_URL=settings.REDIS_URL.get_secret_value(),
        LOCAL_DIR=str(settings.LOCAL_DIR),
        PUBLIC_URL=settings.public_url,
        ENCRYPTION_KEY=settings.ENCRYPTION_KEY.get_secret_value(),
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


class EngineProcess:
    """One engine process; its output (JSON log lines) goes to a file read by `output`."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.port = int(env["PORT"]) if "PORT" in env else None
        self.log_path = log_path
        self._log = log_path.open("w")
        self._terminated = False
        self.proc = subprocess.Popen(
            [JADETRADE, *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @classmethod
    def api(cls, settings: Settings, log_dir: Path, name: str, **extra: str) -> EngineProcess:
        port = free_port()
        env = engine_env(settings, PORT=str(port), HOST="127.0.0.1", **extra)
        return cls(["serve", "--no-workers"], env, log_dir / f"{name}.log")

    @classmethod
    def worker(cls, settings: Settings, log_dir: Path, name: str, **extra: str) -> EngineProcess:
        env = engine_env(settings, WORKER_METRICS_PORT=str(free_port()), **extra)
        return cls(["worker"], env, log_dir / f"{name}.log")

    @property
    def clean_exit_code(self) -> int:
        """The exit code of a clean stop: uvicorn re-raises the SIGTERM it shut down on, so
        143 is a clean stop of `serve`; a worker returns 0."""
        return 143 if self.args[0] == "serve" else 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/connect"

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited ({self.proc.returncode}):\n{self.output[-3000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready in {READY_DEADLINE_S} s:\n{self.output[-3000:]}")

    def wait_logged(self, event: str) -> None:
        """Until a log line with `"event":"<event>"` appears (a worker has no HTTP port)."""
        deadline = time.monotonic() + READY_DEADLINE_S
        marker = f'"event":"{event}"'
        while marker not in self.output.replace('": "', '":"'):
            if self.proc.poll() is not None:
                raise AssertionError(f"exited ({self.proc.returncode}):\n{self.output[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{event} not logged:\n{self.output[-3000:]}")
            time.sleep(0.1)

    def wait_started(self) -> None:
        """An API process until it is ready, a worker until its workers run."""
        if self.port is not None:
            self.wait_ready()
        else:
            self.wait_logged("workers_started")

    def terminate(self) -> None:
        """SIGTERM once, without waiting (`stop` then waits)."""
        if self.proc.poll() is None and not self._terminated:
            self.proc.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self) -> int:
        """SIGTERM, as an orchestrator stops a task; the exit code."""
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def wait_all_started(processes: Sequence[EngineProcess]) -> None:
    """Until every process of a deployment is up (they start in parallel)."""
    for process in processes:
        process.wait_started()


def stop_all(processes: Sequence[EngineProcess]) -> None:
    """Stop every process at once, as a deployment is scaled to zero, and check that each one
    stopped cleanly."""
    for process in processes:
        process.terminate()
    codes = [process.stop() for process in processes]
    expected = [process.clean_exit_code for process in processes]
    assert codes == expected, [(p.log_path.name, p.output[-2000:]) for p in processes]
