"""The scale-out proof: production's shape on one machine — two API processes (`jadetrade serve
--no-workers`) behind a round-robin load balancer, three worker processes (`jadetrade worker`),
one PostgreSQL, one Redis — taking alerts from many users at once.

Every (user, symbol) key alternates a long_entry that really trades on the paper exchange
(200 USDT, stop loss 3 % under the synthetic market) and the long_exit that closes it; a key's
next alert is sent once the previous one was answered, so its commit order is the order sent,
while the keys run concurrently on an open-loop schedule. Afterwards the engine's own records
must show: every accepted signal terminal; each key's signals executed in commit order,
whichever worker took them; no order placed twice; work shared by every worker and both APIs;
and every dashboard — on either API process directly, or through the balancer — told each of
its own user's events, wherever the alert came in, and nothing of anyone else's.

Sized by SCALE_* variables (`ScaleParams`); the suite runs it small, `make scale-test` with
thousands of alerts and the summary shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import orjson
import psutil
import pytest

from app.config import Settings
from app.core.pg import Pool
from app.core.redis import create_redis
from app.exchanges.price_feed import synthetic_price
from app.exchanges.symbols import paper_market
from app.models.signal import TERMINAL_STATUSES
from app.workers.trade_executor import CLOSE, ENTRY, STOP
from tests.conftest import Factory
from tests.support.pipeline import eventually
from tests.support.processes import EngineProcess, stop_all, wait_all_started
from tests.support.round_robin import RoundRobinProxy, round_robin
from tests.support.ws import WsClient, open_dashboard, ws_client

if TYPE_CHECKING:  # imported into a test module, pytest would try to collect it
    from tests.conftest import TestServers

WEBHOOK = "/api/webhooks/tradingview"
JSON = {"Content-Type": "application/json"}
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "LINKUSDT", "LTCUSDT")
NOTIONAL_USD = "200"
STOP_DISTANCE = Decimal("0.97")
# Raised like bench/alert_to_order.py does: the daily-trade and open-position limits would
# otherwise refuse a run of this size.
RISK_LIMITS = {"max_daily_trades": 100_000, "max_open_positions": 1000}
COUNTED = ("signal_received", "signal_update", "trade_executed", "trade_update", "position_update")
EVENTS_DEADLINE_S = 20.0
ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1)
# An alert waits for its sender's connection as long as it takes (the queue is the load);
# the answer itself comes in time or counts as failed.
TIMEOUT = httpx.Timeout(30.0, pool=None)


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


@dataclass(frozen=True)
class ScaleParams:
    users: int  # SCALE_USERS: users sending alerts
    symbols: int  # SCALE_SYMBOLS: symbols per user (keys = users × symbols)
    alerts: int  # SCALE_ALERTS: alerts in all, rounded to whole entry+exit pairs per key
    rate: float  # SCALE_RATE: alerts per second offered, all keys together
    ws_users: int  # SCALE_WS_USERS: users followed by dashboards
    connections: int  # SCALE_CONNECTIONS: senders, one keep-alive connection each
    drain_s: float  # SCALE_DRAIN_S: longest wait after the last alert for every signal to end

    @classmethod
    def from_env(cls) -> ScaleParams:
        return cls(
            # 20 keys: not a multiple of the 3 workers, so that a key's doorbells, read in turn
            # by the consumers, do not all land on the same worker.
            users=int(_env("SCALE_USERS", 5)),
            symbols=min(len(SYMBOLS), int(_env("SCALE_SYMBOLS", 4))),
            alerts=int(_env("SCALE_ALERTS", 160)),
            rate=_env("SCALE_RATE", 40),
            ws_users=int(_env("SCALE_WS_USERS", 3)),
            connections=int(_env("SCALE_CONNECTIONS", 16)),
            drain_s=_env("SCALE_DRAIN_S", 30),
        )

    @property
    def keys(self) -> int:
        return self.users * self.symbols

    @property
    def per_key(self) -> int:
        """Alerts per key: an even number, so that every key ends with its position closed."""
        return max(2, round(self.alerts / self.keys / 2) * 2)

    @property
    def total(self) -> int:
        return self.per_key * self.keys


PARAMS = ScaleParams.from_env()
# Start-up, sending, draining and the checks, with room for a loaded machine.
TIMEOUT_S = int(120 + 2 * PARAMS.total / PARAMS.rate + PARAMS.drain_s)


# --------------------------------------------------------------------------- the deployment
@dataclass
class Deployment:
    apis: list[EngineProcess]
    workers: list[EngineProcess]
    startup_s: float

    @property
    def all(self) -> list[EngineProcess]:
        return [*self.apis, *self.workers]


@pytest.fixture
def deployment(settings: Settings, tmp_path: Path, clean_state: None) -> Iterator[Deployment]:
    started = time.monotonic()
    # Webhooks are rate limited per token (30 a minute by default): this run sends more.
    apis = [
        EngineProcess.api(settings, tmp_path, f"api-{i}", WEBHOOK_RATE_LIMIT="1000000")
        for i in (1, 2)
    ]
    # The price updater re-marks open positions every second, each a `position_update` at a
    # moment nobody can predict; parked, so that every event a dashboard gets can be counted.
    workers = [
        EngineProcess.worker(settings, tmp_path, f"worker-{i}", PRICE_UPDATE_INTERVAL_S="3600")
        for i in (1, 2, 3)
    ]
    processes = [*apis, *workers]
    try:
        wait_all_started(processes)
        yield Deployment(apis, workers, time.monotonic() - started)
    finally:
        stop_all(processes)


# --------------------------------------------------------------------------- the load
@dataclass(frozen=True)
class Account:
    user_id: str
    webhook_token: str
    access_token: str


@dataclass(frozen=True)
class Answer:
    action: str
    status: int | None  # None: no HTTP answer
    signal_id: str | None  # of a 2xx answer
    seconds: float  # from sending to the answer
    late: float  # how far behind its slot of the schedule it was sent
    error: str | None = None


@dataclass
class Lane:
    """One (user, symbol) key's alerts: entry, exit, entry, … each sent at its slot of the
    schedule, and not before the previous one was answered."""

    account: Account
    symbol: str
    slots: list[int]
    answers: list[Answer] = field(default_factory=list)


def _alert(lane: Lane, step: int, seed: int, tag: str) -> tuple[str, bytes]:
    symbol = lane.symbol
    price = synthetic_price(seed, symbol, int(time.time()))  # what the paper exchange quotes
    alert = {
        "token": lane.account.webhook_token,
        "symbol": symbol,
        "price": str(price),
        "alert_id": f"{tag}-{symbol}-{step}",
    }
    if step % 2 == 0:
        market = paper_market(symbol)
        assert market is not None
        alert |= {
            "action": "long_entry",
            "stop_loss": str(market.floor_price(price * STOP_DISTANCE)),
            "notional_usd": NOTIONAL_USD,
        }
    else:
        alert["action"] = "long_exit"
    return alert["action"], orjson.dumps(alert)


async def _send_lane(
    http: httpx.AsyncClient, lane: Lane, start: float, rate: float, seed: int, tag: str
) -> None:
    for step, slot in enumerate(lane.slots):
        due = start + slot / rate
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())  # the schedule's pace, not a wait for work
        action, body = _alert(lane, step, seed, tag)
        sent = time.monotonic()
        status: int | None = None
        signal_id: str | None = None
        error: str | None = None
        try:
            response = await http.post(WEBHOOK, content=body, headers=JSON)
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        else:
            status, ok = response.status_code, response.is_success
            signal_id = response.json()["signal_id"] if ok else None
            error = None if ok else response.text[:200]
        lane.answers.append(
            Answer(action, status, signal_id, time.monotonic() - sent, sent - due, error)
        )


class CpuMeter:
    """CPU seconds each engine process, PostgreSQL (with its backends), Redis and this process
    (load generator, balancer, dashboards) use from now until `stop()`."""

    def __init__(self, deployment: Deployment, servers: dict[str, psutil.Process]) -> None:
        self.processes = {p.log_path.stem: psutil.Process(p.proc.pid) for p in deployment.all}
        self.processes |= servers
        self.processes["test process"] = psutil.Process(os.getpid())
        self.start = {name: self._cpu(name) for name in self.processes}

    def _cpu(self, name: str) -> float:
        return _cpu(self.processes[name], tree=name == "PostgreSQL")

    def stop(self) -> dict[str, float]:
        return {name: self._cpu(name) - self.start[name] for name in self.processes}


def _cpu(process: psutil.Process, *, tree: bool = False) -> float:
    """The process's CPU time; with `tree`, its children's too (ended ones included)."""
    times = process.cpu_times()
    total = times.user + times.system
    if tree:
        total += times.children_user + times.children_system
        for child in process.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
    return float(total)


async def server_processes(pool: Pool, redis_url: str) -> dict[str, psutil.Process]:
    """PostgreSQL's postmaster and the Redis server, when they run on this machine."""
    found = {}
    data_dir = Path(await pool.fetchval("SELECT current_setting('data_directory')"))
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        found["PostgreSQL"] = psutil.Process(
            int((data_dir / "postmaster.pid").read_text().split()[0])
        )
    redis = create_redis(redis_url)
    try:
        info = await redis.info("server")
    finally:
        await redis.aclose()
    with contextlib.suppress(psutil.Error):
        process = psutil.Process(int(info["process_id"]))
        if "redis" in process.name():
            found["Redis"] = process
    return found


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (NaN of nothing)."""
    if not values:
        return float("nan")
    ranked = sorted(values)
    return ranked[max(1, math.ceil(p / 100 * len(ranked))) - 1]


# --------------------------------------------------------------------------- the records
_SIGNALS = """
    SELECT s.id, s.user_id, s.symbol, s.signal_type, s.status, s.status_reason, s.seq,
           s.created_at, s.processed_at, l.first_start, l.runs, l.completed
    FROM trading_signals s
    LEFT JOIN LATERAL (
        SELECT min(started_at) AS first_start, count(*) AS runs,
               count(*) FILTER (WHERE status = 'completed') AS completed
        FROM bot_execution_logs WHERE signal_id = s.id
    ) l ON true
    WHERE s.user_id = ANY($1::text[])
    ORDER BY s.seq
