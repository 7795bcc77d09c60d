"""The streaming ticker feed, driven through the real ccxt.pro clients (`binanceusdm`, `bybit`)
against local servers that speak Binance's USDⓈ-M market streams and Bybit's v5 public linear
stream, with markets loaded over REST from the local REST stand-ins: prices arrive as exact
Decimals, follow later ticks, survive lost connections, stop with `watch()`, and ccxt's
failures arrive as the engine's errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from app.config import Settings
from app.exchanges.errors import PriceUnavailable, RetryLater
from app.exchanges.ticker_stream import StreamingTickerFeed, _ticker_price, make_stream_feed
from tests.exchange_sim.binance_public import BinancePublicServer
from tests.exchange_sim.binance_ws import BinanceWsServer, SubscriptionRequest
from tests.exchange_sim.bybit_v5 import BybitV5Server
from tests.exchange_sim.bybit_ws import BybitWsServer
from tests.support.pipeline import eventually

D = Decimal
MakeFeed = Callable[..., StreamingTickerFeed]


@dataclass
class Stand:
    """One exchange's local stand-ins: REST for the markets, the stream for the tickers."""

    name: str
    rest: BinancePublicServer | BybitV5Server
    stream: BinanceWsServer | BybitWsServer

    def push(self, symbol: str, price: str) -> int:
        return self.stream.push_ticker(symbol, D(price))


@pytest.fixture(params=["binance", "bybit"])
def stand(request: pytest.FixtureRequest) -> Iterator[Stand]:
    if request.param == "binance":
        with BinancePublicServer() as rest, BinanceWsServer() as stream:
            yield Stand("binance", rest, stream)
    else:
        with BybitV5Server() as rest, BybitWsServer() as stream:
            yield Stand("bybit", rest, stream)


@pytest.fixture
async def make_feed(stand: Stand) -> AsyncIterator[MakeFeed]:
    """Feeds on the stand-ins, quick to give up and to reconnect; closed after the test."""
    feeds: list[StreamingTickerFeed] = []

    def make(**overrides: Any) -> StreamingTickerFeed:
        kwargs: dict[str, Any] = {
            "ws_url": stand.stream.url,
            "rest_urls": stand.rest.api_urls,
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.5,
            "timeout_ms": 3000,
        }
        feed = StreamingTickerFeed(stand.name, **(kwargs | overrides))
        feeds.append(feed)
        return feed

    yield make
    for feed in feeds:
        await feed.close()


async def until(condition: Callable[[], bool], *, what: str) -> None:
    async def probe() -> bool:
        return condition()

    await eventually(probe, bool, what=what, timeout_s=5.0)


async def until_subscribed(stand: Stand, symbol: str, *, requests: int = 1) -> None:
    """Until the stream has had `requests` subscriptions to `symbol`'s ticker and one is on."""
    stream = stand.stream
    await until(
        lambda: stream.subscribe_requests(symbol) >= requests and stream.subscribed(symbol),
        what=f"subscription {requests} to {symbol}",
    )


async def until_latest(feed: StreamingTickerFeed, symbol: str, price: str) -> None:
    await until(
        lambda: (latest := feed.latest(symbol)) is not None and latest[0] == D(price),
        what=f"{symbol} at {price}",
    )


async def first_price(stand: Stand, feed: StreamingTickerFeed, symbol: str, price: str) -> D:
    """Ask for `symbol`, and push its first tick once the feed has subscribed."""
    asking = asyncio.create_task(feed.price(symbol))
    await until_subscribed(stand, symbol)
    assert stand.push(symbol, price) == 1
    return await asking


async def test_the_first_price_is_the_pushed_price_as_an_exact_decimal(
    stand: Stand, make_feed: MakeFeed
) -> None:
    feed = make_feed()

    price = await first_price(stand, feed, "BTCUSDT", "65000.10")

    assert isinstance(price, Decimal)
    assert price == D("65000.10")
    assert await feed.price("BTCUSDT") == price  # from the stream: nothing asked again
    latest = feed.latest("BTCUSDT")
    assert latest is not None and latest[0] == price and isinstance(latest[1], float)
    topic = stand.stream.ticker_topic("BTCUSDT")  # btcusdt@ticker | tickers.BTCUSDT
    assert stand.stream.subscriptions == [SubscriptionRequest(1, "subscribe", (topic,))]
    expected_path = "/market/ws/" if stand.name == "binance" else "/v5/public/linear"
    assert [path.startswith(expected_path) for path in stand.stream.connections] == [True]


