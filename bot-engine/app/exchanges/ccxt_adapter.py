"""What the Binance and Bybit adapters share: a ccxt client per API key, markets, order
preparation, error translation and safe retries.

- **Markets** are loaded once per (exchange, mode, endpoint) by a `MarketCatalog` and handed
  to every client (`set_markets`), refreshed hourly. Canonical symbols ("BTCUSDT") map to
  the USDT-settled linear perpetual of the loaded markets ("BTC/USDT:USDT").
- **Orders** are checked before anything is sent: amount floored to the market's step, price
  onto its tick, minimum amount and notional — so a refusal the exchange would make costs no
  request and reads as a sentence.
- **Errors** of ccxt are translated here (see `translate`), by what the caller must do. A
  create that may have reached the exchange (timeout, 5xx, lost connection) is never resent
  blindly: the order is looked up by its client id, repeatedly, because a new order can take a
  moment to become visible; only when it is still unknown is the same request (same client id)
  sent once more.
- **Money** never goes through a float: amounts and prices are sent as decimal strings and
  read back from the exchange's raw answer (`info`), not from ccxt's float fields.

Subclasses implement the exchange-specific parts: how orders, positions and balances read,
how conditional orders are placed and found, and what a key may do.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeVar

import ccxt.async_support as ccxt
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from app.exchanges.base import (
    QUOTE_ASSET,
    ExchangeAdapter,
    KeyPermissions,
    MarketInfo,
    Order,
    OrderRequest,
    OrderType,
)
from app.exchanges.errors import (
    AuthenticationFailed,
    ExchangeError,
    InsufficientFunds,
    OrderNotFound,
    OrderRejected,
    OutcomeUnknown,
    RetryLater,
)
from app.exchanges.request_budget import RequestBudget
from app.exchanges.symbols import canonical_symbol
from app.logging.logger import get_logger

log = get_logger("exchanges")

T = TypeVar("T")

MARKETS_MAX_AGE_S = 3600.0
TICKER_MAX_AGE_S = 2.0
# Looking an order up after an unknown outcome: how long to keep looking before deciding the
# exchange never accepted it.
LOOKUP_DELAYS_S = (0.2, 0.5, 1.0, 2.0)
READ_ATTEMPTS = 3
READ_RETRY_MAX_WAIT_S = 2.0
# How far back both exchanges answer fill and order history: 7 days (less a margin).
HISTORY_WINDOW_MS = 7 * 24 * 3600 * 1000 - 60_000


def dec(value: Any) -> Decimal | None:
    """A decimal from an exchange's raw field ("0.001", 12, "", None) — None when absent."""
    if value is None or value == "":
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def dec0(value: Any) -> Decimal:
    return dec(value) or Decimal(0)


def ms_to_datetime(value: Any) -> datetime:
    """Exchange timestamps are epoch milliseconds (int or str); now when missing."""
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)


def history_start_ms(since: datetime) -> int:
    """`since` in epoch milliseconds, no further back than the exchanges' history goes."""
    return max(int(since.timestamp() * 1000), int(time.time() * 1000) - HISTORY_WINDOW_MS)


