"""The ccxt ticker feed, driven through the real ccxt client against a local server that
speaks Binance USDⓈ-M public REST: prices come back as exact Decimals, are cached and shared,
symbols map through the loaded markets, and ccxt's errors arrive as the engine's."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from app.exchanges.errors import PriceUnavailable, RetryLater
from app.exchanges.ticker_feed import CcxtTickerFeed
from tests.exchange_sim.binance_public import (
    EXCHANGE_INFO,
    TICKER_24HR,
    BinancePublicServer,
    FuturesMarket,
)

MakeFeed = Callable[..., CcxtTickerFeed]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def binance() -> Iterator[BinancePublicServer]:
    with BinancePublicServer() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_feed(binance: BinancePublicServer, clock: Clock) -> AsyncIterator[MakeFeed]:
    """Feeds on the local server and the test's clock; all closed at the end of the test."""
    feeds: list[CcxtTickerFeed] = []

    def make(**overrides: Any) -> CcxtTickerFeed:
        kwargs: dict[str, Any] = {"urls": {"api": binance.api_urls}, "clock": clock}
        feed = CcxtTickerFeed(**(kwargs | overrides))
        feeds.append(feed)
        return feed

    yield make
    for feed in feeds:
        await feed.close()


async def test_price_is_the_last_price_as_an_exact_decimal_and_is_cached(
    binance: BinancePublicServer, make_feed: MakeFeed
) -> None:
    binance.set_price("ETHUSDT", Decimal("3500.07"))
    feed = make_feed()

    first = await feed.price("ETHUSDT")
    second = await feed.price("ETHUSDT")

    assert first == second == Decimal("3500.07")
    assert str(first) == "3500.07"  # not 3500.0700000000001: no float arithmetic on the way
    assert binance.hits(EXCHANGE_INFO) == 1
    assert binance.hits(TICKER_24HR, "ETHUSDT") == 1


async def test_symbols_map_to_linear_perpetuals_through_the_loaded_markets(
    binance: BinancePublicServer, make_feed: MakeFeed
) -> None:
    binance.list_market(
        FuturesMarket(
            "BTCUSDT_260626",
            "BTC",
            "USDT",
            Decimal("0.1"),
            Decimal("0.001"),
            Decimal("100"),
            contract_type="CURRENT_QUARTER",
            delivery_date_ms=1_782_460_800_000,
        )
    )
    binance.list_market(
        FuturesMarket("BTCUSDC", "BTC", "USDC", Decimal("0.1"), Decimal("0.001"), Decimal("100"))
    )
    binance.set_price("BTCUSDT", Decimal("65000.1"))
    binance.set_price("BTCUSDT_260626", Decimal("66000.5"))
    binance.set_price("BTCUSDC", Decimal("64990.3"))
    binance.set_price("1000PEPEUSDT", Decimal("0.0123456"))
    feed = make_feed()

    assert await feed.price("BTCUSDT") == Decimal("65000.1")  # the perpetual, not the quarterly
    assert await feed.price("BTCUSDC") == Decimal("64990.3")  # settled in USDC
    assert await feed.price("1000PEPEUSDT") == Decimal("0.0123456")
    assert binance.hits(TICKER_24HR, "BTCUSDT_260626") == 0
    assert binance.hits(EXCHANGE_INFO) == 1


async def test_concurrent_requests_share_one_market_load_and_one_fetch_per_symbol(
    binance: BinancePublicServer, make_feed: MakeFeed
) -> None:
    binance.set_price("BTCUSDT", Decimal("65000.1"))
    binance.set_price("SOLUSDT", Decimal("150.25"))
    feed = make_feed()

    prices = await asyncio.gather(*(feed.price(symbol) for symbol in ["BTCUSDT", "SOLUSDT"] * 10))

    assert prices == [Decimal("65000.1"), Decimal("150.25")] * 10
    assert binance.hits(EXCHANGE_INFO) == 1
    assert binance.hits(TICKER_24HR, "BTCUSDT") == 1
    assert binance.hits(TICKER_24HR, "SOLUSDT") == 1


async def test_a_price_older_than_max_age_is_fetched_again(
    binance: BinancePublicServer, make_feed: MakeFeed, clock: Clock
) -> None:
    binance.set_price("BTCUSDT", Decimal("65000.1"))
    feed = make_feed(max_age_s=2.0)
    assert await feed.price("BTCUSDT") == Decimal("65000.1")
    binance.set_price("BTCUSDT", Decimal("65010.2"))

    clock.advance(1.9)
    assert await feed.price("BTCUSDT") == Decimal("65000.1")  # still fresh: from the cache
    clock.advance(0.1)
    assert await feed.price("BTCUSDT") == Decimal("65010.2")

    assert binance.hits(TICKER_24HR, "BTCUSDT") == 2
    assert binance.hits(EXCHANGE_INFO) == 1  # markets are loaded once