"""
_UNFINISHED = """
    SELECT count(*) FROM trading_signals
    WHERE user_id = ANY($1::text[]) AND NOT status = ANY($2::text[])
"""
_TRADES = """
    SELECT id, user_id, signal_id, client_order_id, exchange_order_id, order_type, status,
           filled_quantity, created_at, executed_at
    FROM real_trades WHERE user_id = ANY($1::text[])
"""
_POSITIONS = (
    "SELECT id, user_id, symbol, status FROM real_positions WHERE user_id = ANY($1::text[])"
)
_PAPER_ORDERS = """
    SELECT id::text AS id, account_id, client_order_id FROM paper_orders
    WHERE account_id = ANY($1::text[])
"""
_PLACEMENTS = """
    SELECT resource_id AS client_order_id, count(*) AS n FROM audit_log
    WHERE action = 'order.create' AND user_id = ANY($1::text[]) GROUP BY 1
"""


@dataclass
class Books:
    """What the engine recorded for the run's users."""

    signals: list[asyncpg.Record]
    trades: list[asyncpg.Record]
    positions: list[asyncpg.Record]
    paper_orders: list[asyncpg.Record]
    placements: dict[str, int]  # client order id → orders sent (audit_log `order.create`)

    @classmethod
    async def read(cls, pool: Pool, user_ids: list[str]) -> Books:
        async with pool.acquire() as conn:
            signals = await conn.fetch(_SIGNALS, user_ids)
            trades = await conn.fetch(_TRADES, user_ids)
            positions = await conn.fetch(_POSITIONS, user_ids)
            orders = await conn.fetch(_PAPER_ORDERS, user_ids)
            placed = await conn.fetch(_PLACEMENTS, user_ids)
        return cls(
            list(signals),
            list(trades),
            list(positions),
            list(orders),
            {r["client_order_id"]: r["n"] for r in placed},
        )

    def legs(self) -> dict[uuid.UUID, Counter[str]]:
        """Per signal, its orders by leg (`e` entry, `c` close, `s` stop, …)."""
        legs: dict[uuid.UUID, Counter[str]] = defaultdict(Counter)
        for trade in self.trades:
            legs[trade["signal_id"]][trade["client_order_id"][-1]] += 1
        return legs


