"""A local stand-in for the public (unsigned) market-data part of Binance USDⓈ-M futures REST.

It serves what ccxt's `binanceusdm` calls for `load_markets()` and `fetch_ticker()` (read from
ccxt 4.5.90: `fetch_markets` with `options['fetchMarkets']['types'] == ['linear']` calls only
`fapiPublicGetExchangeInfo`; `fetch_currencies` returns `{}` without API keys or with
`options['fetchCurrencies'] = False`; `fetch_ticker` on a linear market calls
`fapiPublicGetTicker24hr`):

- `GET /fapi/v1/exchangeInfo`: real-shaped symbol entries with PRICE_FILTER, LOT_SIZE,
  MARKET_LOT_SIZE, MIN_NOTIONAL and PERCENT_PRICE filters;
- `GET /fapi/v1/ticker/24hr[?symbol=...]`: one ticker, or all of them without `symbol`;
  an unlisted symbol answers 400 `{"code":-1121,"msg":"Invalid symbol."}` as Binance does;
- `GET /fapi/v1/ping` and `GET /fapi/v1/time`.

It runs on a free loopback port in a background thread (stdlib server), counts requests per
path and symbol, lets a test set prices, list or delist markets, answer the next requests with
an error status (5xx, 429/418 with `Retry-After`), or hold them until released (to provoke
client timeouts). Point ccxt at it with `urls={'api': server.api_urls}`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from app.exchanges.price_feed import base_price
from app.exchanges.symbols import PAPER_MARKETS
from tests.support.http_server import BackgroundHttpServer, KeepAliveHandler, OwnedHttpServer

EXCHANGE_INFO = "/fapi/v1/exchangeInfo"
TICKER_24HR = "/fapi/v1/ticker/24hr"
PING = "/fapi/v1/ping"
SERVER_TIME = "/fapi/v1/time"

# Bodies Binance sends with these statuses.
INVALID_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}
INTERNAL_ERROR = {
    "code": -1001,
    "msg": "Internal error; unable to process your request. Please try again.",
}
TOO_MANY_REQUESTS = {
    "code": -1003,
    "msg": "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute."
    " Please use the websocket for live updates to avoid polling the API.",
}
_ONBOARD_MS = 1_569_398_400_000  # BTCUSDT's onboardDate
PERPETUAL_DELIVERY_MS = 4_133_404_800_000  # what Binance puts in a perpetual's deliveryDate


@dataclass(frozen=True)
class FuturesMarket:
    """One USDⓈ-M contract as `exchangeInfo` lists it."""

    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    min_notional: Decimal
    status: str = "TRADING"
    contract_type: str = "PERPETUAL"  # or CURRENT_QUARTER / NEXT_QUARTER with a delivery date
    delivery_date_ms: int = PERPETUAL_DELIVERY_MS

    def exchange_info_entry(self) -> dict[str, Any]:
        price_precision, quantity_precision = _decimals(self.tick_size), _decimals(self.step_size)
        return {
            "symbol": self.symbol,
            "pair": self.symbol,
            "contractType": self.contract_type,
            "deliveryDate": self.delivery_date_ms,
            "onboardDate": _ONBOARD_MS,
            "status": self.status,
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": self.base,
            "quoteAsset": self.quote,
            "marginAsset": self.quote,
            "pricePrecision": price_precision,
            "quantityPrecision": quantity_precision,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "settlePlan": 0,
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": str(self.tick_size),
                    "maxPrice": "4529764",
                    "tickSize": str(self.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": str(self.step_size),
                    "maxQty": "1000000",
                    "stepSize": str(self.step_size),
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": str(self.step_size),
                    "maxQty": "120000",
                    "stepSize": str(self.step_size),
                },
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": str(self.min_notional)},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.0500",
                    "multiplierDown": "0.9500",
                    "multiplierDecimal": "4",
                },
            ],
            "orderTypes": [
                "LIMIT",
                "MARKET",
                "STOP",
                "STOP_MARKET",
                "TAKE_PROFIT",
                "TAKE_PROFIT_MARKET",
                "TRAILING_STOP_MARKET",
            ],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            "permissionSets": ["GRID", "COPY"],
        }


def paper_futures_markets() -> list[FuturesMarket]:
    """The paper exchange's markets, listed the way Binance lists them."""
    return [
        FuturesMarket(
            symbol=market.symbol,
            base=market.base,
            quote=market.quote,
            tick_size=market.price_step,
            step_size=market.amount_step,
            min_notional=market.min_notional,
        )
        for market in PAPER_MARKETS.values()
    ]


@dataclass(frozen=True)
class _Failure:
    status: int
    body: dict[str, Any]
    retry_after_s: int | None
    path: str | None


class _Handler(KeepAliveHandler):
    server: OwnedHttpServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        status, body, headers = self.server.owner.handle(parts.path, query)
        self.reply(status, json.dumps(body, separators=(",", ":")).encode(), headers=headers)


