"""The web dashboard end to end: `jadetrade serve` with the built dashboard, driven in headless
Debian Chromium by `web/e2e/dashboard.e2e.mjs` (playwright-core). The script signs in with the
dev token, sends alerts, watches them arrive live, closes the position from the UI, streams an
assistant answer and triggers a risk-settings error; this test then checks the outcome in the
database and the browser's log lines in the engine's output. Screenshots land in
`test-artifacts/screenshots/`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.ai.knowledge_base import IndexReport
from app.config import Settings
from app.embedded.ports import free_port
from app.exchanges.price_feed import synthetic_price
from tests.conftest import CapturedLogs
from tests.support.processes import EngineProcess, engine_env

REPO = Path(__file__).resolve().parents[3]
WEB = REPO / "web"
SCRIPT = WEB / "e2e" / "dashboard.e2e.mjs"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))


def _missing() -> list[str]:
    missing = []
    if shutil.which("node") is None:
        missing.append("node")
    if not (WEB / "dist" / "index.html").is_file():
        missing.append("web/dist (make web)")
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        missing.append("web/node_modules (make web)")
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (make browser)")
    return missing


@pytest.fixture(scope="module")
def browser_ready() -> None:
    missing = _missing()
    if missing:
        message = "the browser test needs " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)  # `make test` installs all of them: missing in CI is a fault
        pytest.skip(message)


@pytest.fixture
def engine(
    browser_ready: None,
    settings: Settings,
    clean_state: None,
    shipped_knowledge: IndexReport,
    tmp_path: Path,
    captured_logs: CapturedLogs,
) -> Iterator[EngineProcess]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = engine_env(
        settings,
        PORT=str(port),
        HOST="127.0.0.1",
        PUBLIC_URL=url,
        WEB_DIST_DIR=str(WEB / "dist"),
        WEBHOOK_RATE_LIMIT="1000",
        WORKER_METRICS_PORT="0",
    )
    env.pop("ANTHROPIC_API_KEY", None)  # the assistant answers in offline mode
    process = EngineProcess(["serve"], env, tmp_path / "engine.log")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
        captured_logs.add(process.output)


def _alert() -> dict[str, Any]:
    """A long entry that passes the default risk checks at the synthetic market's price."""
    price = synthetic_price(0, "BTCUSDT", int(time.time()))
    return {
        "action": "long_entry",
        "symbol": "BTCUSDT",
        "stop_loss": str((price * Decimal("0.95")).quantize(Decimal("0.01"))),
        "take_profit": str((price * Decimal("1.10")).quantize(Decimal("0.01"))),
    }


def _log_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for raw in output.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


async def test_the_dashboard_end_to_end(engine: EngineProcess, db_engine: AsyncEngine) -> None:
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    run = await asyncio.create_subprocess_exec(
        "node",
        str(SCRIPT),
        cwd=WEB,
        env={
            **os.environ,
            "BASE_URL": engine.url,
            "ALERT_JSON": json.dumps(_alert()),
            "SCREENSHOT_DIR": str(SCREENSHOTS),
            "CHROMIUM_PATH": str(CHROMIUM),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = (part.decode() for part in await asyncio.wait_for(run.communicate(), 240))
    assert run.returncode == 0, f"{out[-4000:]}\n{err[-4000:]}"
    results = json.loads(out.strip().splitlines()[-1])
    assert results["failed"] is None
    assert results["console_errors"] == []
    names = {Path(p).stem for p in results["screenshots"]}
    for expected in ("03-dashboard-live-position", "04-dashboard-phone-dark", "07-chat-mid-answer"):
        assert expected in names and (SCREENSHOTS / f"{expected}.png").stat().st_size > 10_000

    async with db_engine.connect() as conn:
        signal = (
            await conn.execute(
                text("SELECT status FROM trading_signals WHERE id = :id"),
                {"id": results["signal_id"]},
            )
        ).scalar_one()
        positions = (
            await conn.execute(text("SELECT symbol, status FROM real_positions ORDER BY symbol"))
        ).all()
        leverage = (await conn.execute(text("SELECT max_leverage FROM user_risk_settings"))).all()
    assert signal == "executed"
    assert [tuple(p) for p in positions] == [("BTCUSDT", "closed")]  # closed from the UI
    assert all(row[0] != 500 for row in leverage)  # the refused setting was not applied

    web_lines = [line for line in _log_lines(engine.output) if line.get("service") == "web"]
    assert any(line.get("component") == "auth" for line in web_lines), web_lines[-5:]