def order_violations(books: Books) -> list[str]:
    """Where a key's signals were not executed in their commit order: a later signal's run
    started, finished or sent an order before an earlier one's."""
    trades_of: dict[uuid.UUID, list[asyncpg.Record]] = defaultdict(list)
    for trade in books.trades:
        trades_of[trade["signal_id"]].append(trade)
    keys: dict[tuple[str, str], list[asyncpg.Record]] = defaultdict(list)
    for signal in books.signals:  # in seq order
        keys[(signal["user_id"], signal["symbol"])].append(signal)
    found = []
    for (user_id, symbol), signals in keys.items():
        for before, after in itertools.pairwise(signals):
            where = f"{user_id[:8]}/{symbol} seq {before['seq']} → {after['seq']}"
            if after["created_at"] < before["created_at"]:
                found.append(f"{where}: committed in another order than sent")
            if before["first_start"] is None or after["first_start"] is None:
                found.append(f"{where}: a signal never started")
                continue
            if after["first_start"] <= before["first_start"]:
                found.append(f"{where}: started before the earlier signal")
            if after["processed_at"] < before["processed_at"]:
                found.append(f"{where}: finished before the earlier signal")
            earlier, later = trades_of[before["id"]], trades_of[after["id"]]
            if earlier and later:
                if min(t["created_at"] for t in later) < max(t["created_at"] for t in earlier):
                    found.append(f"{where}: an order sent before the earlier signal's")
                filled_before = [t["executed_at"] for t in earlier if t["executed_at"]]
                filled_after = [t["executed_at"] for t in later if t["executed_at"]]
                if filled_before and filled_after and min(filled_after) < max(filled_before):
                    found.append(f"{where}: a fill before the earlier signal's")
    return found


