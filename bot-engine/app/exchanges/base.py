"""The exchange interface the engine trades through, and the values it exchanges.

Every adapter (the paper exchange, ccxt-backed real exchanges) implements `ExchangeAdapter`
for USDT-margined linear perpetuals in one-way mode. Symbols are canonical strings such as
"BTCUSDT" (base + quote, upper case, no separators); adapters map them to their own form.
Every amount, price and fee is a `Decimal`, never a float.

Conventions every adapter keeps:
- `create_order` is idempotent on `client_order_id`: a second call with a client id already
  used on the account returns the existing order and places nothing.
- `Order.realized_pnl` is the profit or loss that the order's fills closed, *before* fees;
  `Order.fee` is reported separately (in `fee_currency`). Opening fills realise 0.
- Errors are those of `app.exchanges.errors`, chosen by what the caller must do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum

QUOTE_ASSET = "USDT"


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> OrderSide:
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    # Conditional market orders: they rest until the price crosses stop_price.
    STOP_MARKET = "stop_market"
    TAKE_PROFIT_MARKET = "take_profit_market"


class OrderStatus(StrEnum):
    OPEN = "open"  # resting on the book (or waiting for its trigger)
    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"  # some filled, the rest still working
    CANCELED = "canceled"
    REJECTED = "rejected"


def _require_decimal(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite number, got {value}")


@dataclass(frozen=True)
class OrderRequest:
    """An order to place. `price` is the limit price (LIMIT only); `stop_price` the trigger
    price (STOP_MARKET and TAKE_PROFIT_MARKET only)."""

    symbol: str
    side: OrderSide
    type: OrderType
    quantity: Decimal
    client_order_id: str
    price: Decimal | None = None
    stop_price: Decimal | None = None
    reduce_only: bool = False

    def __post_init__(self) -> None:
        # A float slipping in here would silently round money: refuse it where it enters.
        # Whether the values are acceptable (positive, on step, ...) is the exchange's call.
        _require_decimal("quantity", self.quantity)
        _require_decimal("price", self.price, optional=True)
        _require_decimal("stop_price", self.stop_price, optional=True)
        object.__setattr__(self, "side", OrderSide(self.side))
        object.__setattr__(self, "type", OrderType(self.type))


@dataclass(frozen=True)
class Order:
    """An order as the exchange knows it.

    `realized_pnl` is what this order's fills realised on the position they reduced, fees
    excluded (0 for fills that only opened or increased a position); `fee` is charged
    separately, in `fee_currency`.
    """

    order_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    status: OrderStatus
    quantity: Decimal
    filled_quantity: Decimal
    avg_fill_price: Decimal | None
    fee: Decimal
    fee_currency: str
    price: Decimal | None
    stop_price: Decimal | None
    reduce_only: bool
    realized_pnl: Decimal
    created_at: datetime
    updated_at: datetime

    @property
    def is_open(self) -> bool:
        """Still working on the exchange (resting or partly filled)."""
        return self.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


@dataclass(frozen=True)
class Position:
    """A net position (one-way mode). `quantity` is always > 0; `side` says the direction."""

    symbol: str
    side: str  # "long" | "short"
    quantity: Decimal
    entry_price: Decimal
    mark_price: Decimal | None
    unrealized_pnl: Decimal | None
    leverage: int
    liquidation_price: Decimal | None
    margin: Decimal | None


@dataclass(frozen=True)
class Balance:
    """One asset of a futures account: `total` is the margin balance (wallet balance plus
    unrealised PnL), `locked` the margin held by positions and resting orders, `free` what
    is left for new orders."""

    asset: str
    free: Decimal
    locked: Decimal
    total: Decimal


@dataclass(frozen=True)
class MarketInfo:
    """Trading rules of a market: order quantities are multiples of `amount_step` and at
    least `min_amount`; prices are multiples of `price_step`; an order's notional
    (quantity x price) must reach `min_notional` unless it only reduces a position."""

    symbol: str
    base: str
    quote: str
    amount_step: Decimal
    price_step: Decimal
    min_amount: Decimal
    min_notional: Decimal
    max_leverage: int

    def floor_amount(self, quantity: Decimal) -> Decimal:
        """The largest valid multiple of `amount_step` not above `quantity` (may be 0)."""
        return _to_step(quantity, self.amount_step, ROUND_FLOOR)

    def floor_price(self, price: Decimal) -> Decimal:
        return _to_step(price, self.price_step, ROUND_FLOOR)

    def ceil_price(self, price: Decimal) -> Decimal:
        return _to_step(price, self.price_step, ROUND_CEILING)

    def is_amount_on_step(self, quantity: Decimal) -> bool:
        return quantity % self.amount_step == 0

    def is_price_on_step(self, price: Decimal) -> bool:
        return price % self.price_step == 0


def _to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    steps = (value / step).to_integral_value(rounding=rounding)
    return (steps * step).quantize(step)


@dataclass(frozen=True)
class ApiCredentials:
    """An exchange API key pair, in clear: only ever held in memory, never logged (the repr
    shows the key's last four characters and nothing of the secret)."""

    api_key: str
    secret: str
    passphrase: str | None = None

    def __repr__(self) -> str:
        return f"ApiCredentials(api_key='…{self.api_key[-4:]}', secret=<hidden>)"

    __str__ = __repr__


@dataclass(frozen=True)
class KeyPermissions:
    """What an API key may do, as the exchange reports it."""

    can_read: bool
    can_trade: bool
    can_withdraw: bool


class ExchangeAdapter(ABC):
    """One trading account on one exchange."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Short exchange name, e.g. "paper" or "binance"."""

    @abstractmethod
    async def market(self, symbol: str) -> MarketInfo:
        """Trading rules of `symbol`; unknown symbols raise OrderRejected("unknown_symbol")."""

    @abstractmethod
    async def create_order(self, req: OrderRequest) -> Order:
        """Place an order. Idempotent on `req.client_order_id`: when the account already has
        an order with that client id, that order is returned and nothing is placed."""

    @abstractmethod
    async def cancel_order(
        self, symbol: str, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order:
        """Cancel an open order (by exactly one of the ids). An order that is no longer open
        is returned unchanged; an unknown one raises OrderNotFound."""

    @abstractmethod
    async def get_order(
        self, symbol: str, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order | None:
        """The order with exactly one of the given ids, or None."""

    @abstractmethod
    async def get_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders still working, oldest first, of one symbol or of all."""

    @abstractmethod
    async def get_filled_orders(self, symbol: str, since: datetime) -> list[Order]:
        """Orders of `symbol` with fills since `since` (whoever placed them: the engine, the
        exchange's website, a liquidation), with their fees and realised PnL, oldest first.
        How far back an exchange can answer is its own limit (Binance: 7 days)."""

    @abstractmethod
    async def get_positions(self) -> list[Position]:
        """Every open position."""

    @abstractmethod
    async def get_position(self, symbol: str) -> Position | None:
        """The open position of `symbol`, or None when flat."""

    @abstractmethod
    async def get_balances(self) -> list[Balance]:
        """Balances per asset."""

    @abstractmethod
    async def get_equity(self) -> Decimal:
        """Wallet balance plus unrealised PnL, in USDT."""

    @abstractmethod
    async def get_ticker_price(self, symbol: str) -> Decimal:
        """The last price of `symbol`."""

    @abstractmethod
    async def set_leverage(self, symbol: str, leverage: int) -> None:
        """Leverage used for `symbol`'s position and new orders."""

    @abstractmethod
    async def validate_credentials(self) -> bool:
        """True when the account's credentials work."""

    @abstractmethod
    async def close(self) -> None:
        """Release the adapter's resources (HTTP sessions, websockets)."""
