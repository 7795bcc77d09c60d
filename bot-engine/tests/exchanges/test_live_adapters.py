"""What only the live adapters do, on Binance and Bybit alike, through the real ccxt clients
against the emulators: amounts and prices onto the market's precision, hedge-mode accounts,
what a key may do, and the faults — answers lost after the exchange acted, 5xx, rate limits,
refused timestamps, a client id the exchange already has, a position mode switched behind
the engine's back, and the request budget shared by every key behind one address."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from redis.asyncio import Redis

from app.core.redis import create_redis
from app.exchanges.base import OrderRequest, OrderSide, OrderStatus, OrderType
from app.exchanges.ccxt_adapter import CcxtAdapter
from app.exchanges.errors import AuthenticationFailed, OutcomeUnknown, RetryLater
from app.exchanges.request_budget import BudgetLimits, RequestBudget
from tests.exchange_sim import binance_futures, bybit_v5
from tests.exchange_sim.binance_futures import BinanceFuturesServer
from tests.exchange_sim.bybit_v5 import BybitV5Server
from tests.support.venues import (
    START_BALANCE,
    binance_adapter,
    bybit_adapter,
    new_credentials,
)

pytest_plugins = ("tests.support.live",)  # the emulators

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
BTC = "BTCUSDT"
if TYPE_CHECKING:
    from tests.conftest import TestServers

FAST_LOOKUPS = (0.05, 0.1, 0.2)


@dataclass
class Live:
    """One exchange's emulator, with the paths its faults are injected on."""

    name: str
    server: Any  # BinanceFuturesServer | BybitV5Server
    create_path: str
    positions_path: str
    time_path: str

    def adapter(self, api_key: str, secret: str, *, timeout_ms: int = 3000) -> CcxtAdapter:
        make = binance_adapter if self.name == "binance" else bybit_adapter
        adapter: CcxtAdapter = make(self.server, api_key, secret, timeout_ms=timeout_ms)
        adapter.lookup_delays_s = FAST_LOOKUPS
        return adapter

    def account(self, **options: Any) -> tuple[str, str]:
        api_key, secret = new_credentials()
        self.server.add_account(api_key, secret, balance=START_BALANCE, **options)
        return api_key, secret

    def orders(self, api_key: str) -> list[Any]:
        """Every order the account has, conditional ones included."""
        found = list(self.server.orders(api_key))
        if self.name == "binance":
            found += self.server.algo_orders(api_key)
        return found

    def positions(self, api_key: str) -> dict[str, Decimal]:
        if self.name == "binance":
            return {p.position_side: abs(p.amount) for p in self.server.positions(api_key)}
        return {p.side: p.size for p in self.server.positions(api_key) if p.size}

    def creates(self) -> int:
        return sum(1 for r in self.server.requests
                   if r.method == "POST" and r.path == self.create_path)  # fmt: skip

    def raw_client(self, api_key: str, secret: str) -> Any:
        module = binance_futures if self.name == "binance" else bybit_v5
        return module.make_client(self.server, api_key, secret)


@pytest.fixture(params=["binance", "bybit"])
def live(
    request: pytest.FixtureRequest,
    binance_server: BinanceFuturesServer,
    bybit_server: BybitV5Server,
) -> Live:
    if request.param == "binance":
        live = Live("binance", binance_server, binance_futures.ORDER,
                    binance_futures.POSITION_RISK_V2, "/fapi/v1/time")  # fmt: skip
    else:
        live = Live("bybit", bybit_server, bybit_v5.ORDER_CREATE, bybit_v5.POSITION_LIST,
                    bybit_v5.MARKET_TIME)  # fmt: skip
    live.server.set_price(BTC, D("65000"))
    return live


@pytest.fixture
async def adapters(live: Live) -> AsyncIterator[list[CcxtAdapter]]:
    """Adapters a test makes, closed at its end."""
    made: list[CcxtAdapter] = []
    yield made
    for adapter in made:
        await adapter.close_client()


