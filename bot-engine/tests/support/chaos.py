"""The chaos drill's machinery: the engine in its deployment's shape (API processes and several
worker processes) on a PostgreSQL and a Redis of its own, which can be restarted without
disturbing the rest of the suite; a steady stream of TradingView alerts; faults injected while
it flows; and the books kept to prove afterwards that nothing was lost and nothing was placed
twice. tests/e2e/test_chaos.py tells the story; its parameters are CHAOS_* variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import shutil
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import psutil

from app.config import Settings
from app.core.pg import Pool
from app.embedded import postgres, redis
from app.embedded.ports import free_port
from app.embedded.stack import LocalStack, StackUrls
from app.models.signal import TERMINAL_STATUSES
from app.workers.trade_executor import CLOSE, ENTRY, STOP, TAKE, UNPROTECTED_CLOSE
from tests.exchange_sim.binance_futures import ALGO_ORDER, ORDER, BinanceFuturesServer
from tests.support.processes import EngineProcess, engine_env

WEBHOOK = "/api/webhooks/tradingview"
LEGS = {ENTRY: "entry", CLOSE: "exit", STOP: "stop loss", TAKE: "take profit",
        UNPROTECTED_CLOSE: "unprotected close"}  # fmt: skip
TRADINGVIEW_TIMEOUT_S = 3.0  # TradingView gives up on a webhook after this long
# Alerts: a fixed size, and a stop and target far outside the paper market's ±5 % walk (and
# the emulator's fixed price), so positions change only by the engine's own orders.
SIZES = {"BTCUSDT": Decimal("0.002"), "ETHUSDT": Decimal("0.04")}
PRICES = {"BTCUSDT": Decimal("65000"), "ETHUSDT": Decimal("3500")}
ACTIONS = ("long_entry", "short_entry", "long_exit", "short_exit")
ACTION_WEIGHTS = (3, 3, 2, 2)


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


@dataclass(frozen=True)
class ChaosParams:
    """What a drill does; every field can be set from the environment (`from_env`)."""

    seconds: float = 15.0  # CHAOS_SECONDS: how long faults are injected
    rate: float = 4.0  # CHAOS_RATE: alerts per second, all along
    # CHAOS_BINANCE_SHARE: the fraction of alerts for Binance accounts. Every Binance request,
    # the position syncer's too, is charged to the one egress address's budget (80 % of
    # Binance's 2,400 weight a minute); past it, signals wait and then fail "request budget
    # spent", which is not what the drill is about.
    binance_share: float = 0.15
    workers: int = 2  # CHAOS_WORKERS: `jadetrade worker` processes
    apis: int = 1  # CHAOS_APIS: `jadetrade serve --no-workers` processes, sent alerts in turn
    seed: int = 1  # CHAOS_SEED: which users, actions and workers the drill picks
    tail_s: float = 3.0  # CHAOS_TAIL_S: alerts keep coming this long after the last fault
    settle_s: float = 45.0  # CHAOS_SETTLE_S: longest wait for every signal to end
    # CHAOS_REDIS_PERSISTENT: ElastiCache keeps no append-only file, so by default a restart
    # loses the stream and the sweeper has to find the signals whose doorbells were lost.
    redis_persistent: bool = False
    # CHAOS_PG_STOP: `immediate` is a crash (what a failover looks like to the engine: commits
    # not flushed yet are gone); `fast` a clean restart.
    pg_stop: str = "immediate"
    infra_every_s: float = 3.5  # CHAOS_INFRA_EVERY_S: one process/server fault this often
    exchange_every_s: float = 4.0  # CHAOS_EXCHANGE_EVERY_S: one exchange fault this often
    reclaim_idle_ms: int = 5000  # CHAOS_RECLAIM_IDLE_MS: WORKER_RECLAIM_IDLE_MS of the engine

    @classmethod
    def from_env(cls) -> ChaosParams:
        base = cls()
        return cls(
            seconds=_env_float("CHAOS_SECONDS", base.seconds),
            rate=_env_float("CHAOS_RATE", base.rate),
            binance_share=_env_float("CHAOS_BINANCE_SHARE", base.binance_share),
            workers=int(_env_float("CHAOS_WORKERS", base.workers)),
            apis=int(_env_float("CHAOS_APIS", base.apis)),
            seed=int(_env_float("CHAOS_SEED", base.seed)),
            tail_s=_env_float("CHAOS_TAIL_S", base.tail_s),
            settle_s=_env_float("CHAOS_SETTLE_S", base.settle_s),
            redis_persistent=os.environ.get("CHAOS_REDIS_PERSISTENT", "0") not in ("", "0"),
            pg_stop=os.environ.get("CHAOS_PG_STOP") or base.pg_stop,
            infra_every_s=_env_float("CHAOS_INFRA_EVERY_S", base.infra_every_s),
            exchange_every_s=_env_float("CHAOS_EXCHANGE_EVERY_S", base.exchange_every_s),
            reclaim_idle_ms=int(_env_float("CHAOS_RECLAIM_IDLE_MS", base.reclaim_idle_ms)),
        )

    @property
    def timeout_s(self) -> int:
        """A bound on the whole test: the drill, the settling and start-up and shutdown."""
        return int(self.seconds + self.tail_s + self.settle_s + 90)


# --------------------------------------------------------------------------- servers
class ChaosStack:
    """A PostgreSQL and a Redis of the drill's own, restartable on their ports.

    Their data lives in a directory of its own under the system's temporary directory, as the
    suite's servers do: PostgreSQL runs as another user when the tests run as root, and pytest
    keeps its own temporary root closed to other users (a restart there would fail)."""

    def __init__(self, *, persistent_redis: bool) -> None:
        root = Path(tempfile.mkdtemp(prefix="jadetrade-chaos-"))
        self.stack = LocalStack(root, free_port(), free_port(), persistent_redis=persistent_redis)

    def up(self) -> StackUrls:
        return self.stack.up()

    def down(self) -> None:
        state = self.stack.redis_dir / "redis.json"
        pid = orjson.loads(state.read_bytes())["pid"] if state.exists() else None
        self.stack.down(everything=True)
        # A Redis that stopped answering is not found by its PING and so not stopped: a drill
        # must leave none behind.
        with contextlib.suppress(psutil.Error):
            if pid is not None and "redis" in (server := psutil.Process(pid)).name():
                server.kill()
        shutil.rmtree(self.stack.root, ignore_errors=True)

    def stop_postgres(self, mode: str) -> None:
        """`fast`: pg_ctl's clean stop. `immediate`: SIGQUIT to the postmaster, PostgreSQL's
        immediate shutdown — no checkpoint, crash recovery on the next start."""
        if mode == "fast":
            postgres.stop(self.stack.pgdata)
            return
        running = postgres.read_running(self.stack.pgdata)
        assert running is not None, "PostgreSQL is not running"
        server = psutil.Process(running.pid)
        server.send_signal(signal.SIGQUIT)
        server.wait(timeout=30)

    def start_postgres(self) -> None:
        postgres.start(self.stack.pgdata, self.stack.pg_port)

    def stop_redis(self) -> None:
        redis.stop(self.stack.redis_dir)

    def start_redis(self) -> None:
        redis.start(
            self.stack.redis_dir, self.stack.redis_port, persistent=self.stack.persistent_redis
        )


def chaos_env(
    params: ChaosParams, api_urls: dict[str, dict[str, str]], ws_urls: dict[str, str]
) -> dict[str, str]:
    """Engine settings of the drill, as environment variables of its processes."""
    return {
        "EXCHANGE_API_URLS": orjson.dumps(api_urls).decode(),
        "EXCHANGE_WS_URLS": orjson.dumps(ws_urls).decode(),
        # The emulator stalls accepted orders for longer than this, so the answer is lost.
        "EXCHANGE_TIMEOUT_MS": "2000",
        "WORKER_RECLAIM_IDLE_MS": str(params.reclaim_idle_ms),
        "POSITION_SYNC_INTERVAL_S": "5",
        # Each account gets several alerts a second at times; the limit is not under test.
        "WEBHOOK_RATE_LIMIT": "100000",
    }


# --------------------------------------------------------------------------- processes
class WorkerFleet:
    """`jadetrade worker` processes in numbered slots. A slot whose process died is filled
    again, as an orchestrator replaces a task: after a SIGKILL the drill sends, or after an
    exit of its own (counted in `unplanned_exits`)."""

    def __init__(
        self, settings: Settings, extra_env: dict[str, str], log_dir: Path, size: int
    ) -> None:
        self.settings = settings
        self.extra_env = extra_env
        self.log_dir = log_dir
        self.slots: list[EngineProcess | None] = [None] * size
        self.every: list[EngineProcess] = []  # every process started, for their logs
        self.unplanned_exits: list[tuple[int, int]] = []  # (slot, exit code)
        self.restart_delay_s = 1.0  # how long an orchestrator takes to notice and replace
        self._generation = itertools.count(1)
        self._busy: set[int] = set()  # slots being killed or (re)started
        self._replacing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await asyncio.gather(*(self._fill(slot) for slot in range(len(self.slots))))

    async def _fill(self, slot: int) -> EngineProcess:
        """Start a worker in `slot` and wait until it runs; one that exits while starting
        (Redis or PostgreSQL down at that moment) is replaced, as an orchestrator would."""
        self._busy.add(slot)
        try:
            while True:
                env = engine_env(self.settings, WORKER_METRICS_PORT=str(free_port()),
                                 **self.extra_env)  # fmt: skip
                name = f"worker-{slot}-{next(self._generation)}"
                process = EngineProcess(["worker"], env, self.log_dir / f"{name}.log")
                self.every.append(process)
                self.slots[slot] = process
                try:
                    await asyncio.to_thread(process.wait_logged, "workers_started")
                    return process
                except AssertionError:  # exited before it was up
                    self.unplanned_exits.append((slot, process.stop()))
                    # The orchestrator's own delay before it starts a replacement.
                    await asyncio.sleep(self.restart_delay_s)
        finally:
            self._busy.discard(slot)

    async def sigkill(self, rng: random.Random) -> tuple[str, asyncio.Task[None]]:
        """SIGKILL the worker of a random slot: what was killed, and the task that replaces
        it (done once the replacement runs)."""
        while not (free := [s for s in range(len(self.slots)) if s not in self._busy]):
            # Every worker is being replaced: kill the first one back.
            await asyncio.wait(self._replacing, return_when=asyncio.FIRST_COMPLETED)
        slot = rng.choice(free)
        self._busy.add(slot)
        process = self.slots[slot]
        assert process is not None
        pid = process.proc.pid
        process.proc.kill()
        code = await asyncio.to_thread(process.stop)  # reaped
        return f"slot {slot} (pid {pid}, exit {code})", self._replace_later(slot)

    async def supervise(self) -> None:
        """Replace workers that exit by themselves, until cancelled."""
        while True:
            for slot, process in enumerate(self.slots):
                if slot in self._busy or process is None or process.proc.poll() is None:
                    continue
                self.unplanned_exits.append((slot, process.stop()))
                self._busy.add(slot)
                self._replace_later(slot)
            await asyncio.sleep(0.25)  # how often the orchestrator looks

    def _replace_later(self, slot: int) -> asyncio.Task[None]:
        async def replace() -> None:
            # The orchestrator's own delay before it starts a replacement.
            await asyncio.sleep(self.restart_delay_s)
            await self._fill(slot)

        replacing = asyncio.create_task(replace())
        self._replacing.add(replacing)
        replacing.add_done_callback(self._replacing.discard)
        return replacing

    async def stop(self) -> list[int]:
        """SIGTERM every live worker; their exit codes."""
        for replacing in list(self._replacing):
            replacing.cancel()
        await asyncio.gather(*self._replacing, return_exceptions=True)
        live = [p for p in self.slots if p is not None]
        return list(await asyncio.gather(*(asyncio.to_thread(p.stop) for p in live)))


def api_process(settings: Settings, extra_env: dict[str, str], log_dir: Path, name: str
                ) -> EngineProcess:  # fmt: skip
    env = engine_env(settings, PORT=str(free_port()), HOST="127.0.0.1", **extra_env)
    return EngineProcess(["serve", "--no-workers"], env, log_dir / f"{name}.log")


# --------------------------------------------------------------------------- the alert stream
@dataclass(frozen=True)
class ChaosAccount:
    """A user the stream trades for: their webhook token and where they trade."""

    user_id: str
    token: str
    exchange: str  # paper | binance
    api_key: str | None = None  # the emulator account's key (binance)


@dataclass
class SentAlert:
    number: int
    account: ChaosAccount
    action: str
    symbol: str
    sent_at: datetime
    status: int | None = None  # HTTP status; None when no answer came
    error: str | None = None  # the transport error, when no answer came
    signal_id: str | None = None
    latency_s: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def alert_body(account: ChaosAccount, action: str, symbol: str, alert_id: str) -> dict[str, Any]:
    price = PRICES[symbol]
    below, above = str(price * Decimal("0.8")), str(price * Decimal("1.2"))
    long_side = action.startswith("long")
    return {
        "token": account.token,
        "action": action,
        "symbol": symbol,
        "exchange": account.exchange,
        "qty": str(SIZES[symbol]),
        "stop_loss": below if long_side else above,
        "take_profit": above if long_side else below,
        "alert_id": alert_id,
    }


class AlertStream:
    """Alerts at a steady `rate` (`binance_share` of them for Binance accounts), each sent
    without waiting for the previous answers (as TradingView does), to the API processes in
    turn."""

    def __init__(
        self,
        api_urls: list[str],
        accounts: list[ChaosAccount],
        params: ChaosParams,
        rng: random.Random,
    ) -> None:
        self.api_urls = api_urls
        self.paper = [a for a in accounts if a.exchange == "paper"]
        self.binance = [a for a in accounts if a.exchange == "binance"]
        self.rate = params.rate
        self.binance_share = params.binance_share
        self.rng = rng
        self.sent: list[SentAlert] = []
        self._run = uuid.uuid4().hex[:8]

    async def run(self, until: float) -> None:
        """Send until the monotonic clock reaches `until`, then wait for every answer."""
        pending: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(timeout=15.0) as client:
            next_at = time.monotonic()
            for number in itertools.count():
                if next_at >= until:
                    break
                # Pacing the producer: alerts leave on a fixed schedule, whatever the answers.
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += 1 / self.rate
                alert = SentAlert(
                    number,
                    self.rng.choice(
                        self.binance if self.rng.random() < self.binance_share else self.paper
                    ),
                    self.rng.choices(ACTIONS, ACTION_WEIGHTS)[0],
                    self.rng.choice(list(SIZES)),
                    datetime.now(UTC),
                )
                self.sent.append(alert)
                url = self.api_urls[number % len(self.api_urls)]
                task = asyncio.create_task(self._send(client, url, alert))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending)

    async def _send(self, client: httpx.AsyncClient, url: str, alert: SentAlert) -> None:
        body = alert_body(alert.account, alert.action, alert.symbol,
                          f"chaos-{self._run}-{alert.number}")  # fmt: skip
        started = time.monotonic()
        try:
            response = await client.post(url + WEBHOOK, json=body)
        except httpx.HTTPError as exc:
            alert.error = type(exc).__name__
        else:
            alert.status = response.status_code
            if alert.accepted:
                alert.signal_id = str(response.json()["signal_id"])
        alert.latency_s = time.monotonic() - started


# --------------------------------------------------------------------------- faults
@dataclass
class Fault:
    kind: str
    detail: str
    started: datetime
    ended: datetime | None = None

    @property
    def lasted_s(self) -> float:
        assert self.ended is not None
        return (self.ended - self.started).total_seconds()


# Each kind early: a short drill still has every one.
INFRA_FAULTS = ("worker_sigkill", "redis_restart", "postgres_restart", "worker_sigkill")
EXCHANGE_FAULTS = ("exchange_stall", "exchange_5xx", "exchange_429")


class FaultInjector:
    """Two tracks of faults while the stream flows: processes and servers (SIGKILL of a
    worker, Redis restart, PostgreSQL restart), and the exchange (an order accepted and its
    answer stalled past the client's timeout, 5xx, 429), each kind in turn."""

    def __init__(
        self,
        params: ChaosParams,
        stack: ChaosStack,
        fleet: WorkerFleet,
        binance: BinanceFuturesServer,
        rng: random.Random,
    ) -> None:
        self.params = params
        self.stack = stack
        self.fleet = fleet
        self.binance = binance
        self.rng = rng
        self.faults: list[Fault] = []
        self._replacements: list[asyncio.Task[None]] = []

    async def run(self, start: float) -> None:
        """Inject faults from `start` (monotonic) for `params.seconds`; return once the last
        has ended."""
        until = start + self.params.seconds
        await asyncio.gather(
            self._track(INFRA_FAULTS, start + 1.5, self.params.infra_every_s, until),
            self._track(EXCHANGE_FAULTS, start + 2.0, self.params.exchange_every_s, until),
        )
        await asyncio.gather(*self._replacements)

    async def _track(self, kinds: tuple[str, ...], first: float, every: float, until: float
                     ) -> None:  # fmt: skip
        at = first
        for kind in itertools.cycle(kinds):
            if at >= until:
                return
            # The drill's schedule: faults start at fixed times, not when something finished.
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            fault = Fault(kind, "", datetime.now(UTC))
            self.faults.append(fault)
            fault.detail = await getattr(self, kind)(fault)
            if kind != "worker_sigkill":
                fault.ended = datetime.now(UTC)
            at = max(at + every, time.monotonic() + 0.5)

    async def worker_sigkill(self, fault: Fault) -> str:
        """The fault lasts until the replacement runs; the next fault does not wait for it."""
        detail, replacing = await self.fleet.sigkill(self.rng)
        replacing.add_done_callback(lambda _: setattr(fault, "ended", datetime.now(UTC)))
        self._replacements.append(replacing)
        return detail

    async def redis_restart(self, fault: Fault) -> str:
        await asyncio.to_thread(self.stack.stop_redis)
        await asyncio.sleep(1.5)  # the outage
        await asyncio.to_thread(self.stack.start_redis)
        if self.params.redis_persistent:
            return "down 1.5 s, append-only file kept"
        return "down 1.5 s, no persistence: stream and pending entries lost"

    async def postgres_restart(self, fault: Fault) -> str:
        await asyncio.to_thread(self.stack.stop_postgres, self.params.pg_stop)
        await asyncio.sleep(2.0)  # the outage
        await asyncio.to_thread(self.stack.start_postgres)
        return f"{self.params.pg_stop} stop, down 2 s"

    async def _exchange_window(self, what: str) -> str:
        await asyncio.sleep(2.0)  # the faults stay armed this long
        self.binance.clear_faults()
        return what

    async def exchange_stall(self, fault: Fault) -> str:
        for path in (ORDER, ALGO_ORDER):
            self.binance.accept_then_stall("POST", path, seconds=3.0, times=2)
        return await self._exchange_window("orders accepted, answers held 3 s (timeout 2 s)")

    async def exchange_5xx(self, fault: Fault) -> str:
        self.binance.fail_next("POST", ORDER, 503, times=3)
        self.binance.fail_next("POST", ALGO_ORDER, 502, times=2)
        return await self._exchange_window("order creates answered 503/502, nothing placed")

    async def exchange_429(self, fault: Fault) -> str:
        self.binance.fail_next("POST", ORDER, 429, retry_after=1, times=2)
        self.binance.fail_next("POST", ALGO_ORDER, 429, retry_after=1, times=1)
        return await self._exchange_window("order creates answered 429, Retry-After 1 s")


# --------------------------------------------------------------------------- the books
T = TypeVar("T")


async def settled(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, timeout_s: float
) -> T:
    """`probe()` once `done` holds for it, or its last value at the deadline: unlike
    `eventually`, the drill reports what it found before it asserts."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


@dataclass(frozen=True)
class SignalRow:
    id: str
    user_id: str
    exchange: str
    status: str
    status_reason: str | None
    created_at: datetime
    processed_at: datetime | None


_SIGNALS = """
    SELECT id, user_id, coalesce(exchange, 'paper') AS exchange, status, status_reason,
           created_at, processed_at
    FROM trading_signals WHERE user_id = ANY($1::text[])
"""


async def signal_rows(pool: Pool, user_ids: Iterable[str]) -> dict[str, SignalRow]:
    rows = await pool.fetch(_SIGNALS, list(user_ids))
    return {str(r["id"]): SignalRow(str(r["id"]), r["user_id"], r["exchange"], r["status"],
                                    r["status_reason"], r["created_at"], r["processed_at"])
            for r in rows}  # fmt: skip


def unfinished(signals: dict[str, SignalRow], accepted: Iterable[str]) -> list[str]:
    """Accepted alerts whose signal is missing or not terminal, with what it is instead."""
    found = []
    for signal_id in accepted:
        row = signals.get(signal_id)
        if row is None or row.status not in TERMINAL_STATUSES:
            found.append(f"{signal_id}: {'missing' if row is None else row.status}")
    return found


@dataclass
class LegCount:
    """One signal leg: its trade row in the engine (None: none) and its orders on the exchange
    (their statuses in the engine's words)."""

    user_id: str
    client_order_id: str
    engine_status: str | None = None
    exchange_statuses: list[str] = field(default_factory=list)

    @property
    def leg(self) -> str:
        return self.client_order_id[-1]


_ENGINE_TRADES = """
    SELECT user_id, client_order_id, status FROM real_trades
    WHERE user_id = ANY($1::text[]) AND client_order_id LIKE 'jt%'
"""
_PAPER_ORDERS = """
    SELECT account_id, client_order_id, status FROM paper_orders
    WHERE account_id = ANY($1::text[]) AND client_order_id LIKE 'jt%'
"""
# Exchange order statuses in the engine's trade statuses (as `trade_executor._trade_status`).
_PAPER_STATUS = {"open": "open", "partially_filled": "partially_filled", "filled": "filled",
                 "canceled": "canceled", "rejected": "failed"}  # fmt: skip
_BINANCE_STATUS = {"NEW": "open", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled",
                   "CANCELED": "canceled", "EXPIRED": "canceled", "REJECTED": "failed"}  # fmt: skip
_BINANCE_ALGO_STATUS = {"NEW": "open", "CANCELED": "canceled", "EXPIRED": "canceled",
                        "FINISHED": "filled", "REJECTED": "failed"}  # fmt: skip


async def leg_counts(
    pool: Pool, accounts: list[ChaosAccount], binance: BinanceFuturesServer
) -> list[LegCount]:
    """Every signal leg the engine recorded or an exchange holds an order for."""
    legs: dict[tuple[str, str], LegCount] = {}

    def leg(user_id: str, cid: str) -> LegCount:
        return legs.setdefault((user_id, cid), LegCount(user_id, cid))

    user_ids = [a.user_id for a in accounts]
    for row in await pool.fetch(_ENGINE_TRADES, user_ids):
        leg(row["user_id"], row["client_order_id"]).engine_status = row["status"]
    paper = [a.user_id for a in accounts if a.exchange == "paper"]
    for row in await pool.fetch(_PAPER_ORDERS, paper):
        leg(row["account_id"], row["client_order_id"]).exchange_statuses.append(
            _PAPER_STATUS[row["status"]]
        )
    for account in accounts:
        if account.api_key is None:
            continue
        for order in binance.orders(account.api_key):
            # The order a triggered stop places carries the stop's id: it is the stop's fill.
            if order.algo_id is None and order.client_order_id.startswith("jt"):
                leg(account.user_id, order.client_order_id).exchange_statuses.append(
                    _BINANCE_STATUS[order.status]
                )
        for algo in binance.algo_orders(account.api_key):
            if algo.client_algo_id.startswith("jt"):
                leg(account.user_id, algo.client_algo_id).exchange_statuses.append(
                    _BINANCE_ALGO_STATUS[algo.status]
                )
    return list(legs.values())


def leg_problems(legs: list[LegCount]) -> list[str]:
    """Legs placed twice, orders the engine has no record of, and records that disagree with
    the exchange once everything has settled."""
    problems = []
    for leg in legs:
        where = f"{leg.client_order_id} (user {leg.user_id[:8]})"
        if len(leg.exchange_statuses) > 1:
            problems.append(f"{where}: {len(leg.exchange_statuses)} orders on the exchange")
        elif leg.engine_status is None:
            problems.append(f"{where}: on the exchange, unknown to the engine")
        elif not leg.exchange_statuses:
            if leg.engine_status != "failed":  # failed: never reached the exchange
                problems.append(f"{where}: engine says {leg.engine_status}, exchange has none")
        elif leg.exchange_statuses[0] != leg.engine_status:
            problems.append(f"{where}: engine says {leg.engine_status}, exchange"
                            f" {leg.exchange_statuses[0]}")  # fmt: skip
    return problems


_ENGINE_POSITIONS = """
    SELECT user_id, exchange, symbol, side, quantity FROM real_positions
    WHERE status = 'open' AND user_id = ANY($1::text[])
"""
_PAPER_BOOK = """
    SELECT account_id, symbol, side, quantity FROM paper_positions
    WHERE account_id = ANY($1::text[])
"""

Holding = tuple[str, str, str, str, Decimal]  # user, exchange, symbol, side, quantity


@dataclass(frozen=True)
class PositionComparison:
    engine: list[Holding]
    exchanges: list[Holding]

    @property
    def differences(self) -> list[str]:
        engine, exchanges = Counter(self.engine), Counter(self.exchanges)
        only_engine = sorted((engine - exchanges).elements())
        only_exchange = sorted((exchanges - engine).elements())
        return [f"engine only: {_show(h)}" for h in only_engine] + [
            f"exchange only: {_show(h)}" for h in only_exchange
        ]


def _show(holding: Holding) -> str:
    user, exchange, symbol, side, quantity = holding
    return f"{exchange} {symbol} {side} {quantity.normalize()} (user {user[:8]})"


async def compare_positions(
    pool: Pool, accounts: list[ChaosAccount], binance: BinanceFuturesServer
) -> PositionComparison:
    user_ids = [a.user_id for a in accounts]
    engine = [(r["user_id"], r["exchange"], r["symbol"], r["side"], r["quantity"].normalize())
              for r in await pool.fetch(_ENGINE_POSITIONS, user_ids)]  # fmt: skip
    exchanges = [(r["account_id"], "paper", r["symbol"], r["side"], r["quantity"].normalize())
                 for r in await pool.fetch(_PAPER_BOOK, user_ids)]  # fmt: skip
    for account in accounts:
        if account.api_key is None:
            continue
        for p in binance.positions(account.api_key):
            side = "long" if p.amount > 0 else "short"
            exchanges.append(
                (account.user_id, "binance", p.symbol, side, abs(p.amount).normalize())
            )
    return PositionComparison(engine, exchanges)


# --------------------------------------------------------------------------- recovery
@dataclass(frozen=True)
class Recovery:
    fault: Fault
    first_execution_s: float | None  # from the fault's end to the first signal executed after
    drained_s: float  # from the fault's end until every signal recorded before it had ended


def recoveries(faults: list[Fault], signals: Iterable[SignalRow]) -> list[Recovery]:
    rows = list(signals)
    found = []
    for fault in faults:
        assert fault.ended is not None
        end = fault.ended
        # An exchange fault is over for the exchange's signals once one of those executes.
        concerned = [r for r in rows if not fault.kind.startswith("exchange") or
                     r.exchange == "binance"]  # fmt: skip
        after = [r.processed_at for r in concerned
                 if r.status == "executed" and r.processed_at and r.processed_at > end]  # fmt: skip
        before = [r.processed_at for r in rows if r.created_at <= end and r.processed_at]
        drained = max(before, default=end)
        found.append(Recovery(
            fault,
            (min(after) - end).total_seconds() if after else None,
            max(0.0, (drained - end).total_seconds()),
        ))  # fmt: skip
    return found


def logged_errors(outputs: Iterable[str]) -> Counter[str]:
    """Error and critical lines of engine processes, by component and event."""
    found: Counter[str] = Counter()
    for output in outputs:
        for line in output.splitlines():
            if not line.startswith("{"):
                continue
            try:
                fields = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if fields.get("level") in ("error", "critical"):
                found[f"{fields.get('component')}/{fields.get('event')}"] += 1
    return found


def binance_requests(binance: BinanceFuturesServer) -> Counter[str]:
    """Requests the emulator received, by method and path (faulted ones included)."""
    return Counter(f"{r.method} {r.path}" for r in binance.requests)


class Phases:
    """How long each part of the drill took, marked as each ends."""

    def __init__(self) -> None:
        self.began = self._last = time.monotonic()
        self.lasted: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.lasted[name] = now - self._last
        self._last = now

    @property
    def total_s(self) -> float:
        return self._last - self.began


# --------------------------------------------------------------------------- the report
def _counts(counter: Counter[Any]) -> str:
    return " · ".join(f"{key}: {n}" for key, n in sorted(counter.items(), key=str)) or "none"


def render_report(
    params: ChaosParams,
    started: datetime,
    phases: Phases,
    sent: list[SentAlert],
    signals: dict[str, SignalRow],
    legs: list[LegCount],
    positions: PositionComparison,
    recovered: list[Recovery],
    fleet: WorkerFleet,
    errors: Counter[str],
    requests: Counter[str],
) -> str:
    accepted = [a for a in sent if a.accepted]
    refused = Counter(str(a.status) if a.status is not None else a.error for a in sent
                      if not a.accepted)  # fmt: skip
    ghosts = [s for s in signals.values() if s.id not in {a.signal_id for a in accepted}]
    outcomes = Counter(signals[a.signal_id].status for a in accepted
                       if a.signal_id in signals)  # fmt: skip
    slow = [a for a in sent if a.latency_s > TRADINGVIEW_TIMEOUT_S]
    per_leg: dict[str, Counter[str]] = {}
    for leg in legs:
        n = len(leg.exchange_statuses)
        per_leg.setdefault(LEGS.get(leg.leg, leg.leg), Counter())[
            "0" if n == 0 else "1" if n == 1 else ">1"
        ] += 1
    overall: Counter[str] = sum(per_leg.values(), Counter())
    lines = [
        f"chaos drill: {params.seconds:g} s of faults + {params.tail_s:g} s tail at "
        f"{params.rate:g} alerts/s, {params.workers} workers, {params.apis} API processes, seed "
        f"{params.seed}; redis persistence {'on' if params.redis_persistent else 'off'}, "
        f"postgres stop {params.pg_stop}, reclaim idle {params.reclaim_idle_ms} ms",
        f"took {phases.total_s:.1f} s: "
        + " · ".join(f"{name} {s:.1f} s" for name, s in phases.lasted.items()),
        f"alerts: sent {len(sent)} ({sum(a.account.exchange == 'binance' for a in sent)} for"
        f" binance) · accepted (2xx) {len(accepted)} · refused "
        f"{len(sent) - len(accepted)} ({_counts(refused)})",
        f"  answered after TradingView's {TRADINGVIEW_TIMEOUT_S:g} s: {len(slow)} · "
        f"slowest {max((a.latency_s for a in sent), default=0.0):.2f} s · signals recorded "
        f"for alerts not answered 2xx: {len(ghosts)}",
        f"signals of accepted alerts: executed {outcomes['executed']} · rejected "
        f"{outcomes['rejected']} · skipped {outcomes['skipped']} · failed {outcomes['failed']}"
        f" · other {sum(n for s, n in outcomes.items() if s not in TERMINAL_STATUSES)}",
    ]
    failed = Counter(
        (signals[a.signal_id].status_reason or "")[:90]
        for a in accepted
        if a.signal_id in signals and signals[a.signal_id].status == "failed"
    )
    lines += [f"  failed: {n} × {reason}" for reason, n in failed.most_common(5)]
    lines.append(f"orders per signal leg: {_counts(overall)}")
    lines += [f"  {name}: {_counts(c)}" for name, c in sorted(per_leg.items())]
    by_exchange = Counter(h[1] for h in positions.engine)
    lines.append(
        f"positions: engine {len(positions.engine)} open ({_counts(by_exchange)}) · exchanges "
        f"{len(positions.exchanges)} · differences {len(positions.differences)}"
    )
    lines.append(f"workers: {len(fleet.every)} started · exits not caused by the drill "
                 f"{len(fleet.unplanned_exits)} {fleet.unplanned_exits or ''}")  # fmt: skip
    lines.append(f"binance requests: {sum(requests.values())} ("
                 f"{_counts(Counter(dict(requests.most_common(6))))})")  # fmt: skip
    lines.append(f"error lines logged: {_counts(Counter(dict(errors.most_common(8))))}")
    lines.append("faults (start offset, kind, lasted, first execution after, backlog drained):")
    for r in recovered:
        first = "none" if r.first_execution_s is None else f"{r.first_execution_s:.2f} s"
        during = [
            a for a in sent if r.fault.started <= a.sent_at <= (r.fault.ended or r.fault.started)
        ]
        refused_during = Counter(a.status or a.error for a in during if not a.accepted)
        lines.append(
            f"  +{(r.fault.started - started).total_seconds():5.1f} s  {r.fault.kind:<17}"
            f" {r.fault.lasted_s:4.1f} s  first {first:>7}  drained {r.drained_s:5.2f} s"
            f"  refused {_counts(refused_during)}  [{r.fault.detail}]"
        )
    worst: dict[str, float] = {}
    for r in recovered:
        worst[r.fault.kind] = max(worst.get(r.fault.kind, 0.0), r.drained_s,
                                  r.first_execution_s or 0.0)  # fmt: skip
    lines.append(
        "max recovery by fault: " + " · ".join(f"{k} {v:.2f} s" for k, v in sorted(worst.items()))
    )
    lines.append(f"engine logs: {fleet.log_dir}")
    return "\n".join(lines)