def duplicates(books: Books) -> list[str]:
    """Orders placed twice for one signal leg, or executions of one signal repeated."""
    found = []
    per_leg = Counter((t["signal_id"], t["client_order_id"]) for t in books.trades)
    found += [f"{cid}: {n} trade rows" for (_s, cid), n in per_leg.items() if n > 1]
    on_exchange = Counter((o["account_id"], o["client_order_id"]) for o in books.paper_orders)
    found += [f"{cid}: {n} exchange orders" for (_a, cid), n in on_exchange.items() if n > 1]
    found += [f"{cid}: sent {n} times" for cid, n in books.placements.items() if n > 1]
    exchange_ids = Counter(t["exchange_order_id"] for t in books.trades if t["exchange_order_id"])
    found += [f"exchange order {oid}: {n} trades" for oid, n in exchange_ids.items() if n > 1]
    paper_ids = {o["id"] for o in books.paper_orders}
    trade_cids = {t["client_order_id"] for t in books.trades}
    found += [
        f"{t['client_order_id']}: exchange order {t['exchange_order_id']} not on the exchange"
        for t in books.trades
        if t["exchange_order_id"] and t["exchange_order_id"] not in paper_ids
    ]
    found += [
        f"{o['client_order_id']}: on the exchange, not in real_trades"
        for o in books.paper_orders
        if o["client_order_id"] not in trade_cids
    ]
    legs = books.legs()
    for signal in books.signals:
        if signal["completed"] != 1:
            found.append(f"signal {signal['id']}: {signal['completed']} completed runs")
        if signal["status"] != "executed":
            continue
        wanted = {ENTRY: 1, STOP: 1} if signal["signal_type"] == "long_entry" else {CLOSE: 1}
        if dict(legs[signal["id"]]) != wanted:
            found.append(
                f"signal {signal['id']} ({signal['signal_type']}): legs "
                f"{dict(legs[signal['id']])}, expected {wanted}"
            )
    return found