@dataclass
class Trader:
    adapter: CcxtAdapter
    api_key: str
    secret: str


@pytest.fixture
def trader(live: Live, adapters: list[CcxtAdapter]) -> Trader:
    """A fresh one-way account and its adapter."""
    api_key, secret = live.account()
    adapter = live.adapter(api_key, secret)
    adapters.append(adapter)
    return Trader(adapter, api_key, secret)


def market(side: OrderSide, quantity: str, *, reduce_only: bool = False,
           client_order_id: str | None = None) -> OrderRequest:  # fmt: skip
    return OrderRequest(symbol=BTC, side=side, type=OrderType.MARKET, quantity=D(quantity),
                        client_order_id=client_order_id or f"lv{uuid.uuid4().hex[:24]}",
                        reduce_only=reduce_only)  # fmt: skip


def stop(side: OrderSide, quantity: str, price: str) -> OrderRequest:
    return OrderRequest(symbol=BTC, side=side, type=OrderType.STOP_MARKET, quantity=D(quantity),
                        client_order_id=f"lv{uuid.uuid4().hex[:24]}", stop_price=D(price),
                        reduce_only=True)  # fmt: skip


# --------------------------------------------------------------------------- precision
async def test_amount_and_trigger_are_rounded_onto_the_market_precision(
    live: Live, trader: Trader
) -> None:
    adapter, api_key = trader.adapter, trader.api_key
    entry = await adapter.create_order(market(BUY, "0.0159"))  # step 0.001
    assert entry.quantity == entry.filled_quantity == D("0.015")
    protect = await adapter.create_order(stop(SELL, "0.015", "60000.07"))  # tick 0.1
    assert protect.stop_price == D("60000.0") and protect.quantity == D("0.015")
    assert live.positions(api_key) in ({"BOTH": D("0.015")}, {"Buy": D("0.015")})


# --------------------------------------------------------------------------- hedge mode
async def test_a_hedge_mode_account_gets_its_position_side(
    live: Live, adapters: list[CcxtAdapter]
) -> None:
    api_key, secret = live.account(hedge_mode=True)
    adapter = live.adapter(api_key, secret)
    adapters.append(adapter)
    entry = await adapter.create_order(market(BUY, "0.01"))
    protect = await adapter.create_order(stop(SELL, "0.01", "60000"))
    assert entry.status == OrderStatus.FILLED and protect.status == OrderStatus.OPEN
    position = await adapter.get_position(BTC)
    assert position is not None and (position.side, position.quantity) == ("long", D("0.01"))
    live.server.set_price(BTC, D("59900"))
    done = await adapter.get_order(BTC, client_order_id=protect.client_order_id)
    assert done is not None and done.status == OrderStatus.FILLED
    assert await adapter.get_position(BTC) is None


async def test_a_position_mode_switched_on_the_exchange_is_read_again(
    live: Live, trader: Trader
) -> None:
    adapter, api_key = trader.adapter, trader.api_key
    await adapter.create_order(market(BUY, "0.01"))
    await adapter.create_order(market(SELL, "0.01", reduce_only=True))  # one-way mode known
    raw = live.raw_client(api_key, trader.secret)
    try:
        await raw.set_position_mode(True)  # the user switches to hedge mode on the website
    finally:
        await raw.close()
    placed = await adapter.create_order(market(BUY, "0.01"))
    assert placed.status == OrderStatus.FILLED
    assert live.positions(api_key) in ({"LONG": D("0.01")}, {"Buy": D("0.01")})


# --------------------------------------------------------------------------- keys
async def test_what_a_key_may_do_is_read_from_the_exchange(
    live: Live, adapters: list[CcxtAdapter]
) -> None:
    for options, expected in (
        ({}, (True, True, False)),
        ({"can_withdraw": True}, (True, True, True)),
        ({"can_trade": False}, (True, False, False)),
    ):
        api_key, secret = live.account(**options)
        adapter = live.adapter(api_key, secret)
        adapters.append(adapter)
        permissions = await adapter.key_permissions()
        seen = (permissions.can_read, permissions.can_trade, permissions.can_withdraw)
        assert seen == expected, options