async def test_a_symbol_without_an_active_linear_perpetual_has_no_price(
    binance: BinancePublicServer, make_feed: MakeFeed
) -> None:
    binance.list_market(
        FuturesMarket(
            "OLDUSDT",
            "OLD",
            "USDT",
            Decimal("0.001"),
            Decimal("1"),
            Decimal("5"),
            status="SETTLING",
        )
    )
    feed = make_feed()

    for symbol in ("NOSUCHUSDT", "OLDUSDT", "BTC/USDT:USDT", ""):
        with pytest.raises(PriceUnavailable):
            await feed.price(symbol)

    assert binance.hits(TICKER_24HR) == 0
    assert binance.hits(EXCHANGE_INFO) == 1


async def test_a_market_delisted_after_loading_has_no_price(
    binance: BinancePublicServer, make_feed: MakeFeed
) -> None:
    feed = make_feed(max_age_s=0)
    await feed.price("DOTUSDT")
    binance.delist("DOTUSDT")  # Binance now answers 400 {"code":-1121,"msg":"Invalid symbol."}

    with pytest.raises(PriceUnavailable):
        await feed.price("DOTUSDT")
    assert binance.hits(TICKER_24HR, "DOTUSDT") == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_mean_retry_later_and_are_not_cached(
    binance: BinancePublicServer, make_feed: MakeFeed, status: int
) -> None:
    binance.set_price("BTCUSDT", Decimal("65000.1"))
    feed = make_feed()
    binance.fail_next(status, path=TICKER_24HR)

    with pytest.raises(RetryLater) as raised:
        await feed.price("BTCUSDT")
    assert raised.value.retry_after_s is None

    assert await feed.price("BTCUSDT") == Decimal("65000.1")
    assert binance.hits(TICKER_24HR, "BTCUSDT") == 2


async def test_a_failed_market_load_is_retried_on_the_next_request(
    binance: BinancePublicServer, make_feed: MakeFeed
) -> None:
    binance.set_price("BTCUSDT", Decimal("65000.1"))
    feed = make_feed()
    binance.fail_next(503, path=EXCHANGE_INFO)

    with pytest.raises(RetryLater):
        await feed.price("BTCUSDT")
    assert await feed.price("BTCUSDT") == Decimal("65000.1")
    assert binance.hits(EXCHANGE_INFO) == 2


@pytest.mark.parametrize("status", [429, 418])
async def test_rate_limits_mean_retry_later_and_pause_until_retry_after(
    binance: BinancePublicServer, make_feed: MakeFeed, clock: Clock, status: int
) -> None:
    binance.set_price("BTCUSDT", Decimal("65000.1"))
    feed = make_feed()
    await feed.price("ETHUSDT")  # markets loaded, one price cached
    binance.fail_next(status, retry_after_s=7, path=TICKER_24HR)

    with pytest.raises(RetryLater) as raised:
        await feed.price("BTCUSDT")
    assert raised.value.retry_after_s == 7

    clock.advance(6)
    with pytest.raises(RetryLater) as raised:
        await feed.price("SOLUSDT")  # not asked: the exchange said to wait
    assert raised.value.retry_after_s == pytest.approx(1)
    assert binance.hits(TICKER_24HR, "SOLUSDT") == 0

    clock.advance(1)
    assert await feed.price("BTCUSDT") == Decimal("65000.1")
    assert binance.hits(TICKER_24HR, "BTCUSDT") == 2


async def test_a_request_that_times_out_means_retry_later(
    binance: BinancePublicServer, make_feed: MakeFeed
) -> None:
    feed = make_feed(timeout_ms=200)
    await feed.price("ETHUSDT")
    binance.hold_next(path=TICKER_24HR)

    with pytest.raises(RetryLater):
        await feed.price("BTCUSDT")
    binance.release()


async def test_an_unreachable_exchange_means_retry_later(make_feed: MakeFeed) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free, and nothing listens on it once closed
    feed = make_feed(urls={"api": {"fapiPublic": f"http://127.0.0.1:{port}/fapi/v1"}})

    with pytest.raises(RetryLater):
        await feed.price("BTCUSDT")


async def test_close_ends_the_feed_and_is_idempotent(
    binance: BinancePublicServer, make_feed: MakeFeed
) -> None:
    feed = make_feed()
    await feed.price("BTCUSDT")

    await feed.close()
    await feed.close()

    with pytest.raises(RuntimeError):
        await feed.price("BTCUSDT")
    assert binance.hits(TICKER_24HR, "BTCUSDT") == 1


async def test_close_cancels_a_request_in_flight(
    binance: BinancePublicServer, make_feed: MakeFeed
) -> None:
    feed = make_feed()
    await feed.price("ETHUSDT")
    binance.hold_next(path=TICKER_24HR)
    waiting = asyncio.create_task(feed.price("BTCUSDT"))
    deadline = time.monotonic() + 5
    while binance.hits(TICKER_24HR, "BTCUSDT") == 0:  # poll until the request is held
        assert time.monotonic() < deadline, "the request never reached the server"
        await asyncio.sleep(0.01)

    await asyncio.wait_for(feed.close(), timeout=5)

    with pytest.raises(asyncio.CancelledError):
        await waiting


def test_an_unknown_exchange_is_refused() -> None:
    with pytest.raises(ValueError, match="no exchange"):
        CcxtTickerFeed("nosuchexchange")
