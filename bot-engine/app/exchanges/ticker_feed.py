"""Live prices from an exchange's public ticker, through ccxt.

`CcxtTickerFeed` is a `PriceFeed` for the paper exchange and the trigger worker when they
should follow a real market. It holds one ccxt client, loads the markets once, and maps a
canonical symbol ("BTCUSDT") to the exchange's linear perpetual ("BTC/USDT:USDT") through
those markets rather than by string guessing. Each price is cached for `max_age_s` and
concurrent requests for one symbol share one request, because Binance's weight limits are per
IP and every user of the engine shares the egress address's budget. After a 429/418 with
`Retry-After` the feed asks nothing more until that time has passed.

ccxt's exceptions are translated here and nowhere else: timeouts, connection failures, 5xx,
rate limits and unreadable answers → `RetryLater`; an unknown or inactive symbol →
`PriceUnavailable`; anything else → `ExchangeError` with code `price_feed_failed`.

ccxt is imported when the first feed is created, not with this module: importing it costs
about a second and only processes that follow a live market need it.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import ModuleType
from typing import Any

from app.exchanges.errors import ExchangeError, PriceUnavailable, RetryLater
from app.exchanges.symbols import canonical_symbol
from app.logging.logger import get_logger

log = get_logger("exchanges")

# Binance's currency list is a private endpoint; prices never need it.
_DEFAULT_OPTIONS: dict[str, Any] = {"fetchCurrencies": False}


def _load_ccxt() -> ModuleType:
    return importlib.import_module("ccxt.async_support")


@dataclass(frozen=True)
class _Quote:
    price: Decimal
    fetched_at: float  # on the feed's clock


class CcxtTickerFeed:
    """Last traded prices of an exchange's linear perpetuals; see the module docstring.

    `options` and `urls` are merged into ccxt's own (tests point `urls['api']` at a local
    server); `timeout_ms` overrides ccxt's 10 s request timeout. `clock` measures the age of
    cached prices and of a rate-limit pause.
    """

    def __init__(
        self,
        exchange_id: str = "binanceusdm",
        *,
        max_age_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        options: Mapping[str, Any] | None = None,
        urls: Mapping[str, Any] | None = None,
        timeout_ms: int | None = None,
    ) -> None:
        if max_age_s < 0:
            raise ValueError(f"max_age_s must not be negative, got {max_age_s}")
        ccxt = _load_ccxt()
        if exchange_id not in ccxt.exchanges:
            raise ValueError(f"ccxt has no exchange {exchange_id!r}")
        config: dict[str, Any] = {"options": {**_DEFAULT_OPTIONS, **(options or {})}}
        if urls is not None:
            config["urls"] = dict(urls)  # ccxt deep-merges this into its defaults
        if timeout_ms is not None:
            config["timeout"] = timeout_ms
        self.exchange_id = exchange_id
        self.max_age_s = max_age_s
        self._ccxt = ccxt
        self._client: Any = getattr(ccxt, exchange_id)(config)
        self._clock = clock
        self._perpetuals = PerpetualSymbols(exchange_id, self._load_markets)
        self._quotes: dict[str, _Quote] = {}
        self._fetches: dict[str, asyncio.Task[Decimal]] = {}
        self._paused_until: float | None = None
        self._closed = False

    async def price(self, symbol: str) -> Decimal:
        if self._closed:
            raise RuntimeError(f"the {self.exchange_id} ticker feed is closed")
        now = self._clock()
        quote = self._quotes.get(symbol)
        if quote is not None and now - quote.fetched_at < self.max_age_s:
            return quote.price
        self._raise_while_paused(now)
        fetch = self._fetches.get(symbol)
        if fetch is None:
            fetch = asyncio.create_task(self._fetch(symbol), name=f"ticker:{symbol}")
            self._fetches[symbol] = fetch
            fetch.add_done_callback(lambda done: self._fetch_done(symbol, done))
        # One caller giving up (cancelled) must not cancel the request the others wait for.
        return await asyncio.shield(fetch)

    async def close(self) -> None:
        """Cancel requests in flight and close the ccxt client; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        fetches = list(self._fetches.values())
        for fetch in fetches:
            fetch.cancel()
        await asyncio.gather(*fetches, return_exceptions=True)
        await self._client.close()

    # ------------------------------------------------------------------ one request
    async def _fetch(self, symbol: str) -> Decimal:
        ccxt_symbol = await self._ccxt_symbol(symbol)
        with self._translated(symbol):
            ticker = await self._client.fetch_ticker(ccxt_symbol)
        price = to_decimal(ticker.get("last"))
        if price is None:
            raise PriceUnavailable(f"{self.exchange_id} reports no last price for {symbol}")
        self._quotes[symbol] = _Quote(price, self._clock())
        return price

    def _fetch_done(self, symbol: str, fetch: asyncio.Task[Decimal]) -> None:
        if self._fetches.get(symbol) is fetch:
            del self._fetches[symbol]
        if not fetch.cancelled():
            fetch.exception()  # retrieved here too, in case every waiter was cancelled

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
        except ccxt.BadSymbol as exc:
            raise PriceUnavailable(f"{self.exchange_id} does not know {what}: {exc}") from exc
        except ccxt.OperationFailed as exc:
            # NetworkError (timeouts, refused connections, 5xx, 429/418) and bad responses.
            retry_after_s = self._retry_after_s() if isinstance(exc, ccxt.DDoSProtection) else None
            if retry_after_s is not None:
                self._paused_until = self._clock() + retry_after_s
                log.warning(
                    "ticker_feed_paused", exchange=self.exchange_id, retry_after_s=retry_after_s
                )
            raise RetryLater(
                f"{self.exchange_id} could not be asked for {what}: {type(exc).__name__}: {exc}",
                retry_after_s=retry_after_s,
            ) from exc
        except ccxt.BaseError as exc:
            raise ExchangeError(
                f"{self.exchange_id} failed to answer for {what}: {type(exc).__name__}: {exc}",
                code="price_feed_failed",
            ) from exc

    def _retry_after_s(self) -> float | None:
        """The `Retry-After` of the rate-limited answer (seconds), when the exchange sent one.

        ccxt keeps only the last response's headers; a concurrent request for another symbol
        may have replaced them, in which case the pause is simply not known."""
        headers = self._client.last_response_headers or {}
        for name, value in headers.items():
            if name.lower() == "retry-after":
                try:
                    seconds = float(value)
                except ValueError:
                    return None  # an HTTP date; Binance sends seconds
                return seconds if seconds > 0 else None
        return None

    def _raise_while_paused(self, now: float) -> None:
        if self._paused_until is None:
            return
        remaining = self._paused_until - now
        if remaining <= 0:
            self._paused_until = None
            return
        raise RetryLater(
            f"{self.exchange_id} asked us to wait; {remaining:.1f} s left",
            retry_after_s=remaining,
        )