async def test_a_wrong_secret_is_refused_as_authentication(
    live: Live, adapters: list[CcxtAdapter]
) -> None:
    api_key, _secret = live.account()
    adapter = live.adapter(api_key, "not-the-secret")
    adapters.append(adapter)
    assert await adapter.validate_credentials() is False
    with pytest.raises(AuthenticationFailed) as refused:
        await adapter.key_permissions()
    # Bybit echoes the signed string, key included: never in an error the engine keeps.
    assert api_key not in str(refused.value) and refused.value.__cause__ is None
    unknown = live.adapter("no-such-key", "whatever")
    adapters.append(unknown)
    assert await unknown.validate_credentials() is False


# --------------------------------------------------------------------------- faults
async def test_an_answer_lost_after_the_order_was_placed_finds_that_order(
    live: Live, adapters: list[CcxtAdapter]
) -> None:
    api_key, secret = live.account()
    adapter = live.adapter(api_key, secret, timeout_ms=500)
    adapters.append(adapter)
    await adapter.market(BTC)  # markets loaded before the stall
    live.server.accept_then_stall("POST", live.create_path, seconds=1.5)
    before = live.creates()
    order = await adapter.create_order(market(BUY, "0.01"))
    assert order.status == OrderStatus.FILLED and order.filled_quantity == D("0.01")
    assert live.creates() == before + 1  # looked up by its client id, never sent again
    assert len(live.orders(api_key)) == 1
    assert live.positions(api_key) in ({"BOTH": D("0.01")}, {"Buy": D("0.01")})


async def test_a_5xx_before_the_exchange_acted_is_sent_once_more_with_the_same_id(
    live: Live, trader: Trader
) -> None:
    adapter, api_key = trader.adapter, trader.api_key
    await adapter.market(BTC)
    live.server.fail_next("POST", live.create_path, 503)
    before = live.creates()
    request = market(BUY, "0.01")
    order = await adapter.create_order(request)
    assert order.status == OrderStatus.FILLED and order.client_order_id == request.client_order_id
    assert live.creates() == before + 2
    assert len(live.orders(api_key)) == 1


async def test_5xx_on_every_send_is_an_unknown_outcome_with_nothing_placed(
    live: Live, trader: Trader
) -> None:
    adapter, api_key = trader.adapter, trader.api_key
    await adapter.market(BTC)
    live.server.fail_next("POST", live.create_path, 502, times=2)
    with pytest.raises(OutcomeUnknown):
        await adapter.create_order(market(BUY, "0.01"))
    assert live.orders(api_key) == [] and live.positions(api_key) == {}


async def test_a_rate_limited_read_waits_as_told_and_succeeds(live: Live, trader: Trader) -> None:
    adapter = trader.adapter
    await adapter.market(BTC)
    status = 429 if live.name == "binance" else 200  # Bybit: retCode 10006 in a 200
    live.server.fail_next("GET", live.positions_path, status, retry_after=1)
    asked = len([r for r in live.server.requests if r.path == live.positions_path])
    assert await adapter.get_position(BTC) is None
    retried = [r for r in live.server.requests if r.path == live.positions_path][asked:]
    assert len(retried) == 2  # refused once, then answered


async def test_a_rate_limited_create_is_retry_later_and_places_nothing(
    live: Live, trader: Trader
) -> None:
    adapter, api_key = trader.adapter, trader.api_key
    await adapter.market(BTC)
    status = 429 if live.name == "binance" else 200
    live.server.fail_next("POST", live.create_path, status, retry_after=2)
    told: list[tuple[str, str]] = []
    adapter.on_error = lambda exchange, error: told.append((exchange, error.code))
    with pytest.raises(RetryLater) as later:
        await adapter.create_order(market(BUY, "0.01"))
    assert later.value.code == "rate_limited" and later.value.retry_after_s is not None
    assert told == [(live.name, "rate_limited")]  # what the exchange error metrics count
    assert live.orders(api_key) == []