class BinancePublicServer(BackgroundHttpServer):
    """Binance USDⓈ-M public market data on a free loopback port."""

    def __init__(self, markets: Iterable[FuturesMarket] | None = None) -> None:
        super().__init__(_Handler)
        self._lock = threading.Lock()
        self._markets: dict[str, FuturesMarket] = {}
        self._prices: dict[str, Decimal] = {}
        self._failures: list[_Failure] = []
        self._stalls: list[str | None] = []
        self._released = threading.Event()
        self._hits: Counter[tuple[str, str | None]] = Counter()
        for market in paper_futures_markets() if markets is None else markets:
            self.list_market(market)

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        self._released.set()  # let held requests finish so their threads end
        super().stop()

    # ------------------------------------------------------------------ where it is
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_urls(self) -> dict[str, str]:
        """ccxt `urls['api']` entries of Binance USDⓈ-M public REST, pointed here."""
        return {
            "fapiPublic": f"{self.url}/fapi/v1",
            "fapiPublicV2": f"{self.url}/fapi/v2",
            "fapiPublicV3": f"{self.url}/fapi/v3",
        }

    # ------------------------------------------------------------------ what the test sets
    def list_market(self, market: FuturesMarket) -> None:
        with self._lock:
            self._markets[market.symbol] = market

    def delist(self, symbol: str) -> None:
        with self._lock:
            self._markets.pop(symbol, None)

    def set_price(self, symbol: str, price: Decimal) -> None:
        with self._lock:
            self._prices[symbol] = price

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after_s: int | None = None,
        body: dict[str, Any] | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `times` requests (to `path`, or any) with `status` and Binance's
        body for it; `retry_after_s` adds a `Retry-After` header, as Binance sends on 429/418."""
        if body is None:
            body = TOO_MANY_REQUESTS if status in (418, 429) else INTERNAL_ERROR
        with self._lock:
            self._failures.extend([_Failure(status, body, retry_after_s, path)] * times)

    def hold_next(self, *, path: str | None = None) -> None:
        """Hold the next request (to `path`, or any) without answering until `release()`."""
        with self._lock:
            self._stalls.append(path)

    def release(self) -> None:
        self._released.set()

    def hits(self, path: str, symbol: str | None = None) -> int:
        """How many requests reached `path` (with `symbol=` when given), failures included."""
        with self._lock:
            if symbol is not None:
                return self._hits[(path, symbol)]
            return sum(n for (hit_path, _), n in self._hits.items() if hit_path == path)

    # ------------------------------------------------------------------ what it answers
    def handle(
        self, path: str, query: dict[str, str]
    ) -> tuple[int, dict[str, Any] | list[dict[str, Any]], dict[str, str]]:
        with self._lock:
            self._hits[(path, query.get("symbol"))] += 1
            stall = self._take_stall(path)
            failure = self._take_failure(path)
        if stall:
            self._released.wait(timeout=30)
        headers = {"X-MBX-USED-WEIGHT-1M": str(self.hits(path))}
        if failure is not None:
            if failure.retry_after_s is not None:
                headers["Retry-After"] = str(failure.retry_after_s)
            return failure.status, failure.body, headers
        if path == EXCHANGE_INFO:
            return 200, self._exchange_info(), headers
        if path == TICKER_24HR:
            symbol = query.get("symbol")
            if symbol is None:
                return 200, [self._ticker(name) for name in self._listed()], headers
            if symbol not in self._listed():
                return 400, INVALID_SYMBOL, headers
            return 200, self._ticker(symbol), headers
        if path == PING:
            return 200, {}, headers
        if path == SERVER_TIME:
            return 200, {"serverTime": _now_ms()}, headers
        return 404, {"code": -1, "msg": f"no such endpoint {path}"}, headers

    def _take_stall(self, path: str) -> bool:
        for i, stall_path in enumerate(self._stalls):
            if stall_path in (None, path):
                del self._stalls[i]
                return True
        return False

    def _take_failure(self, path: str) -> _Failure | None:
        for i, failure in enumerate(self._failures):
            if failure.path in (None, path):
                return self._failures.pop(i)
        return None

    def _listed(self) -> list[str]:
        with self._lock:
            return list(self._markets)

    def _exchange_info(self) -> dict[str, Any]:
        with self._lock:
            entries = [market.exchange_info_entry() for market in self._markets.values()]
            quotes = sorted({market.quote for market in self._markets.values()})
        return {
            "timezone": "UTC",
            "serverTime": _now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 2400,
                },
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [
                {"asset": quote, "marginAvailable": True, "autoAssetExchange": "-10000"}
                for quote in quotes
            ],
            "symbols": entries,
        }

    def _ticker(self, symbol: str) -> dict[str, Any]:
        with self._lock:
            price = self._prices.get(symbol)
        if price is None:
            price = base_price(symbol)
        now = _now_ms()
        return {
            "symbol": symbol,
            "priceChange": "0",
            "priceChangePercent": "0.000",
            "weightedAvgPrice": str(price),
            "lastPrice": str(price),
            "lastQty": "0.010",
            "openPrice": str(price),
            "highPrice": str(price),
            "lowPrice": str(price),
            "volume": "1000.000",
            "quoteVolume": str(price * 1000),
            "openTime": now - 86_400_000,
            "closeTime": now,
            "firstId": 1,
            "lastId": 1000,
            "count": 1000,
        }


def _decimals(step: Decimal) -> int:
    """Digits after the point of a step size: 2 for 0.01, 0 for 1."""
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int), step
    return max(0, -exponent)


def _now_ms() -> int:
    return int(time.time() * 1000)
