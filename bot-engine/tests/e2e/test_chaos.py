"""Nothing lost, nothing doubled, under faults: a steady stream of TradingView alerts for paper
and Binance accounts flows through API processes (`serve --no-workers`) and several worker
processes while workers are SIGKILLed (and replaced), Redis and PostgreSQL restart, and the
exchange stalls accepted orders past the client's timeout, answers 5xx and answers 429.

Once the faults stop and the engine settles: every alert answered 2xx has a terminal signal,
no signal leg has more than one order on its exchange, every order there is known to the
engine as it is, and the engine's open positions are the exchanges' positions. The drill
prints what it sent, what became of it, and how long the engine took to recover from each
fault. The engine runs on a PostgreSQL and a Redis of the drill's own, so restarting them
leaves the rest of the suite alone.

The suite runs a short drill; `make chaos` runs a longer one (CHAOS_SECONDS and the other
CHAOS_* variables of `tests/support/chaos.py`). The two tests after it pin down, in isolation,
what drills found.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.core.database import ensure_database
from app.core.migrations import upgrade_to_head
from app.core.pg import Connection, create_pool
from app.core.redis import create_redis
from app.embedded import redis as embedded_redis
from app.embedded.ports import free_port
from app.exchanges.request_budget import BudgetLimits, RequestBudget
from app.models.signal import TERMINAL_STATUSES
from app.workers import queue
from app.workers.pipeline import build_pipeline
from app.workers.signal_consumer import SignalConsumer
from app.workers.trade_executor import Outcome, QueuedSignal, SignalExecutor
from tests.conftest import (
    CapturedLogs,
    Factory,
    SecretsSeen,
    http_client,
    make_settings,
    running_app,
)
from tests.exchange_sim.binance_futures import BinanceFuturesServer
from tests.exchange_sim.binance_ws import BinanceWsServer
from tests.support.chaos import (
    PRICES,
    WEBHOOK,
    AlertStream,
    ChaosAccount,
    ChaosParams,
    ChaosStack,
    FaultInjector,
    LegCount,
    Phases,
    PositionComparison,
    SignalRow,
    WorkerFleet,
    api_process,
    binance_requests,
    chaos_env,
    compare_positions,
    leg_counts,
    leg_problems,
    logged_errors,
    recoveries,
    render_report,
    settled,
    signal_rows,
    unfinished,
)
from tests.support.processes import EngineProcess
from tests.support.venues import START_BALANCE, new_credentials

PARAMS = ChaosParams.from_env()
PAPER_USERS = 4
BINANCE_USERS = 2


async def open_accounts(
    settings: Settings, binance: BinanceFuturesServer, secrets: SecretsSeen
) -> list[ChaosAccount]:
    """Users with webhook tokens and room for many trades a day; the Binance ones with a key
    added over the API. Made by an in-process app that is gone before the drill starts."""
    accounts = []
    async with running_app(settings) as app, http_client(app) as client:
        factory = Factory(app, secrets)
        for n in range(PAPER_USERS + BINANCE_USERS):
            user = await factory.user()
            auth = factory.auth(user)
            risk = await client.put(
                "/api/risk-settings", json={"max_daily_trades": 100_000}, headers=auth
            )
            assert risk.status_code == 200, risk.text
            api_key = None
            if n >= PAPER_USERS:
                api_key, secret = new_credentials()
                secrets.add(api_key, secret)
                binance.add_account(api_key, secret, balance=START_BALANCE)
                added = await client.post(
                    "/api/exchange-keys",
                    json={"exchange": "binance", "api_key": api_key, "api_secret": secret},
                    headers=auth,
                )
                assert added.status_code == 201, added.text
            exchange = "paper" if api_key is None else "binance"
            token = await factory.webhook_token(user)
            accounts.append(ChaosAccount(user.id, token, exchange, api_key))
    return accounts


@dataclass
class Deployment:
    """The engine as deployed for the drill, and what the drill needs to reach around it."""

    stack: ChaosStack
    database_url: str
    binance: BinanceFuturesServer
    accounts: list[ChaosAccount]
    apis: list[EngineProcess]
    fleet: WorkerFleet

    @property
    def processes(self) -> list[EngineProcess]:
        """Every engine process started, replaced ones included."""
        return [*self.apis, *self.fleet.every]


@asynccontextmanager
async def deployed(
    tmp_path: Path, secrets: SecretsSeen, captured_logs: CapturedLogs
) -> AsyncIterator[Deployment]:
    """Own PostgreSQL and Redis (migrated), the Binance emulators, the API processes and the
    worker fleet under its supervisor, and the accounts (opened while the processes start);
    all stopped on the way out."""
    stack = ChaosStack(persistent_redis=PARAMS.redis_persistent)
    urls = await asyncio.to_thread(stack.up)
    try:
        await ensure_database(urls.database_url)
        await upgrade_to_head(urls.database_url)
        # Binance lets a filled order's client id be used again: a second send of a leg would
        # be a second order, which is what the drill must be able to see.
        with (
            BinanceFuturesServer(reuse_client_ids="after_close") as binance,
            BinanceWsServer() as ticker_streams,  # no ticks: prices stay where they are set
        ):
            for symbol, price in PRICES.items():
                binance.set_price(symbol, price)
            settings = make_settings(
                urls.database_url, urls.redis_url, tmp_path / "local",
                EXCHANGE_API_URLS={"binance": binance.api_urls},
            )  # fmt: skip
            extra = chaos_env(PARAMS, {"binance": binance.api_urls},
                              {"binance": ticker_streams.url})  # fmt: skip
            logs = tmp_path / "logs"
            logs.mkdir()
            apis = [api_process(settings, extra, logs, f"api-{n}") for n in range(PARAMS.apis)]
            fleet = WorkerFleet(settings, extra, logs, PARAMS.workers)
            supervisor = None
            try:
                booting = asyncio.gather(
                    fleet.start(), *(asyncio.to_thread(p.wait_ready) for p in apis)
                )
                accounts = await open_accounts(settings, binance, secrets)
                await booting
                supervisor = asyncio.create_task(fleet.supervise())
                yield Deployment(stack, urls.database_url, binance, accounts, apis, fleet)
            finally:
                if supervisor is not None:
                    supervisor.cancel()
                    await asyncio.gather(supervisor, return_exceptions=True)
                await asyncio.gather(fleet.stop(), *(asyncio.to_thread(p.stop) for p in apis))
                for process in [*apis, *fleet.every]:  # checked for leaked secrets too
                    captured_logs.add(process.output)
    finally:
        await asyncio.to_thread(stack.down)


@dataclass
class Settled:
    """The books once the engine has settled (or the settling deadline passed)."""

    signals: dict[str, SignalRow]
    positions: PositionComparison
    legs: list[LegCount]


async def settle(deployment: Deployment, accepted: list[str]) -> Settled:
    user_ids = [a.user_id for a in deployment.accounts]
    pool = await create_pool(deployment.database_url, max_size=4)
    try:
        signals = await settled(
            lambda: signal_rows(pool, user_ids),
            lambda rows: not unfinished(rows, accepted),
            timeout_s=PARAMS.settle_s,
        )
        # Then the position syncer's next round for the Binance accounts.
        positions = await settled(
            lambda: compare_positions(pool, deployment.accounts, deployment.binance),
            lambda found: not found.differences,
            timeout_s=15,
        )
        legs = await leg_counts(pool, deployment.accounts, deployment.binance)
    finally:
        await pool.close()
    return Settled(signals, positions, legs)


@pytest.mark.timeout(PARAMS.timeout_s)
async def test_under_faults_no_accepted_alert_is_lost_and_no_order_is_placed_twice(
    tmp_path: Path, secrets_seen: SecretsSeen, captured_logs: CapturedLogs
) -> None:
    phases = Phases()
    async with deployed(tmp_path, secrets_seen, captured_logs) as deployment:
        phases.mark("start-up")
        stream = AlertStream([p.url for p in deployment.apis], deployment.accounts, PARAMS,
                             random.Random(PARAMS.seed))  # fmt: skip
        injector = FaultInjector(PARAMS, deployment.stack, deployment.fleet, deployment.binance,
                                 random.Random(PARAMS.seed + 1))  # fmt: skip
        started_at, start = datetime.now(UTC), time.monotonic()
        await asyncio.gather(
            stream.run(start + PARAMS.seconds + PARAMS.tail_s), injector.run(start)
        )
        phases.mark("drill")
        accepted = [a.signal_id for a in stream.sent if a.signal_id is not None]
        books = await settle(deployment, accepted)
        phases.mark("settling")
    phases.mark("shutdown")

    report = render_report(
        PARAMS, started_at, phases, stream.sent, books.signals, books.legs, books.positions,
        recoveries(injector.faults, books.signals.values()), deployment.fleet,
        logged_errors(p.output for p in deployment.processes),
        binance_requests(deployment.binance),
    )  # fmt: skip
    sys.stdout.write(f"\n{report}\n")  # `make chaos` runs with -s: the numbers are the point

    lost = unfinished(books.signals, accepted)
    assert not lost, f"{len(lost)} accepted alerts without a terminal signal: {lost[:10]}"
    assert all(s.status in TERMINAL_STATUSES for s in books.signals.values())
    problems = leg_problems(books.legs)
    assert not problems, f"{len(problems)} signal legs wrong on the exchange: {problems[:10]}"
    assert not books.positions.differences, books.positions.differences
    # The drill did what it says: every kind of fault, and orders on both venues.
    kinds = {f.kind for f in injector.faults}
    assert kinds >= {"worker_sigkill", "redis_restart", "postgres_restart", "exchange_stall",
                     "exchange_5xx", "exchange_429"}, kinds  # fmt: skip
    executed = {s.exchange for s in books.signals.values() if s.status == "executed"}
    assert executed == {"paper", "binance"}, executed


# A script command with many arguments, as an enqueue script with its XADD would run.
_LONG_SCRIPT_COMMAND = """
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', '1000', '*', 'a', '1', 'b', '2', 'c', '3')
"""


async def test_the_request_budget_script_leaves_redis_running(tmp_path: Path) -> None:
    """What the first drill found: the embedded Redis (6.2) corrupted its memory and hung
    when the request budget's script ran INCRBYFLOAT after a script command with more
    arguments (then the enqueue script's XADD). A Redis of its own, so that a regression takes
    down nothing else."""
    server = embedded_redis.start(tmp_path / "redis", free_port(), persistent=False)
    client = create_redis(server.url())
    try:
        budget = RequestBudget(client, exchange="binance", egress="drill", key_id="key",
                               limits=BudgetLimits(per_address=1e9, per_key=1e9))  # fmt: skip
        long_command = client.register_script(_LONG_SCRIPT_COMMAND)
        for _ in range(50):
            await long_command(keys=["drill:stream"])
            await budget.acquire(2.5)
        assert await client.ping()
        assert await client.xlen("drill:stream") == 50
        [window] = [k async for k in client.scan_iter("jadetrade:xw:binance:ip:drill:*")]
        assert int(await client.get(window) or 0) == 50 * 2500  # in thousandths of weight
    finally:
        await client.aclose()
        embedded_redis.stop(tmp_path / "redis")


async def test_a_doorbell_worn_out_while_its_signal_executed_fails_no_later_signal(
    client: httpx.AsyncClient, factory: Factory, settings: Settings
) -> None:
    """What a drill with a short reclaim time found: while a slow execution (a stalled
    exchange) held a key, its doorbell was reclaimed by other consumers until it counted more
    deliveries than allowed; once the execution had succeeded, the consumer holding the worn
    doorbell failed the key's next signal, which had not been tried once."""
    app = factory.app
    token = await factory.webhook_token(await factory.user())
    alert = {"token": token, "action": "long_exit", "symbol": "ETHUSDT"}
    first = (await client.post(WEBHOOK, json={**alert, "alert_id": "a"})).json()["signal_id"]
    pipe = build_pipeline(settings, app.state.pg, app.state.redis, consumer_name="slow")
    consumer = SignalConsumer(app.state.redis, pipe.executor, consumer_name="reclaimer",
                              max_deliveries=2, reclaim_idle_ms=100)  # fmt: skip
    await queue.ensure_group(app.state.redis)
    # The slow execution's consumer takes the doorbell; others reclaim it while it works.
    [bell] = await queue.read(app.state.redis, "slow", count=10, block_ms=100)
    for _ in range(2):
        [bell] = await queue.reclaim(app.state.redis, "reclaimer", min_idle_ms=0)
    assert bell.deliveries == 3 and str(bell.signal_id) == first
    user_id = bell.user_id
    assert await pipe.executor.run_key(user_id, "ETHUSDT") == 1  # the slow one succeeded
    second = (await client.post(WEBHOOK, json={**alert, "alert_id": "b"})).json()["signal_id"]

    await consumer.handle([bell])  # the worn doorbell of the signal already done

    async with app.state.pg.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id::text, status FROM trading_signals WHERE user_id = $1", user_id
        )
    statuses = dict(rows)
    assert statuses[first] == "skipped"  # no position to exit: done, not failed
    assert statuses[second] != "failed", "a signal never tried was given up"
    await pipe.adapters.aclose()


