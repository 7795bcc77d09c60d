"""Live prices from an exchange's public WebSocket ticker stream, through ccxt.pro.

`StreamingTickerFeed` is a `PriceFeed` for the price updater: instead of asking a REST ticker
per request (`CcxtTickerFeed`), it follows each symbol's ticker stream (`watch_ticker`) in a
background task and answers from the last tick received. Binance is followed on its USDⓈ-M
futures market streams (ccxt `binanceusdm`), Bybit on its v5 public linear stream (ccxt
`bybit`); only public data, no API key. Canonical symbols ("BTCUSDT") map to the exchange's
linear perpetual ("BTC/USDT:USDT") through the loaded markets, as the REST feed maps them.

- `price(symbol)` starts following a symbol on first ask and waits a short while for its
  first tick; `latest(symbol)` answers without waiting; `watch(symbols)` declares the whole
  set to follow, stopping (and, where ccxt can, unsubscribing) the symbols left out.
- A follow task never dies on a lost connection: it logs a warning, backs off (capped
  exponential with jitter) and watches again; ccxt opens a new connection and subscribes anew.
- Prices are `Decimal`s of the ticker's `last` (falling back to mark, then close).

ccxt's exceptions are translated here and nowhere else: market loading that fails on the
network → `RetryLater`; a symbol without an active linear perpetual → `PriceUnavailable`;
no tick within `first_tick_timeout_s` → `RetryLater`; anything else → `ExchangeError`.

ccxt.pro is imported when the first feed is created, not with this module (see ticker_feed).
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from app.exchanges.errors import ExchangeError, RetryLater
from app.exchanges.ticker_feed import PerpetualSymbols, to_decimal
from app.logging.logger import get_logger

if TYPE_CHECKING:
    from app.config import Settings

log = get_logger("exchanges")

# Engine exchange name → ccxt.pro id of its linear perpetuals.
CCXT_IDS: dict[str, str] = {"binance": "binanceusdm", "bybit": "bybit"}

# ccxt options per exchange: linear markets only, and nothing that needs a key.
_CLIENT_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False},
    "bybit": {
        "defaultType": "swap",
        "defaultSubType": "linear",
        "fetchMarkets": {"types": ["linear"]},
        "adjustForTimeDifference": False,
    },
}

# Where ccxt.pro keeps the URL of each exchange's public linear stream, under urls['api']['ws'].
# Binance's is the base (`wss://fstream.binance.com/ws`) from which ccxt derives the routed
# `/market/ws/<n>` connection URLs; Bybit's is the connection URL itself.
_WS_URL_KEYS: dict[str, tuple[str, ...]] = {"binance": ("linear",), "bybit": ("public", "linear")}

# `watch_ticker` / `un_watch_ticker` params. ccxt 4.5.90's binance `watch_ticker` loses its
# caller name on the way to `watch_tickers` and subscribes `<symbol>@miniTicker`, while
# `un_watch_ticker` unsubscribes `<symbol>@ticker` (another stream, on another connection):
# naming the channel makes both use the full 24 h ticker. Bybit sends params along with its
# subscribe request, so it gets none.
_WATCH_PARAMS: dict[str, dict[str, str]] = {"binance": {"name": "ticker"}, "bybit": {}}


def _load_ccxt_pro() -> ModuleType:
    return importlib.import_module("ccxt.pro")


class Quote(NamedTuple):
    price: Decimal
    received_at: float  # on the feed's clock (monotonic by default)


@dataclass
class _Follow:
    """One symbol being followed: its watch task and the moment its first tick arrived."""

    ccxt_symbol: str
    first_tick: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class StreamingTickerFeed:
    """Last prices of an exchange's linear perpetuals from its ticker stream; see the module
    docstring.

    `ws_url` replaces ccxt.pro's URL of the public linear stream and `rest_urls` replaces
    ccxt's `urls['api']` for `load_markets` (one exchange's entry of EXCHANGE_API_URLS, applied
    as the adapters apply it); both point at local stand-ins in tests. `options` are merged
    into ccxt's options (`{"ws": {"keepAlive": ms}}` sets its ping interval).
    """

    def __init__(
        self,
        exchange: str,
        *,
        ws_url: str | None = None,
        rest_urls: Mapping[str, str] | None = None,
        first_tick_timeout_s: float = 3.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        unwatch_timeout_s: float = 2.0,
        timeout_ms: int | None = None,
        options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        ccxt_id = CCXT_IDS.get(exchange)
        if ccxt_id is None:
            raise ValueError(f"no ticker stream for exchange {exchange!r}; use one of {CCXT_IDS}")
        if first_tick_timeout_s < 0 or unwatch_timeout_s < 0:
            raise ValueError("timeouts must not be negative")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("backoff must satisfy 0 < backoff_initial_s <= backoff_max_s")
        ccxt = _load_ccxt_pro()
        config: dict[str, Any] = {"options": {**_CLIENT_OPTIONS[exchange], **(options or {})}}
        if timeout_ms is not None:
            config["timeout"] = timeout_ms
        client: Any = getattr(ccxt, ccxt_id)(config)
        _replace_urls(client, _WS_URL_KEYS[exchange], ws_url, rest_urls)
        self.exchange = exchange
        self.first_tick_timeout_s = first_tick_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.unwatch_timeout_s = unwatch_timeout_s
        self._watch_params = _WATCH_PARAMS[exchange]
        self._ccxt = ccxt
        self._client = client
        self._clock = clock
        self._jitter = random.Random()  # noqa: S311 - spreads reconnects, guards nothing  # nosec B311
        self._watch_lock = asyncio.Lock()
        self._perpetuals = PerpetualSymbols(exchange, self._load_markets)
        self._follows: dict[str, _Follow] = {}
        self._quotes: dict[str, Quote] = {}
        self._closed = False

    # ------------------------------------------------------------------ the PriceFeed
    async def price(self, symbol: str) -> Decimal:
        """The last price of `symbol`, following it from now on if it was not followed;
        waits up to `first_tick_timeout_s` for a first tick (`RetryLater` if none came)."""
        self._check_open()
        follow = self._follows.get(symbol)
        quote = self._quotes.get(symbol)
        if follow is not None and quote is not None:
            return quote.price
        if follow is None:
            follow = self._start(symbol, await self._ccxt_symbol(symbol))
        try:
            await asyncio.wait_for(follow.first_tick.wait(), timeout=self.first_tick_timeout_s)
        except TimeoutError:
            raise RetryLater(
                f"no {self.exchange} ticker for {symbol} within {self.first_tick_timeout_s} s"
            ) from None
        self._check_open()
        quote = self._quotes.get(symbol)
        if quote is None:  # watch() stopped following it while we waited
            raise RetryLater(f"{symbol} is no longer followed on {self.exchange}")
        return quote.price

    def latest(self, symbol: str) -> tuple[Decimal, float] | None:
        """The last price of a followed symbol and when it arrived (the feed's clock), or
        None before its first tick or when it is not followed."""
        return self._quotes.get(symbol)

    @property
    def followed(self) -> frozenset[str]:
        return frozenset(self._follows)

    async def watch(self, symbols: Iterable[str]) -> frozenset[str]:
        """Follow exactly `symbols` from now on: start the new ones, stop the others.

        Returns the symbols the exchange lists no active linear perpetual for (not followed).
        Raises `RetryLater` (and changes nothing) when the markets cannot be loaded."""
        self._check_open()
        wanted = set(symbols)
        async with self._watch_lock:
            listed = await self._perpetuals.listed()
            unlisted = frozenset(wanted - listed.keys())
            dropped = [symbol for symbol in self._follows if symbol not in wanted]
            await asyncio.gather(*(self._stop(symbol) for symbol in dropped))
            for symbol in sorted(wanted - unlisted):
                self._start(symbol, listed[symbol])
        if unlisted:
            log.warning(
                "ticker_stream_symbols_unlisted", exchange=self.exchange, symbols=sorted(unlisted)
            )
        return unlisted

    async def close(self) -> None:
        """Stop every follow task and close the ccxt client; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        follows = list(self._follows.values())
        self._follows.clear()
        self._quotes.clear()
        tasks = [follow.task for follow in follows if follow.task is not None]
        for follow in follows:
            follow.first_tick.set()  # waiters wake up and find the feed closed
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self._client.close()

    # ------------------------------------------------------------------ following
    def _start(self, symbol: str, ccxt_symbol: str) -> _Follow:
        self._check_open()  # closed while the caller awaited the markets: start nothing
        follow = self._follows.get(symbol)
        if follow is not None:
            return follow
        follow = _Follow(ccxt_symbol)
        follow.task = asyncio.create_task(
            self._follow(symbol, follow), name=f"ticker_stream:{self.exchange}:{symbol}"
        )
        follow.task.add_done_callback(lambda done: self._follow_done(symbol, follow, done))
        self._follows[symbol] = follow
        log.info("ticker_stream_started", exchange=self.exchange, symbol=symbol)
        return follow

    async def _follow(self, symbol: str, follow: _Follow) -> None:
        """Watch one ticker until cancelled; a failure is logged and retried after a pause."""
        ccxt = self._ccxt
        failures = 0
        while True:
            try:
                ticker = await self._client.watch_ticker(
                    follow.ccxt_symbol, dict(self._watch_params)
                )
            except ccxt.NetworkError as exc:  # disconnects, timeouts, refused connections
                failures += 1
                await self._pause(symbol, "ticker_stream_disconnected", exc, failures)
                continue
            except Exception as exc:  # whatever else, the symbol must keep being followed
                failures += 1
                await self._pause(symbol, "ticker_stream_failed", exc, failures)
                continue
            price = _ticker_price(ticker)
            if price is None:
                continue  # e.g. a Bybit delta of bid/ask only, before any last price
            if failures:
                log.info(
                    "ticker_stream_resumed", exchange=self.exchange, symbol=symbol, after=failures
                )
                failures = 0
            self._quotes[symbol] = Quote(price, self._clock())
            follow.first_tick.set()

    async def _pause(self, symbol: str, event: str, exc: Exception, failures: int) -> None:
        delay_s = self._backoff_s(failures)
        log.warning(
            event,
            exchange=self.exchange,
            symbol=symbol,
            error_type=type(exc).__name__,
            error=str(exc)[:300],
            attempt=failures,
            retry_in_s=round(delay_s, 3),
        )
        await asyncio.sleep(delay_s)

    def _backoff_s(self, failures: int) -> float:
        """Capped exponential with jitter: half the step fixed, half random, so reconnects of
        many symbols after one outage spread out instead of arriving together."""
        step = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** min(failures - 1, 30))
        return step / 2 + self._jitter.uniform(0, step / 2)

    def _follow_done(self, symbol: str, follow: _Follow, task: asyncio.Task[None]) -> None:
        if self._follows.get(symbol) is follow:  # ended without being stopped: a bug
            del self._follows[symbol]
            self._quotes.pop(symbol, None)
            follow.first_tick.set()
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error(
                "ticker_stream_crashed",
                exchange=self.exchange,
                symbol=symbol,
                error_type=type(error).__name__,
                error=str(error)[:300],
            )

    async def _stop(self, symbol: str) -> None:
        follow = self._follows.pop(symbol, None)
        if follow is None:
            return
        self._quotes.pop(symbol, None)
        follow.first_tick.set()  # price() waiters find no quote and give up
        if follow.task is not None:
            follow.task.cancel()
            await asyncio.wait([follow.task])
        await self._unwatch(symbol, follow.ccxt_symbol)
        log.info("ticker_stream_stopped", exchange=self.exchange, symbol=symbol)

    async def _unwatch(self, symbol: str, ccxt_symbol: str) -> None:
        """Unsubscribe on the exchange too, where ccxt can; a failure leaves only a stream
        nobody reads (the connection closes with the feed)."""
        if not self._client.has.get("unWatchTicker"):
            return
        try:
            await asyncio.wait_for(
                self._client.un_watch_ticker(ccxt_symbol, dict(self._watch_params)),
                timeout=self.unwatch_timeout_s,
            )
        except (TimeoutError, self._ccxt.BaseError) as exc:
            log.warning(
                "ticker_stream_unwatch_failed",
                exchange=self.exchange,
                symbol=symbol,
                error_type=type(exc).__name__,
            )

    # ------------------------------------------------------------------ markets
    async def _ccxt_symbol(self, symbol: str) -> str:
        return await self._perpetuals.ccxt_symbol(symbol)

    async def _load_markets(self) -> Mapping[str, Any]:
        with self._translated("markets"):
            markets: Mapping[str, Any] = await self._client.load_markets()
        return markets

    # ------------------------------------------------------------------ errors
    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """ccxt's exceptions → the engine's, by what the caller must do next."""
        ccxt = self._ccxt
        try:
            yield
        except ccxt.OperationFailed as exc:  # network errors, 5xx, 429, unreadable answers
            raise RetryLater(
                f"{self.exchange} could not be asked for {what}: {type(exc).__name__}: {exc}"
            ) from exc
        except ccxt.BaseError as exc:
            raise ExchangeError(
                f"{self.exchange} failed to answer for {what}: {type(exc).__name__}: {exc}",
                code="price_feed_failed",
            ) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the {self.exchange} ticker stream is closed")


