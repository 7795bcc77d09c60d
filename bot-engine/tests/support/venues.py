"""Exchange accounts to run adapters against: the paper exchange on the test database, and the
Binance and Bybit adapters against the local servers that speak those exchanges' protocols.

A `Venue` is one fresh account: its adapter, a way to move the market (which fires resting
stop and take-profit orders the move crosses), and a count of the order-placing requests that
reached the exchange (so a test can show an order was refused before anything was sent).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from app.core.pg import Pool
from app.exchanges.base import ExchangeAdapter
from app.exchanges.binance import BinanceAdapter
from app.exchanges.bybit import BybitAdapter
from app.exchanges.ccxt_adapter import CcxtAdapter, ExchangeEndpoint, MarketCatalog
from app.exchanges.paper import PaperExchange, process_all_accounts
from app.exchanges.price_feed import ManualPriceFeed, base_price
from tests.exchange_sim.binance_futures import BinanceFuturesServer
from tests.exchange_sim.bybit_v5 import BybitV5Server

A = TypeVar("A", bound=CcxtAdapter)

VENUES = ("paper", "binance", "bybit")
START_BALANCE = Decimal("10000")
PAPER_FEE_RATE = Decimal("0.0004")
PAPER_SLIPPAGE = Decimal("0.05")
# Paths of the requests that place orders.
BINANCE_ORDER_PATHS = ("/fapi/v1/order", "/fapi/v1/algoOrder")
BYBIT_ORDER_PATHS = ("/v5/order/create",)


@dataclass
class Venue:
    name: str
    adapter: ExchangeAdapter
    move_price: Callable[[str, Decimal], Awaitable[None]]
    # Order-placing requests that reached the exchange so far (on the emulators: from any
    # account of the server; tests compare counts taken before and after).
    order_requests: Callable[[], Awaitable[int]]
    api_key: str | None = None
    secret: str | None = None


def new_credentials() -> tuple[str, str]:
    return f"key{uuid.uuid4().hex}", f"sec{uuid.uuid4().hex}{uuid.uuid4().hex}"


def binance_adapter(
    server: BinanceFuturesServer, api_key: str, secret: str, *, timeout_ms: int = 3000
) -> BinanceAdapter:
    return _on_emulator(BinanceAdapter, server.api_urls, api_key, secret, timeout_ms)


def bybit_adapter(
    server: BybitV5Server, api_key: str, secret: str, *, timeout_ms: int = 3000
) -> BybitAdapter:
    return _on_emulator(BybitAdapter, server.api_urls, api_key, secret, timeout_ms)


def _on_emulator(
    cls: type[A], api_urls: dict[str, str], api_key: str, secret: str, timeout_ms: int
) -> A:
    """An adapter of its own (own market catalog, no request budget) on an emulator."""
    endpoint = ExchangeEndpoint("live", api_urls)
    return cls(api_key, secret, endpoint=endpoint, catalog=MarketCatalog(), timeout_ms=timeout_ms)


async def paper_venue(pool: Pool, feed: ManualPriceFeed) -> Venue:
    account = f"venue-{uuid.uuid4().hex[:12]}"
    adapter = PaperExchange(
        pool, account, feed, starting_balance=START_BALANCE, taker_fee_rate=PAPER_FEE_RATE,
        slippage_percent=PAPER_SLIPPAGE,
    )  # fmt: skip

    async def move(symbol: str, price: Decimal) -> None:
        feed.set(symbol, price)
        await process_all_accounts(
            pool, feed, taker_fee_rate=PAPER_FEE_RATE, slippage_percent=PAPER_SLIPPAGE
        )

    async def orders() -> int:
        count: int = await pool.fetchval(
            "SELECT count(*) FROM paper_orders WHERE account_id = $1", account
        )
        return count

    return Venue("paper", adapter, move, orders)


def binance_venue(server: BinanceFuturesServer, *, hedge_mode: bool = False) -> Venue:
    api_key, secret = new_credentials()
    server.add_account(api_key, secret, balance=START_BALANCE, hedge_mode=hedge_mode)
    adapter = binance_adapter(server, api_key, secret)

    async def move(symbol: str, price: Decimal) -> None:
        server.set_price(symbol, price)

    async def orders() -> int:
        return sum(
            1 for r in server.requests if r.method == "POST" and r.path in BINANCE_ORDER_PATHS
        )

    return Venue("binance", adapter, move, orders, api_key, secret)


def bybit_venue(server: BybitV5Server, *, hedge_mode: bool = False) -> Venue:
    api_key, secret = new_credentials()
    server.add_account(api_key, secret, balance=START_BALANCE, hedge_mode=hedge_mode)
    adapter = bybit_adapter(server, api_key, secret)

    async def move(symbol: str, price: Decimal) -> None:
        server.set_price(symbol, price)

    async def orders() -> int:
        return sum(1 for r in server.requests if r.method == "POST" and r.path in BYBIT_ORDER_PATHS)

    return Venue("bybit", adapter, move, orders, api_key, secret)


async def close_venue(venue: Venue) -> None:
    if isinstance(venue.adapter, CcxtAdapter):
        await venue.adapter.close_client()
    else:
        await venue.adapter.close()


def reset_prices(feed: ManualPriceFeed, *servers: BinanceFuturesServer | BybitV5Server) -> None:
    """Every market back at its base price."""
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        feed.set(symbol, base_price(symbol))
        for server in servers:
            server.set_price(symbol, base_price(symbol))