async def test_later_ticks_update_the_latest_price(stand: Stand, make_feed: MakeFeed) -> None:
    feed = make_feed()
    await first_price(stand, feed, "BTCUSDT", "65000.10")
    first = feed.latest("BTCUSDT")
    assert first is not None

    for price in ("65010.5", "64990.25", "65000"):
        assert stand.push("BTCUSDT", price) == 1
        await until_latest(feed, "BTCUSDT", price)

    latest = feed.latest("BTCUSDT")
    assert latest is not None and latest[1] > first[1]  # when it arrived moves on too
    assert await feed.price("BTCUSDT") == D("65000")
    # Small prices keep every digit (ccxt's floats are read back through their repr).
    assert await first_price(stand, feed, "1000PEPEUSDT", "0.0123456") == D("0.0123456")


@pytest.mark.parametrize("abrupt", [False, True], ids=["close_frame", "tcp_drop"])
async def test_a_dropped_connection_is_resubscribed_and_prices_flow_again(
    stand: Stand, make_feed: MakeFeed, abrupt: bool
) -> None:
    feed = make_feed()
    await first_price(stand, feed, "BTCUSDT", "65000.10")

    assert stand.stream.drop_connections(abrupt=abrupt) == 1

    await until_subscribed(stand, "BTCUSDT", requests=2)
    assert stand.push("BTCUSDT", "65100.5") == 1
    await until_latest(feed, "BTCUSDT", "65100.5")
    assert await feed.price("BTCUSDT") == D("65100.5")
    assert stand.stream.connections_opened == 2


async def test_watch_stops_following_the_symbols_left_out(
    stand: Stand, make_feed: MakeFeed
) -> None:
    feed = make_feed()
    assert await feed.watch(["BTCUSDT", "ETHUSDT"]) == frozenset()
    await until_subscribed(stand, "BTCUSDT")
    await until_subscribed(stand, "ETHUSDT")
    stand.push("BTCUSDT", "65000.1")
    stand.push("ETHUSDT", "3500.2")
    await until_latest(feed, "BTCUSDT", "65000.1")
    await until_latest(feed, "ETHUSDT", "3500.2")

    assert await feed.watch(["ETHUSDT"]) == frozenset()

    assert feed.followed == {"ETHUSDT"}
    assert feed.latest("BTCUSDT") is None
    assert not stand.stream.subscribed("BTCUSDT")  # unsubscribed on the exchange too
    assert [r.action for r in stand.stream.subscriptions if "btc" in str(r.topics).lower()] == [
        "subscribe",
        "unsubscribe",
    ]
    assert stand.push("BTCUSDT", "65999.9") == 0
    assert stand.push("ETHUSDT", "3501.5") == 1
    await until_latest(feed, "ETHUSDT", "3501.5")
    assert feed.latest("BTCUSDT") is None

    # Asked for again, it is followed again.
    asking = asyncio.create_task(feed.price("BTCUSDT"))
    await until_subscribed(stand, "BTCUSDT", requests=2)
    stand.push("BTCUSDT", "66000")
    await until_latest(feed, "BTCUSDT", "66000")
    # Bybit greets a subscription with a snapshot: the price pushed while nobody listened.
    assert await asking in (D("65999.9"), D("66000"))
    assert feed.followed == {"BTCUSDT", "ETHUSDT"}


async def test_a_symbol_without_a_linear_perpetual_has_no_price(
    stand: Stand, make_feed: MakeFeed
) -> None:
    feed = make_feed()

    for symbol in ("NOSUCHUSDT", "BTC/USDT:USDT", ""):
        with pytest.raises(PriceUnavailable):
            await feed.price(symbol)
    assert await feed.watch(["BTCUSDT", "NOSUCHUSDT"]) == {"NOSUCHUSDT"}

    assert feed.followed == {"BTCUSDT"}
    await until_subscribed(stand, "BTCUSDT")
    assert all("nosuch" not in str(r.topics).lower() for r in stand.stream.subscriptions)


