"""The price updater: live prices for dashboards, and the unrealised PnL of open positions.

Each round (every PRICE_UPDATE_INTERVAL_S) it prices the symbols that have open positions, on
their position's exchange, and the symbols someone watches over a WebSocket
(`prices:<SYMBOL>`, announced by the hubs), on the default exchange. Paper prices come from
the paper exchange's feed; Binance and Bybit prices from their public streams (ccxt.pro
`watch_ticker`, one `StreamingTickerFeed` per exchange). A price that moved is published as
`price_update` (so each symbol updates at most once per interval), and the open positions on
it get their `current_price` and `unrealized_pnl` written in one statement, each changed
position announced to its owner as `position_update`.

One process of all the engine's runs the rounds (a Redis lease it renews while alive), so a
price goes out once however many replicas there are.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.events import WANTED_PRICES_KEY, EventPublisher, EventType, position_data
from app.core.pg import Pool
from app.exchanges.errors import ExchangeError
from app.exchanges.price_feed import PriceFeed
from app.exchanges.ticker_stream import StreamingTickerFeed
from app.logging.logger import get_logger

log = get_logger("prices")

LEASE_KEY = "jadetrade:price-updater"

_OPEN_SYMBOLS = "SELECT DISTINCT exchange, symbol FROM real_positions WHERE status = 'open'"
# Current price and unrealised PnL of every open position on the priced symbols, in one
# statement; the rows that changed come back.
_MARK_POSITIONS = """
    UPDATE real_positions p
    SET current_price = v.price,
        unrealized_pnl = CASE WHEN p.side = 'long' THEN (v.price - p.entry_price) * p.quantity
                              ELSE (p.entry_price - v.price) * p.quantity END
    FROM unnest($1::text[], $2::text[], $3::numeric[]) AS v(exchange, symbol, price)
    WHERE p.exchange = v.exchange AND p.symbol = v.symbol AND p.status = 'open'
      AND p.current_price IS DISTINCT FROM v.price
    RETURNING p.*
"""

StreamFeedFactory = Callable[[str], StreamingTickerFeed]


async def hold_lease(redis: Redis, key: str, owner: str, ttl_ms: int) -> bool:
    """Whether `owner` holds the lease `key` (taking it if free, renewing it if its own)."""
    if await redis.set(key, owner, nx=True, px=ttl_ms):
        return True
    if await redis.get(key) == owner.encode():
        await redis.pexpire(key, ttl_ms)
        return True
    return False


class PriceUpdater:
    def __init__(
        self,
        pool: Pool,
        redis: Redis,
        events: EventPublisher,
        *,
        paper_feed: PriceFeed,
        stream_feed: StreamFeedFactory,
        default_exchange: str,
        interval_s: float,
        owner: str,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.events = events
        self.paper_feed = paper_feed
        self.stream_feed = stream_feed
        self.default_exchange = default_exchange
        self.interval_s = interval_s
        self.owner = owner
        self.last: dict[tuple[str, str], Decimal] = {}
        self._streams: dict[str, StreamingTickerFeed] = {}

    async def run(self) -> None:
        try:
            while True:
                started = time.monotonic()
                try:
                    ttl_ms = max(1000, int(self.interval_s * 3000))
                    if await hold_lease(self.redis, LEASE_KEY, self.owner, ttl_ms):
                        await self.round()
                except (RedisError, OSError) as exc:
                    log.warning("price_round_failed", error_type=type(exc).__name__)
                await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            await self.close()

    async def close(self) -> None:
        for feed in self._streams.values():
            await feed.close()
        self._streams.clear()

    async def round(self) -> int:
        """Price every target once; how many prices moved."""
        targets = await self.targets()
        moved: list[tuple[str, str, Decimal]] = []
        for exchange, symbols in sorted(targets.items()):
            prices = await self._prices(exchange, symbols)
            for symbol, price in sorted(prices.items()):
                if self.last.get((exchange, symbol)) != price:
                    self.last[(exchange, symbol)] = price
                    moved.append((exchange, symbol, price))
        for exchange, symbol, price in moved:
            self.events.emit_price({"symbol": symbol, "exchange": exchange, "price": price})
        if moved:
            await self._mark_positions(moved)
        return len(moved)

    async def targets(self) -> dict[str, set[str]]:
        """{exchange: symbols} to price now."""
        found: dict[str, set[str]] = defaultdict(set)
        async with self.pool.acquire() as conn:
            for row in await conn.fetch(_OPEN_SYMBOLS):
                found[row["exchange"]].add(row["symbol"])
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(WANTED_PRICES_KEY, "-inf", now)
            pipe.zrangebyscore(WANTED_PRICES_KEY, now, "+inf")
            _removed, wanted = await pipe.execute()
        found[self.default_exchange].update(s.decode() for s in wanted)
        return found

    async def _prices(self, exchange: str, symbols: set[str]) -> dict[str, Decimal]:
        if exchange == "paper":
            prices = {}
            for symbol in symbols:
                try:
                    prices[symbol] = await self.paper_feed.price(symbol)
                except ExchangeError as exc:  # unknown symbol, or the feed is down: skip it
                    log.debug("price_unavailable", symbol=symbol, error_code=exc.code)
            return prices
        feed = self._streams.get(exchange)
        if feed is None:
            try:
                feed = self._streams[exchange] = self.stream_feed(exchange)
            except ValueError as exc:  # an exchange without a public stream
                log.warning("price_stream_unsupported", exchange=exchange, error=str(exc))
                return {}
        try:
            await feed.watch(symbols)  # follows new symbols, stops the ones no longer wanted
        except ExchangeError as exc:
            log.warning("price_stream_unavailable", exchange=exchange, error_code=exc.code)
            return {}
        quotes = {symbol: feed.latest(symbol) for symbol in symbols}
        return {symbol: quote[0] for symbol, quote in quotes.items() if quote is not None}

    async def _mark_positions(self, moved: list[tuple[str, str, Decimal]]) -> None:
        exchanges, symbols, prices = zip(*moved, strict=True)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_MARK_POSITIONS, list(exchanges), list(symbols), list(prices))
        for row in rows:
            self.events.emit(row["user_id"], EventType.POSITION_UPDATE, position_data(dict(row)))