def logged(process: EngineProcess, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of `process` with this event name."""
    lines = []
    for line in process.output.splitlines():
        if not line.startswith("{"):
            continue
        try:
            fields = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if fields.get("event") == event:
            lines.append(fields)
    return lines


# --------------------------------------------------------------------------- the dashboards
@dataclass
class Dashboard:
    user_id: str
    where: str  # api-1, api-2 (directly) or proxy
    client: WsClient


EventKey = tuple[str, str, str]  # (type, id of the signal/trade/position, its status)


def expected_events(books: Books, user_id: str) -> set[EventKey]:
    """The events the engine announces for what it recorded of `user_id`: a signal when it is
    received and when it ends; an entry or close when it fills; a stop loss when it is placed
    and when the exit cancels it; a position when it opens and when it closes."""
    signals = [s for s in books.signals if s["user_id"] == user_id]
    trades = [t for t in books.trades if t["user_id"] == user_id]
    positions = [p for p in books.positions if p["user_id"] == user_id]
    events = {("signal_received", str(s["id"]), "queued") for s in signals}
    events |= {("signal_update", str(s["id"]), s["status"]) for s in signals}
    for trade in trades:
        if trade["filled_quantity"] > 0:
            events.add(("trade_executed", str(trade["id"]), trade["status"]))
        else:
            events.add(("trade_update", str(trade["id"]), "open"))
            if trade["status"] != "open":
                events.add(("trade_update", str(trade["id"]), trade["status"]))
    for position in positions:
        events.add(("position_update", str(position["id"]), "open"))
        if position["status"] != "open":
            events.add(("position_update", str(position["id"]), position["status"]))
    return events


def received(dashboard: Dashboard) -> Counter[EventKey]:
    """The user events a dashboard was told, each with how many times."""
    return Counter(
        (m["type"], str(m["data"]["id"]), m["data"]["status"])
        for m in dashboard.client.messages
        if m["type"] in COUNTED
    )


def event_order_problems(dashboard: Dashboard) -> list[str]:
    """A gap in the connection's sequence numbers, or a signal's outcome before its arrival."""
    problems = []
    seqs = [m["seq"] for m in dashboard.client.messages if "seq" in m]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"{dashboard.where}: seq not 1..n without gaps")
    arrived: set[str] = set()
    for message in dashboard.client.messages:
        if message["type"] == "signal_received":
            arrived.add(message["data"]["id"])
        elif message["type"] == "signal_update" and message["data"]["id"] not in arrived:
            problems.append(
                f"{dashboard.where}: signal {message['data']['id']} ended before it was received"
            )
    return problems


# --------------------------------------------------------------------------- the test
async def _accounts(factory: Factory, count: int) -> list[Account]:
    accounts = []
    for _ in range(count):
        user = await factory.user(tier="pro")
        accounts.append(
            Account(user.id, await factory.webhook_token(user), factory.access_token(user))
        )
    return accounts


async def _raise_limits(http: httpx.AsyncClient, account: Account) -> None:
    answer = await http.put(
        "/api/risk-settings",
        json=RISK_LIMITS,
        headers={"Authorization": f"Bearer {account.access_token}"},
    )
    assert answer.status_code == 200, answer.text


async def _dashboards(
    stack: AsyncExitStack, deployment: Deployment, proxy: RoundRobinProxy, accounts: list[Account]
) -> list[Dashboard]:
    """For each account: a dashboard on each API process directly and one through the proxy."""
    places = [(api.log_path.stem, api.ws_url) for api in deployment.apis]
    places.append(("proxy", proxy.ws_url))
    dashboards = []
    for account in accounts:
        for where, url in places:
            client = await stack.enter_async_context(
                ws_client(url, subprotocols=["bearer", account.access_token], answer_pings=True)
            )
            dashboards.append(Dashboard(account.user_id, where, client))
    await asyncio.gather(*(open_dashboard(d.client) for d in dashboards))
    return dashboards


@pytest.mark.scale_out
@pytest.mark.timeout(TIMEOUT_S)
async def test_alerts_scale_out_over_two_apis_and_three_workers(
    deployment: Deployment,
    factory: Factory,
    settings: Settings,
    pg_pool: Pool,
    servers: TestServers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = PARAMS
    # Every frame and request logged at DEBUG would make this process, the load generator and
    # the balancer, the bottleneck of the run.
    for name in ("websockets", "httpx", "httpcore"):
        caplog.set_level(logging.WARNING, logger=name)
    traders = await _accounts(factory, p.users)
    idle = (await _accounts(factory, 1))[0]  # followed, sends nothing: must hear nothing
    user_ids = [a.user_id for a in traders]
    lanes = [Lane(account, symbol, []) for account in traders for symbol in SYMBOLS[: p.symbols]]
    for slot in range(p.total):  # slot i belongs to key i mod K: the keys interleave
        lanes[slot % len(lanes)].slots.append(slot)

    backends = [("127.0.0.1", api.port or 0) for api in deployment.apis]
    async with round_robin(backends) as proxy, AsyncExitStack() as stack:
        # The balancer spreads connections: the keys share `connections` senders of one
        # keep-alive connection each, which the proxy hands to the APIs in turn.
        senders = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=proxy.url, limits=ONE_CONNECTION, timeout=TIMEOUT)
            )
            for _ in range(p.connections)
        ]
        await asyncio.gather(
            *(_raise_limits(senders[i % len(senders)], a) for i, a in enumerate(traders))
        )
        watched = [*traders[: p.ws_users], idle]
        dashboards = await _dashboards(stack, deployment, proxy, watched)

        tag = uuid.uuid4().hex[:8]
        cpu = CpuMeter(deployment, await server_processes(pg_pool, servers.redis_url))
        start = time.monotonic()
        seed = settings.PAPER_PRICE_SEED
        await asyncio.gather(
            *(
                _send_lane(senders[i % len(senders)], lane, start, p.rate, seed, tag)
                for i, lane in enumerate(lanes)
            )
        )
        send_s = time.monotonic() - start
        unfinished = await eventually(
            lambda: pg_pool.fetchval(_UNFINISHED, user_ids, list(TERMINAL_STATUSES)),
            lambda n: n == 0,
            what="signals not terminal",
            timeout_s=p.drain_s,
        )
        drain_s = time.monotonic() - start - send_s
        cpu_s = cpu.stop()
        books = await Books.read(pg_pool, [*user_ids, idle.user_id])
        expected = {a.user_id: expected_events(books, a.user_id) for a in watched}

        async def missing() -> int:
            return sum(len(expected[d.user_id] - set(received(d))) for d in dashboards)

        await eventually(
            missing, lambda n: n == 0, what="websocket events missing", timeout_s=EVENTS_DEADLINE_S
        )
        proxied = [b.connections for b in proxy.backends]

    answers = [answer for lane in lanes for answer in lane.answers]
    accepted = {a.signal_id for a in answers if a.signal_id is not None}
    by_api = {
        api.log_path.stem: {line["signal_id"] for line in logged(api, "webhook_accepted")}
        for api in deployment.apis
    }
    by_worker = {
        w.log_path.stem: [line["signal_id"] for line in logged(w, "signal_finished")]
        for w in deployment.workers
    }
    worker_of = {sid: name for name, sids in by_worker.items() for sid in sids}
    workers_of_key: dict[tuple[str, str], set[str | None]] = defaultdict(set)
    for s in books.signals:
        workers_of_key[(s["user_id"], s["symbol"])].add(worker_of.get(str(s["id"])))
    violations = order_violations(books)
    doubled = duplicates(books)
    finished_twice = [
        sid for sid, n in Counter(itertools.chain(*by_worker.values())).items() if n > 1
    ]
    terminal = Counter(f"{s['signal_type']}:{s['status']}" for s in books.signals)
    reasons = Counter(
        (s["signal_type"], s["status"], s["status_reason"])
        for s in books.signals
        if s["status"] != "executed"
    )
    open_positions = [pos for pos in books.positions if pos["status"] != "closed"]
    ws = _ws_report(dashboards, expected)
    answer_ms = [a.seconds * 1000 for a in answers]
    late_ms = [a.late * 1000 for a in answers]
    commit_to_end_ms = [
        (s["processed_at"] - s["created_at"]).total_seconds() * 1000
        for s in books.signals
        if s["processed_at"] is not None
    ]

    print(  # noqa: T201 - the run's report (shown with -s, and on failure)
        "\n".join(
            [
                f"\n== scale-out: {len(deployment.apis)} API processes behind a round-robin "
                f"proxy, {len(deployment.workers)} worker processes, one PostgreSQL, one Redis",
                f"   start-up of {len(deployment.apis) + len(deployment.workers)} engine "
                f"processes: {deployment.startup_s:.1f} s",
                f"   load: {p.users} pro users x {p.symbols} symbols = {p.keys} keys, "
                f"{p.per_key} alerts per key (entry/exit alternating), {p.total} alerts "
                f"offered at {p.rate:g}/s over up to {p.connections} connections",
                "   alerts sent per API: "
                + ", ".join(f"{name} {len(sids & accepted)}" for name, sids in by_api.items())
                + f"  (proxy connections per API, alerts and dashboards: {proxied})",
                f"   accepted (2xx): {len(accepted)} of {len(answers)}; not accepted: "
                f"{dict(Counter(a.status for a in answers if a.signal_id is None))}; webhook "
                f"answer p50 {percentile(answer_ms, 50):.0f} ms, p99 "
                f"{percentile(answer_ms, 99):.0f} ms, max {max(answer_ms):.0f} ms (waits for "
                "the sender's connection included)",
                f"   duration: sending {send_s:.1f} s = {len(answers) / send_s:.1f} alerts/s "
                f"(behind the schedule by p50 {percentile(late_ms, 50):.0f} ms, max "
                f"{max(late_ms):.0f} ms); "
                f"every signal terminal {drain_s:.1f} s after the last answer ({unfinished} "
                f"left); commit to terminal p50 {percentile(commit_to_end_ms, 50):.0f} ms, p99 "
                f"{percentile(commit_to_end_ms, 99):.0f} ms",
                "   terminal by status: "
                + ", ".join(f"{k} {n}" for k, n in sorted(terminal.items())),
                *(f"     {n} x {t} {s}: {r}" for (t, s, r), n in reasons.most_common(5)),
                "   signals per worker: "
                + ", ".join(f"{name} {len(sids)}" for name, sids in by_worker.items())
                + "; keys executed by more than one worker: "
                + f"{sum(len(w) > 1 for w in workers_of_key.values())} of {p.keys}",
                f"   order violations: {len(violations)}; duplicate orders: {len(doubled)} "
                f"({len(books.trades)} trades, {len(books.paper_orders)} exchange orders, "
                f"{sum(books.placements.values())} sends audited); signals finished twice: "
                f"{len(finished_twice)}; positions left open: {len(open_positions)}",
                *(f"     {v}" for v in (violations + doubled)[:10]),
                "   websocket events expected/received (watched users' dashboards, per place):",
                *ws.lines,
                f"   CPU while sending and draining ({send_s + drain_s:.0f} s wall): "
                + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cpu_s.items()),
            ]
        ),
        flush=True,
    )

    assert len(answers) == p.total
    assert len(accepted) == len(answers), "every alert is accepted (limits are raised)"
    assert unfinished == 0
    assert {str(s["id"]) for s in books.signals} == accepted  # one signal per accepted alert
    # In commit order, every exit finds the position its entry opened: all of them execute.
    assert terminal == Counter(
        {"long_entry:executed": p.total // 2, "long_exit:executed": p.total // 2}
    ), reasons
    assert open_positions == []
    assert violations == []
    assert doubled == []
    assert finished_twice == []
    assert set(worker_of) == accepted  # each signal finished by a worker, on its record
    assert all(len(sids) > 0 for sids in by_worker.values()), "every worker took a share"
    # The order held across processes: keys whose signals several workers executed.
    assert any(len(workers) > 1 for workers in workers_of_key.values())
    assert set().union(*by_api.values()) == accepted
    assert all(len(sids) > 0 for sids in by_api.values()), "both APIs took alerts"
    # Dashboards on one API process were told of alerts that came in through the other.
    watched_signals = {str(s["id"]) for s in books.signals if s["user_id"] in expected}
    assert all(len(sids & watched_signals) > 0 for sids in by_api.values())
    assert ws.problems == []
    # Thousands of webhook and access tokens went through the processes: none is in a log line.
    tokens = [t for a in [*traders, idle] for t in (a.webhook_token, a.access_token)]
    outputs = [process.output for process in deployment.all]
    assert not [t[:8] for t in tokens if any(t in output for output in outputs)]


@dataclass
class WsReport:
    lines: list[str]
    problems: list[str]


def _ws_report(dashboards: Sequence[Dashboard], expected: dict[str, set[EventKey]]) -> WsReport:
    """Per place (each API directly, the proxy): the events expected and told, by type; what
    is missing or not the user's (problems); what was told more than once (at-least-once
    publishing: reported, not a failure)."""
    lines, problems = [], []
    for where in sorted({d.where for d in dashboards}):
        here = [d for d in dashboards if d.where == where]
        want: Counter[str] = Counter()
        got: Counter[str] = Counter()
        missing = unexpected = repeats = 0
        for d in here:
            told = received(d)
            want.update(kind for kind, _id, _status in expected[d.user_id])
            got.update(kind for kind, _id, _status in told.elements())
            missing += len(expected[d.user_id] - set(told))
            unexpected += sum(n for key, n in told.items() if key not in expected[d.user_id])
            repeats += sum(n - 1 for key, n in told.items() if key in expected[d.user_id])
        lines.append(
            f"     {where}: {len(here)} users, {got.total()}/{want.total()} ("
            + ", ".join(f"{t} {got[t]}/{want[t]}" for t in COUNTED)
            + f"); missing {missing}, unexpected or another user's {unexpected}, "
            f"told twice {repeats}"
        )
    for d in dashboards:
        told = received(d)
        who = f"{d.where} {d.user_id[:8]}"
        problems += [f"{who}: missing {key}" for key in sorted(expected[d.user_id] - set(told))]
        problems += [f"{who}: unexpected {key}" for key in told if key not in expected[d.user_id]]
        problems += event_order_problems(d)
    return WsReport(lines, problems)