async def test_no_tick_within_the_timeout_means_retry_later(
    stand: Stand, make_feed: MakeFeed
) -> None:
    feed = make_feed(first_tick_timeout_s=0.2)

    with pytest.raises(RetryLater):
        await feed.price("ETHUSDT")

    assert feed.followed == {"ETHUSDT"}  # still followed: a later ask finds the first tick
    await until_subscribed(stand, "ETHUSDT")
    stand.push("ETHUSDT", "3500.5")
    await until_latest(feed, "ETHUSDT", "3500.5")
    assert await feed.price("ETHUSDT") == D("3500.5")


async def test_unreachable_markets_mean_retry_later(stand: Stand, make_feed: MakeFeed) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free, and nothing listens on it once closed
    dead = {
        name: url.replace(f":{stand.rest.port}", f":{port}")
        for name, url in stand.rest.api_urls.items()
    }
    feed = make_feed(rest_urls=dead)

    with pytest.raises(RetryLater):
        await feed.price("BTCUSDT")
    with pytest.raises(RetryLater):
        await feed.watch(["BTCUSDT"])
    assert feed.followed == frozenset()
    assert stand.stream.connections_opened == 0


async def test_keep_alives_are_answered_both_ways(stand: Stand, make_feed: MakeFeed) -> None:
    # ccxt pings every 50 ms and drops a connection after two unanswered pings; the Binance
    # stand-in pings every 50 ms too, and drops a client that does not answer.
    feed = make_feed(options={"ws": {"keepAlive": 50}})
    stream = stand.stream
    if isinstance(stream, BinanceWsServer):
        stream.ping_interval_s, stream.ping_timeout_s = 0.05, 0.5
    await first_price(stand, feed, "BTCUSDT", "65000.10")

    if isinstance(stream, BybitWsServer):
        await until(lambda: stream.pings >= 5, what="five JSON pings answered")
    else:
        await until(lambda: stream.pongs >= 5, what="five server pings answered")

    assert stream.connections_opened == 1  # no keep-alive went unanswered
    stand.push("BTCUSDT", "65000.2")
    await until_latest(feed, "BTCUSDT", "65000.2")


async def test_close_leaves_no_running_tasks(stand: Stand, make_feed: MakeFeed) -> None:
    before = asyncio.all_tasks()
    feed = make_feed()
    await feed.watch(["BTCUSDT", "ETHUSDT"])
    await until_subscribed(stand, "BTCUSDT")
    stand.push("BTCUSDT", "65000.1")
    await until_latest(feed, "BTCUSDT", "65000.1")
    waiting = asyncio.create_task(feed.price("SOLUSDT"))  # waits for a first tick
    await until_subscribed(stand, "SOLUSDT")

    await feed.close()

    with pytest.raises(RuntimeError, match="closed"):
        await waiting
    running = {
        task
        for task in asyncio.all_tasks() - before
        if task is not asyncio.current_task() and not task.done()
    }
    assert running == set()
    assert feed.followed == frozenset()
    assert feed.latest("BTCUSDT") is None
    await until(lambda: stand.stream.connections == [], what="every connection closed")
    with pytest.raises(RuntimeError):
        await feed.price("BTCUSDT")
    await feed.close()  # a second close does nothing


async def test_make_stream_feed_follows_the_configured_stand_ins(stand: Stand) -> None:
    settings = Settings(
        _env_file=None,
        EXCHANGE_WS_URLS={stand.name: stand.stream.url},
        EXCHANGE_API_URLS={stand.name: stand.rest.api_urls},
    )
    feed = make_stream_feed(settings, stand.name)
    try:
        assert await first_price(stand, feed, "SOLUSDT", "150.25") == D("150.25")
    finally:
        await feed.close()


def test_an_exchange_without_a_stream_is_refused() -> None:
    with pytest.raises(ValueError, match="no ticker stream"):
        StreamingTickerFeed("okx")


def test_the_price_is_the_last_trade_else_the_mark_else_the_close() -> None:
    assert _ticker_price({"last": 65000.1, "markPrice": 65001.0, "close": 64999.0}) == D("65000.1")
    assert _ticker_price({"last": None, "markPrice": 65001.5, "close": 64999.0}) == D("65001.5")
    assert _ticker_price({"last": None, "markPrice": None, "close": 64999.5}) == D("64999.5")
    assert _ticker_price({"last": 0, "markPrice": None, "close": None}) is None