class _FailsOne(SignalExecutor):
    """An executor whose attempts at one signal crash, as a bug for one alert's shape would."""

    doomed: str = ""

    async def _execute(self, conn: Connection, signal: QueuedSignal) -> Outcome:
        if str(signal.id) == self.doomed:
            raise RuntimeError("simulated failure of one signal")
        return await super()._execute(conn, signal)


async def test_signals_waiting_behind_a_failing_one_are_not_given_up_with_it(
    client: httpx.AsyncClient, factory: Factory, settings: Settings
) -> None:
    """What the longer drills found: the doorbells of a key come back together whenever its
    run fails, so those of the signals waiting behind a failing head ran out of deliveries
    with the head's, and each failed one more signal, never tried."""
    app = factory.app
    token = await factory.webhook_token(await factory.user())
    ids = [
        (await client.post(WEBHOOK, json={"token": token, "action": "long_exit",
                                          "symbol": "ETHUSDT", "alert_id": n})).json()["signal_id"]
        for n in ("doomed", "behind-1", "behind-2")
    ]  # fmt: skip
    pipe = build_pipeline(settings, app.state.pg, app.state.redis, consumer_name="c")
    executor = _FailsOne(app.state.pg, pipe.adapters)
    executor.doomed = ids[0]
    consumer = SignalConsumer(app.state.redis, executor, consumer_name="c", max_deliveries=2,
                              reclaim_idle_ms=100)  # fmt: skip
    await queue.ensure_group(app.state.redis)

    async def statuses() -> dict[str, str]:
        async with app.state.pg.acquire() as conn:
            rows = await conn.fetch("SELECT id::text, status FROM trading_signals")
        return {i: s for i, s in rows if i in ids}

    deadline = time.monotonic() + 30
    while not set((found := await statuses()).values()) <= set(TERMINAL_STATUSES):
        assert time.monotonic() < deadline, found
        bells = await queue.reclaim(app.state.redis, "c", min_idle_ms=100)
        bells += await queue.read(app.state.redis, "c", count=10, block_ms=150)
        await consumer.handle(bells)
    assert [found[i] for i in ids] == ["failed", "skipped", "skipped"]
    await pipe.adapters.aclose()