def plain(value: Decimal) -> str:
    """A decimal as the exchange wants it: no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return text


@dataclass(frozen=True)
class ExchangeEndpoint:
    """Which of an exchange's environments a client talks to. `api_urls` overrides ccxt's
    URLs (a local stand-in of the exchange); None uses the real ones."""

    mode: str  # "live" | "demo"
    api_urls: Mapping[str, str] | None = None

    @property
    def cache_key(self) -> tuple[str, str]:
        return (self.mode, repr(sorted((self.api_urls or {}).items())))


def translate(exc: Exception, *, sent: bool) -> ExchangeError:
    """A ccxt exception as an `ExchangeError`, chosen by what the caller must do.

    `sent` says whether the request could have changed something on the exchange (create,
    cancel, leverage): then a lost answer is `OutcomeUnknown`; for a read it is `RetryLater`.
    """
    message = str(exc)[:500]
    if isinstance(exc, ExchangeError):
        return exc
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return RetryLater(f"rate limited by the exchange: {message}", code="rate_limited")
    if isinstance(exc, ccxt.OnMaintenance):
        return RetryLater(f"the exchange is under maintenance: {message}", code="maintenance")
    if isinstance(exc, ccxt.InvalidNonce):
        # A request outside the exchange's receive window is refused before it is processed.
        return RetryLater(f"request timestamp refused: {message}", code="timestamp_refused")
    if isinstance(exc, ccxt.OperationFailed):  # timeouts, 5xx, lost connections, garbled answers
        if sent:
            return OutcomeUnknown(f"no clear answer from the exchange: {message}")
        return RetryLater(f"exchange unreachable: {message}", code="exchange_unreachable")
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientFunds(f"insufficient margin on the exchange account: {message}")
    if isinstance(exc, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
        return AuthenticationFailed(f"the exchange refused the API key: {message}")
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFound(message)
    if isinstance(exc, ccxt.BadSymbol):
        return OrderRejected(f"the exchange does not list this market: {message}",
                             code="unknown_symbol")  # fmt: skip
    if isinstance(exc, ccxt.ExchangeError):  # the exchange answered and said no
        return OrderRejected(
            f"the exchange refused the request: {message}", code="exchange_refused"
        )
    return ExchangeError(f"{type(exc).__name__}: {message}")


_ORIGIN_STRING = re.compile(r"(origin_string\[)[^\]]*\]")
_CODE = re.compile(r'"(?:code|retCode)"\s*:\s*"?(-?\d+)')


def answered(error: Exception, codes: Collection[str] = (), texts: Collection[str] = ()) -> bool:
    """Whether the exchange's answer behind `error` (ccxt puts the body in the message) has
    one of the error `codes` (Binance `code`, Bybit `retCode`) or contains one of `texts`."""
    message = str(error)
    found = _CODE.search(message)
    return (found is not None and found.group(1) in codes) or any(t in message for t in texts)


class MarketCatalog:
    """Markets of one exchange environment, loaded once and shared by every client of it."""

    def __init__(self, max_age_s: float = MARKETS_MAX_AGE_S) -> None:
        self.max_age_s = max_age_s
        self.markets: dict[str, Any] | None = None
        self.by_canonical: dict[str, str] = {}
        self.loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def attach(self, client: ccxt.Exchange) -> None:
        """Give `client` the loaded markets, loading them through it when needed."""
        if self.markets is None or time.monotonic() - self.loaded_at > self.max_age_s:
            async with self._lock:
                if self.markets is None or time.monotonic() - self.loaded_at > self.max_age_s:
                    markets = await client.load_markets(reload=True)
                    self._index(markets)
                    return
        if client.markets is not self.markets:
            client.set_markets(self.markets)

    def _index(self, markets: dict[str, Any]) -> None:
        by_canonical: dict[str, str] = {}
        for symbol, market in markets.items():
            if not (market.get("swap") and market.get("linear")):
                continue
            if market.get("settle") != QUOTE_ASSET or market.get("active") is False:
                continue
            try:
                by_canonical[canonical_symbol(symbol)] = symbol
            except ValueError:
                continue
        self.markets = markets
        self.by_canonical = by_canonical
        self.loaded_at = time.monotonic()


def _note_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.info("exchange_read_retry", attempt=state.attempt_number,
             error_type=type(exc).__name__ if exc else None)  # fmt: skip


def _soon_retryable(exc: BaseException) -> bool:
    """A read worth retrying in place: "later" that is soon. A longer wait is the caller's
    (a signal goes back to its queue rather than hold its worker)."""
    if not isinstance(exc, RetryLater):
        return False
    return exc.retry_after_s is None or exc.retry_after_s <= READ_RETRY_MAX_WAIT_S


def _wait_retry_later(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    hinted = getattr(exc, "retry_after_s", None)
    backoff = min(READ_RETRY_MAX_WAIT_S, 0.2 * 2 ** (state.attempt_number - 1))
    return float(hinted) if hinted else backoff


class CcxtAdapter(ExchangeAdapter):
    """One API key's account on a ccxt-backed exchange; see the module docstring.

    The client is shared: `close()` releases nothing (the factory that owns the client closes
    it with `close_client()` when the key is dropped or the engine stops).
    """

    exchange_id: ClassVar[str]  # ccxt's id
    exchange_name: ClassVar[str]  # the engine's name: "binance", "bybit"
    # Request weight the exchange allows per minute, per source address and per API key.
    address_weight_per_min: ClassVar[int]
    key_weight_per_min: ClassVar[int]
    # Error codes meaning "an order with this client id already exists".
    duplicate_codes: ClassVar[frozenset[str]] = frozenset()
    # Error codes (or texts) meaning "the order's position side does not match the account's
    # position mode" (switched between one-way and hedge mode meanwhile): nothing was placed.
    position_mode_codes: ClassVar[frozenset[str]] = frozenset()
    position_mode_texts: ClassVar[tuple[str, ...]] = ()
    # Error codes the exchange answers when it cannot tell whether it executed the request
    # (its internal timeouts and failures), whatever exception ccxt raises for them.
    unknown_outcome_codes: ClassVar[frozenset[str]] = frozenset()
    # After an unknown outcome: when to look for the order again before deciding that the
    # exchange never accepted it (a new order can take a moment to become visible).
    lookup_delays_s: tuple[float, ...] = LOOKUP_DELAYS_S

    def __init__(
        self,
        credentials_key: str,
        secret: str,
        *,
        endpoint: ExchangeEndpoint,
        catalog: MarketCatalog,
        budget: RequestBudget | None = None,
        timeout_ms: int = 10_000,
        passphrase: str | None = None,
        key_id: str | None = None,
        on_error: Callable[[str, ExchangeError], None] | None = None,
    ) -> None:
        self.key_id = key_id  # the stored key's id, when it is one
        self.on_error = on_error  # told of every translated error (the error metrics)
        self.endpoint = endpoint
        self.catalog = catalog
        self.budget = budget
        self.client = self._make_client(credentials_key, secret, passphrase, timeout_ms)
        self._tickers: dict[str, tuple[Decimal, float]] = {}
        self._hedged: bool | None = None

    # ------------------------------------------------------------------ client
    def _make_client(
        self, api_key: str, secret: str, passphrase: str | None, timeout_ms: int
    ) -> ccxt.Exchange:
        config: dict[str, Any] = {
            "apiKey": api_key,
            "secret": secret,
            "timeout": timeout_ms,
            # ccxt's own throttle is replaced by the shared budget (see `_throttle`).
            "enableRateLimit": self.budget is not None,
            "options": self.client_options(),
        }
        if passphrase:
            config["password"] = passphrase
        client: ccxt.Exchange = getattr(ccxt, self.exchange_id)(config)
        if self.endpoint.mode == "demo":
            client.enable_demo_trading(True)
        if self.endpoint.api_urls is not None:
            client.urls["api"] = dict(self.endpoint.api_urls)
            self.keep_host_behaviour(client)
        if self.budget is not None:
            client.throttle = self._throttle
        return client

    async def _throttle(self, cost: float | None = None) -> None:
        assert self.budget is not None
        await self.budget.acquire(float(cost or 1))

    @abstractmethod
    def client_options(self) -> dict[str, Any]:
        """ccxt options of this exchange's client."""

    def keep_host_behaviour(self, client: ccxt.Exchange) -> None:
        """With replaced API URLs, give `client` whatever ccxt derives from the exchange's
        real host name (nothing, unless a subclass says otherwise)."""

    @property
    def name(self) -> str:
        return self.exchange_name

    async def close(self) -> None:
        """Nothing to release per use; see `close_client`."""

    async def close_client(self) -> None:
        await self.client.close()

    # ------------------------------------------------------------------ calls
    async def call(self, fn: Callable[[], Awaitable[T]], *, sent: bool = False) -> T:
        """Run one ccxt call, translating its errors; a rate limit bans the egress address."""
        try:
            if self.client.markets is None:
                # ccxt would load them itself, once per client: hand it the shared ones.
                await self.catalog.attach(self.client)
            return await fn()
        except Exception as exc:
            if answered(exc, self.unknown_outcome_codes):
                exc = ccxt.ExchangeNotAvailable(str(exc))  # the exchange itself said so
            error = translate(exc, sent=sent)
            self._scrub(error)
            if not isinstance(error, OrderNotFound):  # an answer (the look-up before a create)
                log.warning("exchange_error", exchange=self.exchange_name,
                            error_class=error.code, sent=sent)  # fmt: skip
                if self.on_error is not None:
                    self.on_error(self.exchange_name, error)
            if isinstance(error, RetryLater) and error.code == "rate_limited":
                error.retry_after_s = self._retry_after()
                if self.budget is not None:
                    await self.budget.ban_address(error.retry_after_s or 1.0)
            # Not chained: ccxt's exception text may carry the key (see `_scrub`).
            raise error from None

    def _scrub(self, error: ExchangeError) -> None:
        """Take the credentials out of an error's text: exchanges echo them (Bybit's
        signature error shows the signed string, API key included), and the text is logged
        and stored."""
        message = _ORIGIN_STRING.sub(r"\1…]", error.message)
        for credential in (self.client.apiKey, self.client.secret, self.client.password):
            if credential:
                message = message.replace(str(credential), "****")
        error.message = message
        error.args = (message,)

    async def read(self, fn: Callable[[], Awaitable[T]]) -> T:
        """A read, retried with backoff while the exchange says "later" and means within
        READ_RETRY_MAX_WAIT_S (safe: reads change nothing)."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_soon_retryable),
            stop=stop_after_attempt(READ_ATTEMPTS),
            wait=_wait_retry_later,
            before_sleep=_note_retry,
            reraise=True,
        ):
            with attempt:
                return await self.call(fn)
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_after(self) -> float:
        """Seconds the exchange asked us to wait, from its last answer's headers (1 s when it
        said nothing)."""
        headers = {k.lower(): v for k, v in (self.client.last_response_headers or {}).items()}
        hinted = self.retry_after_hint(headers)
        return 1.0 if hinted is None else max(0.0, hinted)

    def retry_after_hint(self, headers: Mapping[str, Any]) -> float | None:
        """The wait an answer's headers (names in lower case) ask for, in seconds."""
        try:
            return float(str(headers["retry-after"]))
        except (KeyError, ValueError):
            return None

    async def ensure_markets(self) -> None:
        await self.read(lambda: self.catalog.attach(self.client))

    async def unified_symbol(self, symbol: str) -> str:
        await self.ensure_markets()
        unified = self.catalog.by_canonical.get(symbol)
        if unified is None:
            raise OrderRejected(
                f"{symbol} is not a USDT perpetual listed on {self.exchange_name}",
                code="unknown_symbol",
            )
        return unified

    # ------------------------------------------------------------------ markets, prices
    async def market(self, symbol: str) -> MarketInfo:
        unified = await self.unified_symbol(symbol)
        return self.market_info(symbol, self.client.market(unified))

    @abstractmethod
    def market_info(self, symbol: str, market: dict[str, Any]) -> MarketInfo:
        """Trading rules from a loaded ccxt market (read from its raw `info`)."""

    async def get_ticker_price(self, symbol: str) -> Decimal:
        cached = self._tickers.get(symbol)
        if cached is not None and time.monotonic() - cached[1] < TICKER_MAX_AGE_S:
            return cached[0]
        unified = await self.unified_symbol(symbol)
        ticker = await self.read(lambda: self.client.fetch_ticker(unified))
        price = self.ticker_price(ticker)
        if price is None or price <= 0:
            raise RetryLater(f"{self.exchange_name} gave no price for {symbol}",
                             code="no_price")  # fmt: skip
        self._tickers[symbol] = (price, time.monotonic())
        return price

    @abstractmethod
    def ticker_price(self, ticker: dict[str, Any]) -> Decimal | None:
        """The last price in a ccxt ticker, from its raw `info`."""

    # ------------------------------------------------------------------ orders
    async def prepare(self, req: OrderRequest) -> tuple[str, MarketInfo, Decimal, Decimal | None]:
        """(unified symbol, market, amount, trigger) for `req`, or OrderRejected before any
        order request is sent."""
        unified = await self.unified_symbol(req.symbol)
        market = self.market_info(req.symbol, self.client.market(unified))
        amount = market.floor_amount(req.quantity)
        if amount <= 0 or amount < market.min_amount:
            raise OrderRejected(
                f"quantity {req.quantity} {market.base} is below {req.symbol}'s minimum order"
                f" of {market.min_amount} {market.base} on {self.exchange_name}",
                code="quantity_below_minimum",
            )
        trigger = None
        if req.stop_price is not None:
            trigger = market.floor_price(req.stop_price)
            if trigger <= 0:
                raise OrderRejected(f"trigger price {req.stop_price} is not a valid price",
                                    code="invalid_price")  # fmt: skip
        if not req.reduce_only:
            reference = req.price or trigger or await self.get_ticker_price(req.symbol)
            notional = amount * reference
            if notional < market.min_notional:
                raise OrderRejected(
                    f"order value {notional.quantize(Decimal('0.01'))} {market.quote} is below"
                    f" {req.symbol}'s minimum of {market.min_notional} {market.quote} on"
                    f" {self.exchange_name}",
                    code="notional_below_minimum",
                )
        return unified, market, amount, trigger

    async def create_order(self, req: OrderRequest) -> Order:
        unified, _market, amount, trigger = await self.prepare(req)
        conditional = self.is_conditional(req.type)
        existing = await self.find_order(unified, req.client_order_id, conditional=conditional)
        if existing is not None:  # idempotent on the client id
            return existing
        try:
            return await self._send(unified, req, amount, trigger)
        except OrderRejected as exc:
            if not answered(exc, self.position_mode_codes, self.position_mode_texts):
                raise
        # The user switched between one-way and hedge mode on the exchange since it was read,
        # and the exchange placed nothing: read the mode again and send the order its way.
        log.info("position_mode_changed", client_order_id=req.client_order_id)
        self._hedged = None
        return await self._send(unified, req, amount, trigger)

    async def _send(
        self, unified: str, req: OrderRequest, amount: Decimal, trigger: Decimal | None
    ) -> Order:
        """Send a create. When its outcome is unknown the order is looked up by its client id;
        only when it is still not there is the same request (same client id) sent once more."""
        hedged = await self.is_hedged(req.symbol)
        for attempt in (1, 2):
            try:
                return await self.call(
                    lambda: self.submit(unified, req, amount, trigger, hedged), sent=True
                )
            except OrderRejected as exc:
                if answered(exc, self.duplicate_codes):  # placed by an earlier, unanswered send
                    found = await self._look_up(req)
                    if found is not None:
                        return found
                raise
            except OutcomeUnknown as exc:
                log.warning("order_outcome_unknown", client_order_id=req.client_order_id,
                            attempt=attempt, error=exc.message[:200])  # fmt: skip
                found = await self._look_up(req)
                if found is not None:
                    return found
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _look_up(self, req: OrderRequest) -> Order | None:
        """The order with `req`'s client id, looked for until `lookup_delays_s` run out."""
        for delay in self.lookup_delays_s:
            await asyncio.sleep(delay)
            try:
                found = await self.find_order(
                    await self.unified_symbol(req.symbol),
                    req.client_order_id,
                    conditional=self.is_conditional(req.type),
                )
            except RetryLater:
                continue
            if found is not None:
                log.info("order_found_after_unknown_outcome",
                         client_order_id=req.client_order_id)  # fmt: skip
                return found
        return None

    @abstractmethod
    async def submit(
        self,
        unified: str,
        req: OrderRequest,
        amount: Decimal,
        trigger: Decimal | None,
        hedged: bool,
    ) -> Order:
        """Send the order (may raise ccxt exceptions; `call` translates them)."""

    @abstractmethod
    async def find_order(self, unified: str, client_order_id: str, *, conditional: bool
                         ) -> Order | None:  # fmt: skip
        """The order placed with `client_order_id` (a conditional one when `conditional`:
        some exchanges keep those apart), or None."""

    async def get_order(
        self, symbol: str, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order | None:
        if (order_id is None) == (client_order_id is None):
            raise ValueError("give exactly one of order_id and client_order_id")
        unified = await self.unified_symbol(symbol)
        if client_order_id is not None:
            for conditional in (False, True):
                found = await self.find_order(unified, client_order_id, conditional=conditional)
                if found is not None:
                    return found
            return None
        assert order_id is not None
        return await self.find_order_by_id(unified, order_id)

    @abstractmethod
    async def find_order_by_id(self, unified: str, order_id: str) -> Order | None: ...

    async def cancel_order(
        self, symbol: str, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order:
        order = await self.get_order(symbol, order_id=order_id, client_order_id=client_order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id or client_order_id} on {symbol}")
        if not order.is_open:
            return order
        unified = await self.unified_symbol(symbol)
        with contextlib.suppress(OrderNotFound, OutcomeUnknown, RetryLater):
            # Filled or canceled meanwhile, or no answer: the order's state afterwards tells.
            await self.call(lambda: self.send_cancel(unified, order), sent=True)
        after = await self.find_order_by_id(unified, order.order_id)
        if after is None:
            raise OrderNotFound(f"order {order.order_id} vanished from {symbol}")
        if after.is_open:
            raise OutcomeUnknown(f"order {order.order_id} is still open after the cancel")
        return after

    @abstractmethod
    async def send_cancel(self, unified: str, order: Order) -> None:
        """Ask the exchange to cancel `order` (ccxt exceptions are translated by the caller)."""

    @staticmethod
    def is_conditional(order_type: OrderType) -> bool:
        return order_type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)

    async def is_hedged(self, symbol: str) -> bool:
        """Whether the account runs in hedge mode (long and short positions side by side);
        read from the exchange once per adapter."""
        if self._hedged is None:
            self._hedged = await self.fetch_hedge_mode(symbol)
        return self._hedged

    @abstractmethod
    async def fetch_hedge_mode(self, symbol: str) -> bool: ...

    # ------------------------------------------------------------------ keys
    async def validate_credentials(self) -> bool:
        try:
            await self.read(self.client.fetch_balance)
        except AuthenticationFailed:
            return False
        return True

    @abstractmethod
    async def key_permissions(self) -> KeyPermissions:
        """What the key may do, as the exchange reports it (AuthenticationFailed when the
        exchange refuses the key)."""