async def test_a_refused_timestamp_is_retry_later(live: Live, trader: Trader) -> None:
    adapter, api_key = trader.adapter, trader.api_key
    await adapter.market(BTC)
    skew = live.server.set_clock_offset if live.name == "binance" else live.server.set_clock_skew
    skew(-30_000)  # the server's clock is behind: requests look as if from the future
    try:
        with pytest.raises(RetryLater) as later:
            await adapter.create_order(market(BUY, "0.01"))
        assert later.value.code == "timestamp_refused"
    finally:
        skew(0)
    assert live.orders(api_key) == []


async def test_a_client_id_the_exchange_already_has_returns_that_order(
    live: Live, trader: Trader
) -> None:
    """The first look-up misses the order (placed by an attempt whose answer was lost): the
    exchange refuses the duplicate client id, and the order it has is returned."""
    adapter, api_key = trader.adapter, trader.api_key
    request = market(BUY, "0.01")
    first = await adapter.create_order(request)
    lookup = binance_futures.ORDER if live.name == "binance" else bybit_v5.ORDER_REALTIME
    if live.name == "binance":
        live.server.fail_next("GET", lookup, 400, {"code": -2013, "msg": "Order does not exist."})
    else:
        empty = {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [],
                 "nextPageCursor": ""}, "retExtInfo": {}, "time": live.server.now_ms()}  # fmt: skip
        live.server.fail_next("GET", lookup, 200, empty)
        live.server.fail_next("GET", bybit_v5.ORDER_HISTORY, 200, empty)
    before = live.creates()
    again = await adapter.create_order(request)
    assert again.order_id == first.order_id
    assert live.creates() == before + 1  # sent, refused as a duplicate, found
    assert len(live.orders(api_key)) == 1


# --------------------------------------------------------------------------- request budget
@pytest.fixture
async def redis(servers: TestServers) -> AsyncIterator[Redis]:
    client = create_redis(servers.redis_url)
    yield client
    await client.aclose()


async def test_every_key_behind_one_address_spends_the_same_budget(
    live: Live, adapters: list[CcxtAdapter], redis: Redis
) -> None:
    egress = f"egress-{uuid.uuid4().hex[:8]}"
    limits = BudgetLimits(per_address=1000, per_key=1000, headroom=1.0)
    spent_by: list[RequestBudget] = []
    for _ in range(2):
        api_key, secret = live.account()
        budget = RequestBudget(redis, exchange=live.name, egress=egress, key_id=api_key,
                               limits=limits, max_wait_s=0.0)  # fmt: skip
        adapter = live.adapter(api_key, secret)
        adapter.budget = budget
        adapter.client.enableRateLimit = True
        adapter.client.throttle = budget.acquire
        adapters.append(adapter)
        spent_by.append(budget)
    first, second = adapters
    await first.get_position(BTC)
    await second.get_position(BTC)
    window_keys = [k async for k in redis.scan_iter(f"jadetrade:xw:{live.name}:ip:{egress}:*")]
    assert len(window_keys) == 1
    spent = float(await redis.get(window_keys[0]) or 0)
    assert spent > 0

    # A 429 for one key bans the address for every key behind it.
    status = 429 if live.name == "binance" else 200
    live.server.fail_next("GET", live.positions_path, status, retry_after=30)
    with pytest.raises(RetryLater):
        await first.get_position(BTC)
    asked = len(live.server.requests)
    with pytest.raises(RetryLater) as banned:
        await second.get_position(BTC)
    assert banned.value.code == "request_budget_spent"
    assert len(live.server.requests) == asked  # nothing sent while the address is banned
    await redis.delete(f"jadetrade:xw:{live.name}:ban:{egress}")