class PerpetualSymbols:
    """Canonical symbol → the exchange's linear perpetual ("BTCUSDT" → "BTC/USDT:USDT"),
    from the markets `load` returns, loaded once (concurrent first callers share the load)."""

    def __init__(self, exchange: str, load: Callable[[], Awaitable[Mapping[str, Any]]]) -> None:
        self.exchange = exchange
        self._load = load
        self._lock = asyncio.Lock()
        self._symbols: dict[str, str] | None = None

    async def listed(self) -> dict[str, str]:
        if self._symbols is None:
            async with self._lock:
                if self._symbols is None:
                    markets = await self._load()
                    self._symbols = linear_perpetuals(markets.values())
                    log.info("markets_loaded", exchange=self.exchange,
                             perpetuals=len(self._symbols))  # fmt: skip
        return self._symbols

    async def ccxt_symbol(self, symbol: str) -> str:
        try:
            return (await self.listed())[symbol]
        except KeyError:
            raise PriceUnavailable(
                f"{self.exchange} lists no active linear perpetual for {symbol!r}"
            ) from None


def linear_perpetuals(markets: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """canonical symbol → ccxt symbol of every active linear perpetual.

    Keyed by the exchange's own market id first (what TradingView sends: BTCUSDT), then by
    base + quote for markets whose id is not canonical (e.g. OKX's BTC-USDT-SWAP)."""
    perpetuals = [
        m
        for m in markets
        if m.get("swap") and m.get("linear") and m.get("active") is not False  # None: unknown
    ]
    by_canonical: dict[str, str] = {}
    for market in perpetuals:
        if isinstance(market.get("id"), str) and market["id"].isalnum():
            by_canonical.setdefault(market["id"].upper(), market["symbol"])
    for market in perpetuals:
        try:
            key = canonical_symbol(f"{market['base']}/{market['quote']}")
        except ValueError:
            continue
        by_canonical.setdefault(key, market["symbol"])
    return by_canonical


def to_decimal(value: object) -> Decimal | None:
    """ccxt's float as the Decimal it was printed from (via str, never float arithmetic)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        return None
    return price if price.is_finite() and price > 0 else None
