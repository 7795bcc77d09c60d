"""Which exchange adapter executes a user's signal.

The paper exchange needs no credentials and is always available. Binance and Bybit trade with
the user's active API key for that exchange (`app.core.exchange_keys`); a user without one gets
`NoApiKey`. Live adapters hold one ccxt client per API key, kept and reused across signals
(up to `MAX_CLIENTS`, least recently used closed first) and closed by `aclose()`; markets are
loaded once per exchange environment and shared by every client of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from app.config import Settings
from app.core.credentials import Keyring
from app.core.exchange_keys import EXCHANGES, active_key, mark_invalid
from app.core.metrics import Metrics
from app.core.pg import Connection, Pool
from app.exchanges.base import ApiCredentials, ExchangeAdapter, KeyPermissions
from app.exchanges.errors import ExchangeError, OrderRejected
from app.exchanges.paper import PaperExchange
from app.exchanges.price_feed import PriceFeed, SyntheticPriceFeed
from app.exchanges.ticker_feed import CcxtTickerFeed
from app.logging.logger import get_logger

if TYPE_CHECKING:  # ccxt is imported only by processes that trade on a live exchange
    from app.exchanges.ccxt_adapter import CcxtAdapter, MarketCatalog

log = get_logger("exchanges")

MAX_CLIENTS = 512
EVICTED_CLOSE_DELAY_S = 120.0


def make_price_feed(settings: Settings) -> PriceFeed:
    """The paper exchange's market: synthetic (offline default) or a live exchange's tickers."""
    if settings.PAPER_PRICE_SOURCE == "live":
        return CcxtTickerFeed(settings.PAPER_LIVE_EXCHANGE)
    return SyntheticPriceFeed(seed=settings.PAPER_PRICE_SEED)


class ExchangeUnavailable(OrderRejected):
    """The signal names an exchange this engine cannot trade on."""


class NoApiKey(ExchangeError):
    """The user has no active API key for the signal's exchange."""

    code = "no_api_key"


def adapter_class(exchange: str) -> type[CcxtAdapter]:
    if exchange == "binance":
        from app.exchanges.binance import BinanceAdapter

        return BinanceAdapter
    if exchange == "bybit":
        from app.exchanges.bybit import BybitAdapter

        return BybitAdapter
    raise ExchangeUnavailable(
        f"trading on {exchange} is not supported; use one of paper, {', '.join(EXCHANGES)}",
        code="exchange_unavailable",
    )


