"""`jadetrade run` (what `make run` starts), end to end: embedded PostgreSQL and Redis come
up, the printed alert reaches the webhook route, Ctrl-C leaves nothing running, and a second
start reuses the data."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from app.embedded import postgres, redis
from app.embedded.ports import free_port
from tests.conftest import CapturedLogs, SecretsSeen

JADETRADE = str(Path(sys.executable).parent / "jadetrade")
START_DEADLINE_S = 90


class RunningEngine:
    def __init__(
        self, local_dir: Path, port: int, pg_port: int, redis_port: int, *, as_json: bool = False
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(
            LOCAL_DIR=str(local_dir),
            PORT=str(port),
            LOCAL_PG_PORT=str(pg_port),
            LOCAL_REDIS_PORT=str(redis_port),
            ENVIRONMENT="development",
        )
        env.pop("PUBLIC_URL", None)
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        # With --json, stdout has the one JSON object and the logs go to stderr (a file here).
        self.stderr_file = (local_dir.parent / f"stderr-{port}.log").open("w+")
        self.proc = subprocess.Popen(
            [JADETRADE, "run", *(["--json"] if as_json else [])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file if as_json else subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def log_lines(self) -> list[str]:
        """The engine's log lines (JSON with an event), not the banner or the --json summary."""
        return [x for x in self.lines if x.startswith("{") and '"event":' in x]

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"engine exited early ({self.proc.returncode}):\n{self.output[-3000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"engine not ready in {START_DEADLINE_S}s:\n{self.output[-3000:]}")

    def interrupt(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.stderr_file.seek(0)
        self.lines.extend(self.stderr_file.read().splitlines())
        self.stderr_file.close()
        return code


def _banner_value(output: str, label: str) -> str:
    match = re.search(rf"^\s*{label}\s+(\S+)", output, re.MULTILINE)
    assert match, f"{label!r} not in banner:\n{output}"
    return match.group(1)


def _curl_alert(output: str) -> tuple[str, dict[str, object]]:
    line = next(x for x in output.splitlines() if "curl" in x and "/api/webhooks/" in x)
    argv = shlex.split(line.strip())
    url = next(a for a in argv if a.startswith("http"))
    return url, json.loads(argv[argv.index("-d") + 1])


def _until_terminal(url: str, signal_id: str, auth: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        signal: dict[str, object] = httpx.get(
            f"{url}/api/signals/{signal_id}", headers=auth, timeout=5
        ).json()
        if signal["status"] not in ("queued", "executing"):
            return signal
        assert time.monotonic() < deadline, signal
        time.sleep(0.05)


def _start_watch(output: str) -> subprocess.Popen[str]:
    """The banner's `jadetrade watch` command, stopping after seven events (an alert's six,
    then its notification or a price re-mark of the position); returns once it follows the
    user's events (its first line says so)."""
    line = next(x for x in output.splitlines() if " watch --url " in x)
    watcher = subprocess.Popen([*shlex.split(line.strip()), "--count", "7"],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert watcher.stdout is not None
    first = watcher.stdout.readline()
    assert " connected " in first, first
    return watcher


@pytest.fixture
def ports() -> tuple[int, int, int]:
    return free_port(), free_port(), free_port()


def test_make_run_flow(
    tmp_path: Path,
    ports: tuple[int, int, int],
    captured_logs: CapturedLogs,
    secrets_seen: SecretsSeen,
) -> None:
    local_dir = tmp_path / "local"
    engine = RunningEngine(local_dir, *ports)
    try:
        engine.wait_ready()
        token = _banner_value(engine.output, "Webhook token")
        secrets_seen.add(token)
        url, alert = _curl_alert(engine.output)
        assert alert["token"] == token
        watcher = _start_watch(engine.output)
        response = httpx.post(url, json=alert, timeout=5)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"
        access = _banner_value(engine.output, r"Access token[^\n]*\n")
        secrets_seen.add(access)
        auth = {"Authorization": f"Bearer {access}"}
        signal = _until_terminal(engine.url, response.json()["signal_id"], auth)
        assert signal["status"] == "executed", signal
        positions = httpx.get(f"{engine.url}/api/positions?status=open", headers=auth).json()
        assert [p["symbol"] for p in positions["items"]] == ["BTCUSDT"]
        # The shipped documents were indexed at start: the assistant answers (offline mode:
        # no Anthropic key) from them and from the demo account's own position.
        chat = httpx.post(
            f"{engine.url}/api/chat/",
            json={"message": "how is my BTC position doing, and how do stop losses work?"},
            headers=auth,
            timeout=30,
        ).json()
        assert chat["mode"] == "offline", chat
        assert "Open position symbol BTCUSDT" in chat["response"]
        assert "stop-loss-and-take-profit.md" in [s["document"] for s in chat["sources"]]
        # The banner's own chat command, as a new user pastes it (curl is on every machine
        # this runs on; the stream ends with [DONE]).
        line = next(x for x in engine.output.splitlines() if "/api/chat/stream" in x)
        streamed = subprocess.run(
            shlex.split(line.strip()), capture_output=True, text=True, timeout=60, check=True
        ).stdout
        assert streamed.startswith("event: start\n"), streamed[:200]
        assert "Open position symbol BTCUSDT" in streamed
        assert streamed.rstrip().endswith("data: [DONE]")
        user_id = _banner_value(engine.output, "Demo user id")
        # The printed `watch` command saw the same story over the WebSocket, in order.
        watched, _ = watcher.communicate(timeout=30)
        # The price updater re-marks the open position every second: repeats are expected.
        kinds = [line.split()[1] for line in watched.splitlines()]
        kinds = [k for i, k in enumerate(kinds) if k != "position_update" or kinds[i - 1] != k]
        assert kinds[:6] == ["signal_received", "trade_executed", "trade_update",
                         "trade_update", "position_update", "signal_update"], watched  # fmt: skip
        assert "BTCUSDT long open 0.01500000" in watched
    finally:
        code = engine.interrupt()
        captured_logs.add("\n".join(engine.log_lines))
    assert code in (0, 130), engine.output[-2000:]
    assert postgres.read_running(local_dir / "pgdata") is None
    assert redis.read_running(local_dir / "redis") is None
    leftovers = [
        p.info
        for p in psutil.process_iter(["pid", "name", "cmdline"])
        if str(local_dir) in " ".join(p.info["cmdline"] or [])
        and p.info["name"] != "pytest"
        and p.status() != psutil.STATUS_ZOMBIE
    ]
    assert leftovers == []

    again = RunningEngine(local_dir, *ports, as_json=True)
    try:
        again.wait_ready()
        info = json.loads(again.lines[0])  # --json: one object first on stdout
        assert info["webhook_token"] == token  # same data, same demo token
        assert info["user_id"] == user_id
        secrets_seen.add(info["access_token"])
    finally:
        assert again.interrupt() in (0, 130)
        captured_logs.add("\n".join(again.log_lines))
    assert postgres.read_running(local_dir / "pgdata") is None