def make_stream_feed(settings: Settings, exchange: str) -> StreamingTickerFeed:
    """The ticker stream of `exchange`, on the stand-ins EXCHANGE_WS_URLS and
    EXCHANGE_API_URLS name for it (the real exchange when they name none)."""
    return StreamingTickerFeed(
        exchange,
        ws_url=settings.EXCHANGE_WS_URLS.get(exchange),
        rest_urls=settings.EXCHANGE_API_URLS.get(exchange),
        timeout_ms=settings.EXCHANGE_TIMEOUT_MS,
    )


def _replace_urls(
    client: Any,
    ws_keys: tuple[str, ...],
    ws_url: str | None,
    rest_urls: Mapping[str, str] | None,
) -> None:
    """Point `client` at local stand-ins. `rest_urls` replaces `urls['api']` as a whole (as
    the adapters do), except for the stream URLs ccxt.pro keeps in it under 'ws'."""
    streams = copy.deepcopy(client.urls["api"]["ws"])
    if ws_url is not None:
        *path, last = ws_keys
        parent = streams
        for key in path:
            parent = parent[key]
        parent[last] = ws_url
    if rest_urls is not None:
        client.urls["api"] = {**rest_urls, "ws": streams}
    else:
        client.urls["api"]["ws"] = streams


def _ticker_price(ticker: Mapping[str, Any]) -> Decimal | None:
    """The price of a ccxt ticker: last trade, else mark, else close."""
    for key in ("last", "markPrice", "close"):
        price = to_decimal(ticker.get(key))
        if price is not None:
            return price
    return None
