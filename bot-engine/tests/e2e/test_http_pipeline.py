"""The acceptance scenarios over real HTTP against a running `jadetrade serve` (uvicorn, in-
process workers, the synthetic paper market) on the test servers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.embedded.ports import free_port
from app.exchanges.price_feed import synthetic_price
from app.logging.loki import LABELS
from tests.api.test_metrics import samples
from tests.conftest import CapturedLogs, Factory
from tests.support.loki_server import Entry, LokiServer
from tests.support.pipeline import eventually

JADETRADE = str(Path(sys.executable).parent / "jadetrade")
TERMINAL = {"executed", "rejected", "skipped", "failed", "logged"}


@pytest.fixture(scope="module")
def loki() -> Iterator[LokiServer]:
    """The engine pushes its lines here too (LOKI_URL), as a deployment without an agent."""
    with LokiServer() as server:
        yield server


@pytest.fixture(scope="module")
async def engine_url(
    settings: Settings, captured_logs: CapturedLogs, loki: LokiServer
) -> AsyncIterator[str]:
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.DATABASE_URL.get_secret_value(),
        "REDIS_URL": settings.REDIS_URL.get_secret_value(),
        "LOCAL_DIR": str(settings.LOCAL_DIR),
        "PUBLIC_URL": settings.public_url,  # tokens minted by the test factory verify here
        "PORT": str(port),
        "WEBHOOK_RATE_LIMIT": "1000",
        "LOKI_URL": loki.url,
        "LOKI_FLUSH_INTERVAL_S": "0.1",
    }
    proc = await asyncio.create_subprocess_exec(
        JADETRADE, "serve", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while True:
                assert proc.returncode is None, "the engine exited"
                try:
                    if (await client.get(f"{url}/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the engine did not become ready"
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        captured_logs.add(out.decode(errors="replace"))


@pytest.fixture
async def http(engine_url: str, clean_state: None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=engine_url, timeout=10) as client:
        yield client


async def _trader(factory: Factory, tier: str = "pro") -> tuple[str, dict[str, str]]:
    user = await factory.user(tier=tier)
    return await factory.webhook_token(user), factory.auth(user)


async def _settle(http: httpx.AsyncClient, response: httpx.Response, auth: dict[str, str]) -> Any:
    assert response.status_code == 200, response.text
    signal_id = response.json()["signal_id"]
    deadline = time.monotonic() + 20
    while True:
        body = (await http.get(f"/api/signals/{signal_id}", headers=auth)).json()
        if body["status"] in TERMINAL:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)


def _long(token: str, symbol: str = "BTCUSDT", **extra: Any) -> dict[str, Any]:
    market = synthetic_price(0, symbol, int(time.time()))
    stop = (market * Decimal("0.88")).quantize(Decimal("0.01"))
    return {"token": token, "action": "long_entry", "symbol": symbol, "stop_loss": str(stop),
            **extra}  # fmt: skip


async def _open(http: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (
        await http.get("/api/positions?status=open", headers=auth)
    ).json()["items"]
    return items


async def test_entry_exit_flip_duplicate_skip(http: httpx.AsyncClient, factory: Factory) -> None:
    token, auth = await _trader(factory)
    hook = "/api/webhooks/tradingview"

    entry = await _settle(http, await http.post(hook, json=_long(token)), auth)
    assert entry["status"] == "executed", entry
    opened = await _open(http, auth)
    assert len(opened) == 1, json.dumps(entry, indent=1)
    (position,) = opened
    notional = Decimal(position["quantity"]) * Decimal(position["entry_price"])
    assert Decimal(position["quantity"]) > 0
    assert notional <= Decimal("1000") * Decimal("1.002")  # capped at max_position_size_usd

    again = await _settle(http, await http.post(hook, json=_long(token, alert_id="x2")), auth)
    assert again["status"] == "rejected"

    short = {"token": token, "action": "short_entry", "symbol": "BTCUSDT", "qty": "0.002",
             "stop_loss": str(synthetic_price(0, "BTCUSDT", int(time.time())) * 2)}  # fmt: skip
    flipped = await _settle(http, await http.post(hook, json=short), auth)
    assert flipped["status"] == "executed", flipped
    (now_open,) = await _open(http, auth)
    assert now_open["side"] == "short"
    assert Decimal(now_open["quantity"]) == Decimal("0.002")

    exit_ = {"token": token, "action": "buy", "market_position": "flat", "symbol": "BTCUSDT.P"}
    closed = await _settle(http, await http.post(hook, json=exit_), auth)
    assert closed["status"] == "executed", closed
    assert await _open(http, auth) == []
    history = (await http.get("/api/positions?status=closed", headers=auth)).json()["items"]
    assert len(history) == 2
    assert all(p["realized_pnl"] is not None for p in history)

    nothing = {"token": token, "action": "long_exit", "symbol": "BTCUSDT"}
    skipped = await _settle(http, await http.post(hook, json=nothing), auth)
    assert skipped["status"] == "skipped"


async def test_an_alert_shows_in_metrics_and_reaches_loki(
    http: httpx.AsyncClient, factory: Factory, loki: LokiServer
) -> None:
    token, auth = await _trader(factory)
    hook = "/api/webhooks/tradingview"
    executed = await _settle(http, await http.post(hook, json=_long(token)), auth)
    assert executed["status"] == "executed", executed
    no_stop = {"token": token, "action": "long_entry", "symbol": "ETHUSDT", "qty": "0.1"}
    rejected = await _settle(http, await http.post(hook, json=no_stop), auth)
    assert rejected["status"] == "rejected"

    found = samples((await http.get("/metrics")).text)

    def value(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted(labels.items())))]

    assert value("jadetrade_alert_to_order_seconds_count", exchange="paper") >= 1
    assert value("jadetrade_orders_total", exchange="paper", status="filled") >= 1
    assert value("jadetrade_signals_finished_total", status="executed") >= 1
    assert value("jadetrade_signals_finished_total", status="rejected") >= 1
    assert value("jadetrade_signal_execution_duration_seconds_count", status="executed") >= 1
    assert value("jadetrade_risk_rejections_total", check="stop_loss") >= 1
    assert value("jadetrade_webhook_duration_seconds_count", status="200") >= 2
    assert value("jadetrade_executions_in_flight") == 0
    for name in ("jadetrade_signal_queue_length", "jadetrade_signal_queue_lag",
                 "jadetrade_signal_queue_pending", "jadetrade_websocket_connections",
                 "process_resident_memory_bytes"):  # fmt: skip
        assert value(name) >= 0
    exposed = {n for n, _ in found}
    assert "jadetrade_log_lines_dropped_total" in exposed

    signal_id = executed["id"]

    async def placed() -> list[Entry]:
        return [e for e in loki.entries if e.metadata.get("signal_id") == signal_id
                and e.fields["event"] == "order_placed"]  # fmt: skip

    (order, *_) = await eventually(placed, bool, what="order_placed line in Loki")
    assert order.labels == {"env": "test", "service": "bot", "component": "trade",
                            "level": "info", "exchange": "paper"}  # fmt: skip
    assert all(set(e.labels) <= set(LABELS) for e in loki.entries)


async def test_rejections_and_free_tier(http: httpx.AsyncClient, factory: Factory) -> None:
    token, auth = await _trader(factory)
    hook = "/api/webhooks/tradingview"
    no_stop = {"token": token, "action": "long_entry", "symbol": "ETHUSDT", "qty": "0.1"}
    rejected = await _settle(http, await http.post(hook, json=no_stop), auth)
    assert rejected["status"] == "rejected"
    assert "stop" in rejected["status_reason"].lower()

    free_token, free_auth = await _trader(factory, tier="free")
    logged = await http.post(hook, json=_long(free_token))
    assert logged.json()["status"] == "logged"
    assert (await http.get("/api/trades", headers=free_auth)).json()["items"] == []


@pytest.mark.parametrize(
    "symbol", ["BTCUSDT", "btcusdt", "BINANCE:BTCUSDT", "BTCUSDT.P", "BTC/USDT", "BTC/USDT:USDT"]
)
async def test_every_symbol_form_over_text_plain(
    http: httpx.AsyncClient, factory: Factory, symbol: str
) -> None:
    token, auth = await _trader(factory)
    body = json.dumps({**_long(token), "symbol": symbol})
    response = await http.post(
        "/api/webhooks/tradingview", content=body, headers={"Content-Type": "text/plain"}
    )
    settled = await _settle(http, response, auth)
    assert settled["symbol"] == "BTCUSDT"
    assert settled["status"] == "executed", settled


async def test_bad_input_gets_the_right_4xx(http: httpx.AsyncClient, factory: Factory) -> None:
    token, _ = await _trader(factory)
    hook = "/api/webhooks/tradingview"
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({"content": b"not json"}, 400, None),
        ({"json": {"action": "long_entry", "symbol": "BTCUSDT"}}, 401, "token"),
        ({"json": {"token": "jt_wh_" + "z" * 43, "action": "long_exit", "symbol": "X"}}, 422,
         "symbol"),
        ({"json": {**_long(token), "action": "hodl"}}, 422, "action"),
        ({"json": {**_long(token), "price": "65000", "take_profit": "1"}}, 422, "take_profit"),
        ({"content": b"{" + b" " * 70_000 + b"}"}, 413, None),
    ]  # fmt: skip
    for request, status, field in cases:
        response = await http.post(hook, **request)
        assert response.status_code == status, (request, response.text)
        error = response.json()["error"]
        assert error["field"] == field
        assert token not in response.text
