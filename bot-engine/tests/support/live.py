"""Live exchanges for end-to-end tests: the Binance and Bybit emulators, engine settings that
point the adapters at them, and helpers to open accounts and add their keys through the API.

Load it with `pytest_plugins = ("tests.support.pipeline", "tests.support.live")`; a module
that runs the engine against the emulators overrides `settings` with `live_settings`:

    @pytest.fixture(scope="module")
    def settings(live_settings: Settings) -> Settings:
        return live_settings
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app.config import Settings
from app.exchanges.ccxt_adapter import CcxtAdapter
from tests.conftest import SecretsSeen, make_settings
from tests.exchange_sim import binance_futures, bybit_v5
from tests.exchange_sim.binance_futures import BinanceFuturesServer
from tests.exchange_sim.bybit_v5 import BybitV5Server
from tests.support.pipeline import Harness, Trader
from tests.support.venues import START_BALANCE, new_credentials

if TYPE_CHECKING:
    from tests.conftest import TestServers

D = Decimal
SYMBOL = "BTCUSDT"


@pytest.fixture(scope="module")
def binance_server() -> Iterator[BinanceFuturesServer]:
    with BinanceFuturesServer() as server:
        yield server


@pytest.fixture(scope="module")
def bybit_server() -> Iterator[BybitV5Server]:
    with BybitV5Server() as server:
        yield server


@pytest.fixture(scope="module")
def live_settings(
    database_url: str,
    servers: TestServers,
    local_dir: Path,
    binance_server: BinanceFuturesServer,
    bybit_server: BybitV5Server,
) -> Settings:
    """The engine's settings with both exchanges pointed at their emulators; short timeouts
    and a short redelivery delay so that the drills take seconds."""
    return make_settings(
        database_url,
        servers.redis_url,
        local_dir,
        EXCHANGE_API_URLS={"binance": binance_server.api_urls, "bybit": bybit_server.api_urls},
        EXCHANGE_TIMEOUT_MS=1000,
        WORKER_RECLAIM_IDLE_MS=300,
        MAX_DELIVERIES=3,
    )


@pytest.fixture
def quick_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Look an order up after an unknown outcome at shorter intervals than in production."""
    monkeypatch.setattr(CcxtAdapter, "lookup_delays_s", (0.05, 0.1, 0.2, 0.4))


@dataclass
class Exchange:
    """One emulated exchange as the tests drive it."""

    name: str
    server: Any  # BinanceFuturesServer | BybitV5Server
    entry_path: str  # where market orders are created

    def add_account(self, **options: Any) -> tuple[str, str]:
        api_key, secret = new_credentials()
        self.server.add_account(api_key, secret, balance=START_BALANCE, **options)
        return api_key, secret

    def set_price(self, price: str) -> None:
        self.server.set_price(SYMBOL, D(price))

    def entries(self, api_key: str) -> list[Any]:
        """The account's regular (not conditional) orders."""
        orders = self.server.orders(api_key)
        if self.name == "bybit":
            return [o for o in orders if not o.is_conditional]
        return [o for o in orders if o.orig_type == "MARKET"]

    def resting(self, api_key: str) -> list[Any]:
        """Conditional orders waiting for their trigger."""
        if self.name == "binance":
            return [o for o in self.server.algo_orders(api_key) if o.is_open]
        return [o for o in self.server.orders(api_key) if o.is_conditional and o.is_open]

    def position(self, api_key: str) -> Decimal:
        if self.name == "binance":
            return sum((p.amount for p in self.server.positions(api_key)), D(0))
        return sum((p.size if p.side == "Buy" else -p.size
                    for p in self.server.positions(api_key)), D(0))  # fmt: skip

    def realized(self, api_key: str) -> Decimal:
        """Realised PnL before fees, as the exchange accounts it."""
        if self.name == "binance":
            return sum((t.realized_pnl for t in self.server.trades(api_key)), D(0))
        return sum((c.closed_pnl + c.open_fee + c.close_fee
                    for c in self.server.closed_pnl(api_key)), D(0))  # fmt: skip

    def creates_since(self, since: int) -> list[Any]:
        return [r for r in self.server.requests[since:]
                if r.method == "POST" and r.path == self.entry_path]  # fmt: skip

    def website(self, api_key: str, secret: str) -> Any:
        """A ccxt client on the account, acting as the exchange's own website or app would
        (close it with `await client.close()`)."""
        module = binance_futures if self.name == "binance" else bybit_v5
        return module.make_client(self.server, api_key, secret)

    def rate_limit_status(self) -> int:
        return 429 if self.name == "binance" else 200  # Bybit: retCode 10006 in a 200


@pytest.fixture(params=["binance", "bybit"])
def exchange(
    request: pytest.FixtureRequest,
    binance_server: BinanceFuturesServer,
    bybit_server: BybitV5Server,
) -> Iterator[Exchange]:
    if request.param == "binance":
        made = Exchange("binance", binance_server, binance_futures.ORDER)
    else:
        made = Exchange("bybit", bybit_server, bybit_v5.ORDER_CREATE)
    made.set_price("65000")
    yield made
    made.server.clear_faults()


async def add_key(
    harness: Harness, trader: Trader, exchange: Exchange, secrets: SecretsSeen, **options: Any
) -> tuple[str, str, dict[str, Any]]:
    """A new exchange account whose key the trader adds through the API."""
    api_key, secret = exchange.add_account(**options)
    secrets.add(api_key, secret)
    response = await harness.client.post(
        "/api/exchange-keys",
        json={"exchange": exchange.name, "api_key": api_key, "api_secret": secret},
        headers=trader.auth,
    )
    return api_key, secret, {"status": response.status_code, **response.json()}


@dataclass(frozen=True)
class LiveTrader:
    """A user with a working API key on an emulated exchange."""

    trader: Trader
    api_key: str
    secret: str

    @property
    def auth(self) -> dict[str, str]:
        return self.trader.auth


async def traded(harness: Harness, exchange: Exchange, secrets: SecretsSeen) -> LiveTrader:
    trader = await harness.account()
    api_key, secret, added = await add_key(harness, trader, exchange, secrets)
    assert added["status"] == 201, added
    return LiveTrader(trader, api_key, secret)