class AdapterFactory:
    def __init__(
        self,
        settings: Settings,
        pool: Pool,
        paper_feed: PriceFeed,
        *,
        redis: Redis | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.paper_feed = paper_feed
        self.redis = redis
        self.metrics = metrics
        self.keyring = Keyring.from_settings(settings)
        self._clients: OrderedDict[tuple[str, ...], CcxtAdapter] = OrderedDict()
        self._catalogs: dict[tuple[str, ...], MarketCatalog] = {}
        self._closing: dict[asyncio.Task[None], CcxtAdapter] = {}  # retired, closing later

    def paper(self, user_id: str) -> PaperExchange:
        return PaperExchange(
            self.pool,
            user_id,
            self.paper_feed,
            starting_balance=self.settings.PAPER_STARTING_BALANCE,
            taker_fee_rate=self.settings.PAPER_TAKER_FEE_RATE,
            slippage_percent=self.settings.DEFAULT_SLIPPAGE_PERCENT,
        )

    async def for_user(
        self, user_id: str, exchange: str, conn: Connection | None = None
    ) -> ExchangeAdapter:
        """The adapter for the user's account on `exchange` (`conn` reads the user's key)."""
        if exchange == "paper":
            return self.paper(user_id)
        adapter_class(exchange)  # an unsupported exchange is refused before any key is read
        key = await active_key(conn or self.pool, self.keyring, user_id, exchange)
        if key is None:
            raise NoApiKey(f"no active {exchange} API key: add one with POST /api/exchange-keys")
        if not key.is_valid:
            raise NoApiKey(
                f"{exchange} refused the active API key; add a working one with"
                " POST /api/exchange-keys",
                code="api_key_invalid",
            )
        return await self.live(exchange, key.mode.value, key.credentials, key_id=str(key.id))

    async def live(
        self, exchange: str, mode: str, credentials: ApiCredentials, *, key_id: str
    ) -> CcxtAdapter:
        """The shared adapter of one API key (created on first use)."""
        fingerprint = hashlib.sha256(
            f"{credentials.api_key}\0{credentials.secret}\0{credentials.passphrase}".encode()
        ).hexdigest()
        cache_key = (exchange, mode, key_id, fingerprint)
        adapter = self._clients.get(cache_key)
        if adapter is not None:
            self._clients.move_to_end(cache_key)
            return adapter
        adapter = self.new_adapter(exchange, mode, credentials, key_id=key_id)
        self._clients[cache_key] = adapter
        while len(self._clients) > MAX_CLIENTS:
            _, evicted = self._clients.popitem(last=False)
            self._retire(evicted)
        return adapter

    def new_adapter(
        self, exchange: str, mode: str, credentials: ApiCredentials, *, key_id: str
    ) -> CcxtAdapter:
        """An adapter with its own client (the caller closes it with `close_client()`)."""
        from app.exchanges.ccxt_adapter import ExchangeEndpoint, MarketCatalog
        from app.exchanges.request_budget import BudgetLimits, RequestBudget

        cls = adapter_class(exchange)
        endpoint = ExchangeEndpoint(mode, self.settings.EXCHANGE_API_URLS.get(exchange))
        catalog = self._catalogs.setdefault((exchange, *endpoint.cache_key), MarketCatalog())
        budget = None
        if self.redis is not None:
            budget = RequestBudget(
                self.redis,
                exchange=exchange,
                egress=self.settings.EXCHANGE_EGRESS_ID,
                key_id=key_id,
                limits=BudgetLimits(
                    per_address=cls.address_weight_per_min, per_key=cls.key_weight_per_min
                ),
            )
        return cls(
            credentials.api_key,
            credentials.secret,
            passphrase=credentials.passphrase,
            endpoint=endpoint,
            catalog=catalog,
            budget=budget,
            timeout_ms=self.settings.EXCHANGE_TIMEOUT_MS,
            key_id=key_id,
            on_error=self._count_error if self.metrics is not None else None,
        )

    def _count_error(self, exchange: str, error: ExchangeError) -> None:
        assert self.metrics is not None
        self.metrics.exchange_errors.labels(exchange, error.code).inc()

    async def key_refused(self, adapter: ExchangeAdapter, reason: str) -> None:
        """The exchange refused the key behind `adapter`: mark it invalid (users see it in
        their key list) and drop its client."""
        key_id = getattr(adapter, "key_id", None)
        if key_id is None:
            return
        await mark_invalid(self.pool, uuid.UUID(key_id), reason)
        for cache_key, cached in list(self._clients.items()):
            if cached is adapter:
                del self._clients[cache_key]
                self._retire(adapter)
        log.warning("exchange_key_refused", exchange=adapter.name, key_id=key_id)

    def _retire(self, adapter: CcxtAdapter) -> None:
        """Close a client no longer handed out, once whoever still uses it is surely done."""
        task = asyncio.create_task(self._close_later(adapter))
        self._closing[task] = adapter
        task.add_done_callback(lambda done: self._closing.pop(done, None))

    async def _close_later(self, adapter: CcxtAdapter) -> None:
        await asyncio.sleep(EVICTED_CLOSE_DELAY_S)
        await adapter.close_client()

    async def aclose(self) -> None:
        """Close every live client, retired ones too (at shutdown)."""
        adapters = list(self._clients.values())
        self._clients.clear()
        for task, retired in list(self._closing.items()):
            task.cancel()
            adapters.append(retired)
        self._closing.clear()
        for adapter in adapters:
            try:
                await adapter.close_client()
            except Exception as exc:  # closing the rest matters more
                log.warning("exchange_client_close_failed", error_type=type(exc).__name__)


async def inspect_key(
    settings: Settings, exchange: str, mode: str, credentials: ApiCredentials
) -> KeyPermissions:
    """What `credentials` may do on `exchange`, asked of the exchange with a client of its own
    (closed before returning). AuthenticationFailed when the exchange refuses the key."""
    from app.exchanges.ccxt_adapter import ExchangeEndpoint, MarketCatalog

    cls = adapter_class(exchange)
    adapter = cls(
        credentials.api_key,
        credentials.secret,
        passphrase=credentials.passphrase,
        endpoint=ExchangeEndpoint(mode, settings.EXCHANGE_API_URLS.get(exchange)),
        catalog=MarketCatalog(),
        timeout_ms=settings.EXCHANGE_TIMEOUT_MS,
    )
    try:
        return await adapter.key_permissions()
    finally:
        await adapter.close_client()
