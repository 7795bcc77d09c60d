"""The pipeline across real worker processes: arrival order with three workers, nothing lost
and nothing doubled when a worker is killed with SIGKILL mid-batch, and dead letters."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from app.config import Settings
from app.exchanges.price_feed import synthetic_price
from app.models import TradingSignal
from app.models.signal import TERMINAL_STATUSES
from app.workers import queue
from app.workers.pipeline import build_pipeline
from app.workers.signal_consumer import SignalConsumer
from app.workers.trade_executor import SignalExecutor
from tests.conftest import CapturedLogs, Factory

URL = "/api/webhooks/tradingview"
JADETRADE = str(Path(sys.executable).parent / "jadetrade")


class Workers:
    """`jadetrade worker` processes against the test servers."""

    def __init__(self, settings: Settings, logs: CapturedLogs) -> None:
        assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
        self.env = {
            **os.environ,
            "ENVIRONMENT": "test",
            "DATABASE_URL": settings.DATABASE_URL.get_secret_value(),
            "REDIS_URL": settings.REDIS_URL.get_secret_value(),
            "LOCAL_DIR": str(settings.LOCAL_DIR),
            "WORKER_RECLAIM_IDLE_MS": "1500",
            "WORKER_CONCURRENCY": "4",
            "LOG_LEVEL": "WARNING",
            "WORKER_METRICS_PORT": "0",  # several workers on one host: no scrape endpoint
        }
        self.logs = logs
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, count: int = 1) -> list[asyncio.subprocess.Process]:
        started = [
            await asyncio.create_subprocess_exec(
                JADETRADE,
                "worker",
                env=self.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            for _ in range(count)
        ]
        self.procs += started
        return started

    async def stop_all(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            self.logs.add(out.decode(errors="replace"))


@pytest.fixture
async def workers(settings: Settings, captured_logs: CapturedLogs) -> AsyncIterator[Workers]:
    group = Workers(settings, captured_logs)
    try:
        yield group
    finally:
        await group.stop_all()


async def _statuses(factory: Factory, ids: list[str]) -> dict[str, str]:
    async with factory.app.state.sessionmaker() as session:
        rows = await session.execute(
            select(TradingSignal.id, TradingSignal.status).where(
                TradingSignal.id.in_([uuid.UUID(i) for i in ids])
            )
        )
        return {str(i): s for i, s in rows}


async def _until_all_terminal(factory: Factory, ids: list[str], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while True:
        statuses = await _statuses(factory, ids)
        pending = [i for i in ids if statuses.get(i) not in TERMINAL_STATUSES]
        if not pending:
            return
        assert time.monotonic() < deadline, f"{len(pending)} signals not terminal"
        await asyncio.sleep(0.1)


def _stop_below_market(symbol: str) -> str:
    # The synthetic market stays within ±5 % of its base: 12 % under today's price is safe.
    price = synthetic_price(0, symbol, int(time.time()))
    return str((price * Decimal("0.88")).quantize(Decimal("0.1")))


async def test_three_workers_keep_arrival_order(
    client: httpx.AsyncClient, factory: Factory, workers: Workers
) -> None:
    token = await factory.webhook_token(await factory.user())
    stop = _stop_below_market("ETHUSDT")
    bodies = [
        {"token": token, "symbol": "ETHUSDT", "alert_id": f"order-{i}", "qty": "0.01",
         **({"action": "long_entry", "stop_loss": stop} if i % 2 == 0 else {"action": "long_exit"})}
        for i in range(20)
    ]  # fmt: skip
    responses = await asyncio.gather(*(client.post(URL, json=b) for b in bodies))
    assert all(r.status_code == 200 for r in responses)
    ids = [r.json()["signal_id"] for r in responses]
    await workers.start(3)
    await _until_all_terminal(factory, ids, within_s=60)

    async with factory.app.state.sessionmaker() as session:
        rows = (
            await session.execute(
                select(TradingSignal.signal_type, TradingSignal.status, TradingSignal.processed_at)
                .where(TradingSignal.id.in_([uuid.UUID(i) for i in ids]))
                .order_by(TradingSignal.seq)
            )
        ).all()
    # Replaying the signals in arrival (seq) order must give exactly the statuses they got.
    holding, expected = False, []
    for kind, _status, _at in rows:
        if kind == "long_entry":
            expected.append("rejected" if holding else "executed")
            holding = True
        else:
            expected.append("executed" if holding else "skipped")
            holding = False
    assert [status for _k, status, _a in rows] == expected
    processed = [at for _k, _s, at in rows]
    assert processed == sorted(processed)


async def test_sigkill_mid_batch_loses_nothing_and_doubles_nothing(
    client: httpx.AsyncClient, factory: Factory, workers: Workers
) -> None:
    users = [await factory.user() for _ in range(8)]  # 25 alerts each: under the rate limit
    tokens = [await factory.webhook_token(u) for u in users]
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"]
    stops = {s: _stop_below_market(s) for s in symbols}
    bodies: list[dict[str, Any]] = []
    for i in range(200):
        symbol = symbols[i % len(symbols)]
        entry = (i // len(symbols)) % 2 == 0
        bodies.append(
            {"token": tokens[i % len(tokens)], "symbol": symbol, "alert_id": f"kill-{i}",
             "notional_usd": "100",
             **({"action": "long_entry", "stop_loss": stops[symbol]} if entry
                else {"action": "long_exit"})}
        )  # fmt: skip
    ids: list[str] = []
    for chunk in range(0, len(bodies), 20):
        answered = await asyncio.gather(
            *(client.post(URL, json=b) for b in bodies[chunk : chunk + 20])
        )
        assert all(r.status_code == 200 for r in answered)
        ids += [r.json()["signal_id"] for r in answered]

    (victim,) = await workers.start(1)
    deadline = time.monotonic() + 60
    while True:  # kill it in the middle of the batch
        done = sum(s in TERMINAL_STATUSES for s in (await _statuses(factory, ids)).values())
        if done >= 20:
            break
        assert time.monotonic() < deadline, "the worker executed nothing"
        await asyncio.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    assert done < len(ids), "the batch finished before the kill; nothing was tested"
    await workers.start(2)
    await _until_all_terminal(factory, ids, within_s=120)

    async with factory.app.state.engine.connect() as conn:
        doubled = (
            await conn.execute(
                text(
                    "SELECT client_order_id, count(*) FROM paper_orders "
                    "GROUP BY account_id, client_order_id HAVING count(*) > 1"
                )
            )
        ).all()
        assert doubled == []
        # Every executed entry placed exactly one entry order on the exchange.
        executed_entries = await conn.scalar(
            text(
                "SELECT count(*) FROM trading_signals WHERE status = 'executed' "
                "AND signal_type = 'long_entry' AND id = ANY(:ids)"
            ),
            {"ids": [uuid.UUID(i) for i in ids]},
        )
        entry_orders = await conn.scalar(
            text("SELECT count(*) FROM paper_orders WHERE client_order_id LIKE 'jt%e'")
        )
        assert entry_orders == executed_entries
        # The database's open positions are the exchange's.
        db_positions = set(
            (
                await conn.execute(
                    text(
                        "SELECT user_id, symbol, side, quantity FROM real_positions "
                        "WHERE status = 'open'"
                    )
                )
            ).all()
        )
        exchange_positions = set(
            (
                await conn.execute(
                    text("SELECT account_id, symbol, side, quantity FROM paper_positions")
                )
            ).all()
        )
        assert db_positions == exchange_positions
    statuses = await _statuses(factory, ids)
    assert "failed" not in statuses.values()


class _BrokenExecutor(SignalExecutor):
    """An executor whose every attempt crashes, as a persistent bug or outage would."""

    async def run_key(self, user_id: str, symbol: str) -> int:
        raise RuntimeError("simulated persistent failure")


async def test_a_signal_that_keeps_failing_is_dead_lettered(
    client: httpx.AsyncClient, factory: Factory, settings: Settings
) -> None:
    app = factory.app
    token = await factory.webhook_token(await factory.user())
    body = {"token": token, "action": "long_exit", "symbol": "ETHUSDT"}
    signal_id = (await client.post(URL, json=body)).json()["signal_id"]
    pipe = build_pipeline(settings, app.state.pg, app.state.redis, consumer_name="dlq-test")
    consumer = SignalConsumer(
        app.state.redis,
        _BrokenExecutor(app.state.pg, pipe.adapters),
        consumer_name="dlq-test",
        max_deliveries=2,
        reclaim_idle_ms=100,
    )
    await queue.ensure_group(app.state.redis)
    deadline = time.monotonic() + 30
    attempts = 0
    while (await _statuses(factory, [signal_id]))[signal_id] not in TERMINAL_STATUSES:
        assert time.monotonic() < deadline, "never dead-lettered"
        bells = await queue.reclaim(app.state.redis, "dlq-test", min_idle_ms=100)
        bells += await queue.read(app.state.redis, "dlq-test", count=10, block_ms=150)
        attempts += bool(bells)
        if bells:
            await consumer.handle(bells)
    async with app.state.sessionmaker() as session:
        signal = await session.get(TradingSignal, uuid.UUID(signal_id))
    assert signal is not None
    assert signal.status == "failed"
    assert "gave up" in (signal.status_reason or "")
    assert attempts == 3  # two failed deliveries, then the third is dead-lettered
    (dead,) = await app.state.redis.xrange(queue.DEAD_LETTER_STREAM)
    assert dead[1][b"signal_id"].decode() == signal_id
    pending = await app.state.redis.xpending(queue.STREAM, queue.GROUP)
    assert pending["pending"] == 0
