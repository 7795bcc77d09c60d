"""The paper exchange: a simulated USDT-margined futures account (linear perpetuals, one-way
mode, cross margin) kept in PostgreSQL, so it survives restarts and several engine processes
share it safely.

What it simulates, and how:
- Prices come from a `PriceFeed`. The feed price is the mark price (unrealised PnL, margin).
- Market orders (and the triggered stop / take-profit orders, which are market orders once
  triggered) fill at once at the feed price moved against the taker by `slippage_percent`
  (a buy pays more, a sell gets less), rounded to the market's tick, again against the taker.
  A limit order that is marketable when placed fills the same way but never beyond its limit;
  otherwise it rests, and fills at its limit price once the price reaches it.
- Every fill pays `taker_fee_rate` x notional, taken from the wallet. Orders fill completely
  (the paper exchange has no order book depth to partially fill against).
- Positions are net per symbol: a fill against a position reduces, closes or flips it. A fill
  that closes quantity realises (exit - entry) x quantity for a long, the reverse for a short,
  into the wallet. `Order.realized_pnl` is that amount, fees excluded; `Order.fee` is the fee.
- Margin: initial margin = mark notional / leverage, for positions and for resting
  non-reduce-only limit orders (at their limit price). Available = wallet + unrealised PnL -
  initial margin. An order that opens or increases exposure is refused with
  `InsufficientFunds` when, after its fill (fee and slippage included), available would be
  negative. Stop and take-profit orders reserve nothing; they are checked when they trigger
  and become REJECTED if the margin is not there then.
- Reduce-only orders never increase a position: their quantity is capped to the position's
  size when they fill (the stored quantity becomes the capped one); placing one with no
  position to reduce is refused, and resting ones are canceled as soon as the position they
  would reduce is closed or flipped.
- Conditional orders rest until `process_price` (or `process_all_accounts`, which the
  trigger worker calls every second) sees their trigger crossed.
- Leverage is set per symbol (default 1x, so an engine that forgets to set it cannot trade
  at a leverage nobody chose). There is no liquidation and no funding.

Money and prices are Decimals quantised to 8 decimal places (banker's rounding, the
database's NUMERIC(20, 8)); fill prices are on the market's tick.

Storage is plain SQL on the asyncpg pool, in as few round trips as the guarantees allow:
- A call that changes the account (`create_order`, `cancel_order`, `set_leverage`,
  `process_price`) is optimistic and takes no lock: it reads the whole book in one statement,
  with the account's `version`, computes the change in Python, and writes back only the rows
  that changed in one autocommitted statement. That statement first bumps the version, and
  only if it is still the one read; every other part of it applies only if the bump did. As
  every write bumps the version, of two writers that read the same book exactly one applies
  (the other's bump waits for the first to commit, then matches nothing); the loser reads the
  new book and computes again, a bounded number of times. So concurrent writers of one
  account are serialised and the books always balance: wallet = starting balance + sum(realised
  PnL) - sum(fees). A call that changes nothing (a replayed client order id, a price that
  triggers nothing, the leverage already set) is that one read; the first write of an account
  creates it, with the starting balance, and reads again. The save stamps the orders it
  writes with its own now(), so what a write returns is what a later read returns.
- An instance keeps the latest book it knows: the one it saved (at the version the save
  moved to), or the last one it read. Its next write computes on that book (with fresh mark
  prices) and saves against its version, skipping the read; when the save does not apply
  (another writer got in between), or the result is not a change (a replay, a price that
  triggers nothing, the leverage already set, an error), the book is dropped and the write
  reads and computes as above. So an outcome always comes from a book either just read or
  confirmed current by the save's version check, and consecutive writes of one instance
  (the signal executor's: leverage, entry, stop, take profit) cost one statement each. A
  new order's client id is looked up among the known book's working orders only; if it is
  an older order's, the save fails on the unique constraint, writing nothing, and the read
  that follows finds that order and replays it. An instance is per signal, and the engine
  runs one signal per key at a time, so the other writers of an account are executors of
  other symbols and the trigger worker, which is why the known book is usually current.
- A read is a single statement outside any transaction: it sees one snapshot, and writers
  commit a whole book at once, so it needs no lock. Reads never write: an account that
  does not exist yet reads as a fresh one holding the starting balance. A read may be up to
  50 ms old when the same instance read the account that recently (the executor's
  `get_position` then `get_equity`), never after the instance's own write: after a write,
  it reads again, so it never returns a state older than the instance's own last write,
  nor older than an order `get_order` returned.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

import asyncpg

from app.core.pg import Connection, Pool
from app.exchanges.base import (
    QUOTE_ASSET,
    Balance,
    ExchangeAdapter,
    MarketInfo,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
    Position,
)
from app.exchanges.errors import InsufficientFunds, OrderNotFound, OrderRejected
from app.exchanges.price_feed import PriceFeed
from app.exchanges.symbols import PAPER_MARKETS, paper_market
from app.logging.logger import get_logger
from app.models.base import in_values
from app.models.paper import PAPER_WORKING_STATUSES

log = get_logger("exchange.paper")

EXCHANGE_NAME = "paper"
MONEY = Decimal("0.00000001")  # NUMERIC(20, 8)
DEFAULT_LEVERAGE = 1
# Binance's rule for client order ids. Enforced here so that ids a real exchange would
# refuse are caught while paper trading.
_CLIENT_ORDER_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_UNIQUE_CLIENT_ID = "uq_paper_orders_account_id_client_order_id"
_TRIGGER_TYPES = (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)
_WORKING = frozenset(PAPER_WORKING_STATUSES)
# Reads and saves a write makes before giving up: a save loses only to another writer of the
# account that saved after the read, so each loss means some writer got through.
_WRITE_ATTEMPTS = 20
# How old a book this instance read may be when a read uses it again instead of reading.
_READ_REUSE = 0.05  # seconds

_T = TypeVar("_T")


def _money(value: Decimal) -> Decimal:
    return value.quantize(MONEY)


def _shown(value: Decimal) -> str:
    """A Decimal for a sentence: no exponent, no trailing zeros."""
    return f"{value.normalize():f}"


# --------------------------------------------------------------------------- rows


@dataclass
class _OrderRow:
    """A `paper_orders` row (its account aside), as the exchange reads and changes it."""

    id: uuid.UUID
    client_order_id: str
    symbol: str
    side: str
    type: str
    status: str
    quantity: Decimal
    filled_quantity: Decimal
    avg_fill_price: Decimal | None
    price: Decimal | None
    stop_price: Decimal | None
    reduce_only: bool
    fee: Decimal
    realized_pnl: Decimal
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> _OrderRow:
        values = {name: record[name] for name in _ORDER_FIELDS}
        # asyncpg's own UUID class, which the json codec cannot write, made a standard one.
        values["id"] = uuid.UUID(bytes=values["id"].bytes)
        return cls(**values)


@dataclass
class _PositionRow:
    """A `paper_positions` row (its account and `updated_at` aside)."""

    symbol: str
    side: str  # "long" | "short"
    quantity: Decimal
    entry_price: Decimal
    leverage: int

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> _PositionRow:
        return cls(**{name: record[name] for name in _POSITION_FIELDS})


_ORDER_FIELDS = tuple(f.name for f in fields(_OrderRow))
_OrderOrPosition = TypeVar("_OrderOrPosition", _OrderRow, _PositionRow)


def _stored(row: _OrderOrPosition) -> _OrderOrPosition:
    """A copy of `row` with its amounts as the database stores them (NUMERIC(20, 8)), so
    that a book a writer saved equals the book a read of it returns, to the exponent."""
    copy = replace(row)
    for f in fields(copy):
        if isinstance(value := getattr(copy, f.name), Decimal):
            setattr(copy, f.name, _money(value))
    return copy


_POSITION_FIELDS = tuple(f.name for f in fields(_PositionRow))

# --------------------------------------------------------------------------- SQL
# Rows are written as jsonb arrays of objects (the pool's codec serialises the dataclasses,
# Decimals as strings, so amounts stay exact) and read back as composite records, whose
# NUMERIC fields arrive as Decimals. `_IS_WORKING` repeats the partial index's predicate.

_IS_WORKING = in_values("status", PAPER_WORKING_STATUSES)
_ORDER_COLUMNS = ", ".join(_ORDER_FIELDS)

# The first write of an account creates it (at version 0); the writer then reads it again.
_CREATE = """
INSERT INTO paper_accounts (account_id, wallet_balance) VALUES ($1, $2)
ON CONFLICT (account_id) DO NOTHING
"""
# The whole book in one row, as of one snapshot: the account's version and wallet (both NULL
# while the account does not exist), the statement's timestamp (what a writer stamps the
# orders it writes with), and the order that has the client id $2 or the id $3, if any.
_BOOK = f"""
SELECT
    now() AS now,
    a.version,
    a.wallet_balance AS wallet,
    ARRAY(SELECT p FROM paper_positions p WHERE p.account_id = $1) AS positions,
    ARRAY(
        SELECT o FROM paper_orders o WHERE o.account_id = $1 AND o.{_IS_WORKING}
        ORDER BY o.created_at, o.id
    ) AS working,
    (
        SELECT jsonb_object_agg(symbol, leverage) FROM paper_leverage WHERE account_id = $1
    ) AS leverage,
    -- Two lookups, each through its own unique index (an OR of the two conditions is
    -- planned as one index scan over all of the account's orders).
    coalesce(
        (SELECT o FROM paper_orders o WHERE o.account_id = $1 AND o.client_order_id = $2),
        (SELECT o FROM paper_orders o WHERE o.account_id = $1 AND o.id = $3::uuid)
    ) AS existing
FROM (VALUES (1)) AS one
LEFT JOIN paper_accounts a ON a.account_id = $1
"""  # noqa: S608 - composed of constants only  # nosec B608
# Every change a writer makes, in one autocommitted statement: $2 the version it read, $3 the
# new wallet (NULL: unchanged), $4 the symbols of closed positions, $5 positions opened or
# changed, $6 new orders, $7 changed orders, $8 leverage settings. `bump` moves the account
# to the next version only if it is still at $2 (under READ COMMITTED, a bump racing another
# waits for it to commit, then re-checks the new row and matches nothing); every other part
# applies only if it did, and it runs first, as they all wait for its result. The parts touch
# disjoint rows, as one statement must, and the statement is atomic: if any part fails (a
# new order's client id already taken: `_UNIQUE_CLIENT_ID`), nothing is written. `applied`
# says whether the write happened; `now` is the statement's timestamp, which new orders get
# as `created_at` and `updated_at`, and changed orders as `updated_at` (their trigger would
# set the same). So what a writer returns is what a later read returns.
_SAVE = """
WITH bump AS (
    UPDATE paper_accounts SET
        version = version + 1,
        wallet_balance = coalesce($3::numeric, wallet_balance)
    WHERE account_id = $1 AND version = $2
    RETURNING version
), closed AS (
    DELETE FROM paper_positions
    WHERE account_id = $1 AND symbol = ANY($4::text[]) AND EXISTS (SELECT 1 FROM bump)
), positions AS (
    INSERT INTO paper_positions (account_id, symbol, side, quantity, entry_price, leverage)
    SELECT $1, symbol, side, quantity, entry_price, leverage
    FROM jsonb_to_recordset($5::jsonb) AS r(
        symbol text, side text, quantity numeric, entry_price numeric, leverage int
    )
    WHERE EXISTS (SELECT 1 FROM bump)
    ON CONFLICT (account_id, symbol) DO UPDATE SET
        side = excluded.side,
        quantity = excluded.quantity,
        entry_price = excluded.entry_price,
        leverage = excluded.leverage
), placed AS (
    INSERT INTO paper_orders (
        id, account_id, client_order_id, symbol, side, type, status, quantity,
        filled_quantity, avg_fill_price, price, stop_price, reduce_only, fee, realized_pnl,
        created_at, updated_at
    )
    SELECT
        id, $1, client_order_id, symbol, side, type, status, quantity,
        filled_quantity, avg_fill_price, price, stop_price, reduce_only, fee, realized_pnl,
        now(), now()
    FROM jsonb_to_recordset($6::jsonb) AS r(
        id uuid, client_order_id text, symbol text, side text, type text, status text,
        quantity numeric, filled_quantity numeric, avg_fill_price numeric, price numeric,
        stop_price numeric, reduce_only boolean, fee numeric, realized_pnl numeric
    )
    WHERE EXISTS (SELECT 1 FROM bump)
), changed AS (
    UPDATE paper_orders o SET
        status = r.status,
        quantity = r.quantity,
        filled_quantity = r.filled_quantity,
        avg_fill_price = r.avg_fill_price,
        fee = r.fee,
        realized_pnl = r.realized_pnl,
        updated_at = now()
    FROM jsonb_to_recordset($7::jsonb) AS r(
        id uuid, status text, quantity numeric, filled_quantity numeric,
        avg_fill_price numeric, fee numeric, realized_pnl numeric
    )
    WHERE o.id = r.id AND o.account_id = $1
      -- by primary key: joined to the recordset alone, the planner scans the whole table
      AND o.id = ANY (ARRAY(SELECT (e ->> 'id')::uuid FROM jsonb_array_elements($7::jsonb) e))
      AND EXISTS (SELECT 1 FROM bump)
), leverage AS (
    INSERT INTO paper_leverage (account_id, symbol, leverage)
    SELECT $1, symbol, leverage FROM jsonb_to_recordset($8::jsonb) AS r(symbol text, leverage int)
    WHERE EXISTS (SELECT 1 FROM bump)
    ON CONFLICT (account_id, symbol) DO UPDATE SET leverage = excluded.leverage
)
SELECT EXISTS (SELECT 1 FROM bump) AS applied, now() AS now
"""
_ORDER_BY_ID = f"""
SELECT {_ORDER_COLUMNS} FROM paper_orders WHERE account_id = $1 AND id = $2
"""  # noqa: S608 - composed of constants only  # nosec B608
_ORDER_BY_CLIENT_ID = f"""
SELECT {_ORDER_COLUMNS} FROM paper_orders WHERE account_id = $1 AND client_order_id = $2
"""  # noqa: S608 - composed of constants only  # nosec B608
_FILLED_SINCE = f"""
SELECT {_ORDER_COLUMNS} FROM paper_orders
WHERE account_id = $1 AND symbol = $2 AND filled_quantity > 0 AND updated_at >= $3
ORDER BY updated_at, created_at
"""  # noqa: S608 - composed of constants only  # nosec B608
_WORKING_PAIRS = f"""
SELECT DISTINCT account_id, symbol FROM paper_orders WHERE {_IS_WORKING}
ORDER BY account_id, symbol
"""  # noqa: S608 - composed of constants only  # nosec B608


# --------------------------------------------------------------------------- position math


@dataclass(frozen=True)
class _Net:
    """A net position as numbers: `size` > 0 is long, < 0 short (never 0)."""

    size: Decimal
    entry: Decimal
    leverage: int

    @property
    def side(self) -> str:
        return "long" if self.size > 0 else "short"


@dataclass(frozen=True)
class _Fill:
    after: _Net | None  # the position once the fill is applied; None when flat
    realized: Decimal  # PnL of the quantity closed, fees excluded
    opened: Decimal  # quantity that opened or increased exposure


def _apply_fill(net: _Net | None, signed_qty: Decimal, price: Decimal, leverage: int) -> _Fill:
    """The effect of filling `signed_qty` (> 0 buys, < 0 sells) at `price` on `net`."""
    if net is None:
        return _Fill(_Net(signed_qty, price, leverage), Decimal(0), abs(signed_qty))
    if (net.size > 0) == (signed_qty > 0):
        size = net.size + signed_qty
        entry = _money((abs(net.size) * net.entry + abs(signed_qty) * price) / abs(size))
        return _Fill(replace(net, size=size, entry=entry), Decimal(0), abs(signed_qty))
    closed = min(abs(net.size), abs(signed_qty))
    direction = 1 if net.size > 0 else -1
    realized = _money((price - net.entry) * closed * direction)
    size = net.size + signed_qty
    after: _Net | None
    if size == 0:
        after = None
    elif (size > 0) == (net.size > 0):
        after = replace(net, size=size)
    else:  # flipped: the remainder opens a new position at the fill price
        after = _Net(size, price, leverage)
    return _Fill(after, realized, abs(signed_qty) - closed)


def _signed(side: str, quantity: Decimal) -> Decimal:
    return quantity if side == OrderSide.BUY else -quantity


def _reduces(side: str, net: _Net | None) -> bool:
    """Whether an order of `side` reduces the position `net`."""
    return net is not None and (net.size > 0) == (side == OrderSide.SELL)


def _triggered(row: _OrderRow, price: Decimal) -> bool:
    """Whether the price `price` triggers (or reaches) the resting order `row`."""
    buy = row.side == OrderSide.BUY
    if row.type == OrderType.LIMIT:
        assert row.price is not None
        return price <= row.price if buy else price >= row.price
    assert row.stop_price is not None
    if row.type == OrderType.STOP_MARKET:  # stops fire when the price moves against you
        return price >= row.stop_price if buy else price <= row.stop_price
    return price <= row.stop_price if buy else price >= row.stop_price  # take-profit


def _to_order(row: _OrderRow) -> Order:
    return Order(
        order_id=str(row.id),
        client_order_id=row.client_order_id,
        symbol=row.symbol,
        side=OrderSide(row.side),
        type=OrderType(row.type),
        status=OrderStatus(row.status),
        quantity=row.quantity,
        filled_quantity=row.filled_quantity,
        avg_fill_price=row.avg_fill_price,
        fee=row.fee,
        fee_currency=QUOTE_ASSET,
        price=row.price,
        stop_price=row.stop_price,
        reduce_only=row.reduce_only,
        realized_pnl=row.realized_pnl,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# --------------------------------------------------------------------------- the account


@dataclass
class _Book:
    """One account's state at one version, and the changes made to it since (`save` writes
    them back, if nobody wrote the account in between)."""

    version: int | None  # None while the account does not exist
    now: datetime  # when it was read or saved (the save stamps the orders it writes)
    wallet: Decimal
    positions: dict[str, _PositionRow]
    working: list[_OrderRow]  # orders still working when loaded, oldest first
    leverage: dict[str, int]
    existing: _OrderRow | None = None  # the order looked up by client id or id, if any
    marks: dict[str, Decimal] = field(default_factory=dict)
    placed: list[_OrderRow] = field(default_factory=list)  # new orders, to insert
    # The state as loaded, to find what changed.
    _loaded_wallet: Decimal = field(init=False, repr=False)
    _loaded_positions: dict[str, _PositionRow] = field(init=False, repr=False)
    _loaded_orders: dict[uuid.UUID, _OrderRow] = field(init=False, repr=False)
    _loaded_leverage: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._loaded_wallet = self.wallet
        self._loaded_positions = {s: replace(row) for s, row in self.positions.items()}
        self._loaded_orders = {row.id: replace(row) for row in self.working}
        self._loaded_leverage = dict(self.leverage)

    @classmethod
    def from_record(cls, record: asyncpg.Record, starting_balance: Decimal) -> _Book:
        """The book in a `_BOOK` row; a fresh one when the account does not exist yet."""
        wallet = record["wallet"]
        existing = record["existing"]
        return cls(
            version=record["version"],
            now=record["now"],
            wallet=starting_balance if wallet is None else wallet,
            positions={p["symbol"]: _PositionRow.from_record(p) for p in record["positions"]},
            working=[_OrderRow.from_record(o) for o in record["working"]],
            leverage=record["leverage"] or {},
            existing=None if existing is None else _OrderRow.from_record(existing),
        )

    def net(self, symbol: str) -> _Net | None:
        row = self.positions.get(symbol)
        if row is None:
            return None
        size = row.quantity if row.side == "long" else -row.quantity
        return _Net(size, row.entry_price, row.leverage)

    def nets(self) -> dict[str, _Net]:
        return {symbol: net for symbol in self.positions if (net := self.net(symbol))}

    def leverage_for(self, symbol: str) -> int:
        return self.leverage.get(symbol, DEFAULT_LEVERAGE)

    def unrealized(self, nets: Mapping[str, _Net]) -> Decimal:
        return sum(
            ((self.marks[symbol] - net.entry) * net.size for symbol, net in nets.items()),
            start=Decimal(0),
        )

    def position_margin(self, nets: Mapping[str, _Net]) -> Decimal:
        return sum(
            (abs(net.size) * self.marks[symbol] / net.leverage for symbol, net in nets.items()),
            start=Decimal(0),
        )

    def order_margin(self, excluding: _OrderRow | None = None) -> Decimal:
        """Initial margin held by resting limit orders that may increase exposure."""
        total = Decimal(0)
        for row in self.working:
            if row is excluding or row.status not in _WORKING:
                continue
            if row.type == OrderType.LIMIT and not row.reduce_only and row.price is not None:
                remaining = row.quantity - row.filled_quantity
                total += remaining * row.price / self.leverage_for(row.symbol)
        return total

    def available(
        self, nets: Mapping[str, _Net], wallet: Decimal, excluding: _OrderRow | None = None
    ) -> Decimal:
        """Margin left for new exposure: wallet + unrealised PnL - initial margin."""
        return (
            wallet
            + self.unrealized(nets)
            - self.position_margin(nets)
            - self.order_margin(excluding)
        )

    def store_position(self, symbol: str, net: _Net | None) -> None:
        """Make `net` the position on `symbol` (None: flat)."""
        row = self.positions.get(symbol)
        if net is None:
            self.positions.pop(symbol, None)
        elif row is None:
            self.positions[symbol] = _PositionRow(
                symbol, net.side, abs(net.size), net.entry, net.leverage
            )
        else:
            row.side, row.quantity = net.side, abs(net.size)
            row.entry_price, row.leverage = net.entry, net.leverage

    def copy(self) -> _Book:
        """The same state as a new book, with nothing changed since: no marks, no `existing`,
        rows of its own, amounts as the database stores them."""
        assert not self.placed and self.changes() is None  # the state as read or saved
        return self._at(self.version, self.now, self.working)

    def saved(self, now: datetime) -> _Book:
        """The state `save` wrote at `now`, as a new book at the version it moved to."""
        assert self.version is not None
        working = [row for row in (*self.working, *self.placed) if row.status in _WORKING]
        return self._at(self.version + 1, now, working)

    def _at(self, version: int | None, now: datetime, working: Iterable[_OrderRow]) -> _Book:
        return _Book(
            version=version,
            now=now,
            wallet=_money(self.wallet),
            positions={symbol: _stored(row) for symbol, row in self.positions.items()},
            working=sorted((_stored(row) for row in working), key=lambda r: (r.created_at, r.id)),
            leverage=dict(self.leverage),
        )

    def changes(self) -> _Changes | None:
        """What changed since the book was read; None when nothing did. Orders changed are
        stamped with the time the book was read until `save` stamps them with its own."""
        changed = [row for row in self.working if row != self._loaded_orders[row.id]]
        closed = [symbol for symbol in self._loaded_positions if symbol not in self.positions]
        positions = [
            row
            for symbol, row in self.positions.items()
            if row != self._loaded_positions.get(symbol)
        ]
        leverage = [
            {"symbol": symbol, "leverage": value}
            for symbol, value in self.leverage.items()
            if value != self._loaded_leverage.get(symbol)
        ]
        wallet = None if self.wallet == self._loaded_wallet else self.wallet
        if not (changed or closed or positions or leverage or self.placed) and wallet is None:
            return None
        for row in changed:
            row.updated_at = self.now
        return _Changes(wallet, closed, positions, list(self.placed), changed, leverage)

    async def save(self, conn: Connection, account_id: str, changes: _Changes) -> datetime | None:
        """Write `changes` in one autocommitted statement if the account is still at the
        version read, moving it to the next; the time it saved at, None when it did not. The
        orders placed and changed get their timestamps as stored (the statement's now())."""
        assert self.version is not None  # the account exists
        record = await conn.fetchrow(
            _SAVE,
            account_id,
            self.version,
            changes.wallet,
            changes.closed,
            changes.positions,
            changes.placed,
            changes.changed,
            changes.leverage,
        )
        assert record is not None  # the statement always returns its one row
        if not record["applied"]:
            return None
        now: datetime = record["now"]
        for row in changes.placed:
            row.created_at = row.updated_at = now
        for row in changes.changed:
            row.updated_at = now
        return now


# What `process_price` did to the orders it looked at: filled, canceled, rejected.
_Triggered = tuple[list[_OrderRow], list[_OrderRow], list[_OrderRow]]


@dataclass(frozen=True)
class _Changes:
    """What a writer changed in a book: the rows `_SAVE` writes."""

    wallet: Decimal | None  # None: unchanged
    closed: list[str]  # symbols of positions closed
    positions: list[_PositionRow]  # opened or changed
    placed: list[_OrderRow]
    changed: list[_OrderRow]
    leverage: list[dict[str, object]]


class PaperExchange(ExchangeAdapter):
    """A paper futures account; see the module docstring for what it simulates."""

    def __init__(
        self,
        pool: Pool,
        account_id: str,
        feed: PriceFeed,
        *,
        starting_balance: Decimal,
        taker_fee_rate: Decimal = Decimal("0.0004"),
        slippage_percent: Decimal = Decimal("0.05"),
    ) -> None:
        if not account_id or len(account_id) > 255:
            raise ValueError("account_id must be 1 to 255 characters")
        for label, value in (
            ("starting_balance", starting_balance),
            ("taker_fee_rate", taker_fee_rate),
            ("slippage_percent", slippage_percent),
        ):
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(f"{label} must be a Decimal >= 0, got {value!r}")
        self.account_id = account_id
        self._pool = pool
        self._feed = feed
        self._starting_balance = _money(starting_balance)
        self._fee_rate = taker_fee_rate
        self._slippage = slippage_percent / 100
        # The latest book this instance knows (see the module docstring): the state it last
        # saved, or one it read; `_known_read_at` is when that read was sent (monotonic
        # clock), None when it is the state this instance saved.
        self._known: _Book | None = None
        self._known_read_at: float | None = None

    @property
    def name(self) -> str:
        return EXCHANGE_NAME

    # ----------------------------------------------------------------------- markets, prices

    async def market(self, symbol: str) -> MarketInfo:
        return self._market(symbol)

    async def get_ticker_price(self, symbol: str) -> Decimal:
        self._market(symbol)
        return await self._feed.price(symbol)

    async def validate_credentials(self) -> bool:
        return True  # nothing to validate: the account is created on first use

    async def close(self) -> None:
        return None  # the pool and the feed belong to the caller

    # ----------------------------------------------------------------------- orders

    async def create_order(self, req: OrderRequest) -> Order:
        market = self._market(req.symbol)
        _check_shape(req, market)
        try:
            order, canceled = await self._place(req, market)
        except asyncpg.UniqueViolationError as exc:
            # Two placements with one client id both saved (cannot happen while every writer
            # goes through the version check: the second one's save applies nothing, and it
            # reads the first one's order and replays it); the unique constraint decided.
            if exc.constraint_name != _UNIQUE_CLIENT_ID:
                raise
            existing = await self._order_by_client_id(req.client_order_id)
            if existing is None:
                raise
            return existing
        self._log_order(order, canceled)
        return order

    async def cancel_order(
        self, symbol: str, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order:
        self._market(symbol)
        _one_id(order_id, client_order_id)
        which = f"id {order_id}" if order_id else f"client id {client_order_id}"
        not_found = f"no {symbol} order with {which} on this paper account"
        id_: uuid.UUID | None = None
        if order_id is not None:
            try:
                id_ = uuid.UUID(order_id)
            except ValueError:
                raise OrderNotFound(not_found) from None  # not an id this exchange issued

        async def cancel(book: _Book) -> tuple[_OrderRow, bool]:
            row = book.existing
            if row is None or row.symbol != symbol:
                raise OrderNotFound(not_found)
            if row.status not in _WORKING:
                return row, False
            # Read in the same snapshot as the book: the working order is in it.
            [working] = [r for r in book.working if r.id == row.id]
            working.status = OrderStatus.CANCELED.value
            return working, True

        row, canceled = await self._write(cancel, client_order_id=client_order_id, order_id=id_)
        if canceled:
            log.info("paper_order_canceled", account_id=self.account_id, order_id=str(row.id))
        return _to_order(row)

    async def get_order(
        self, symbol: str, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order | None:
        self._market(symbol)
        _one_id(order_id, client_order_id)
        async with self._pool.acquire() as conn:
            row = await self._find_order(conn, symbol, order_id, client_order_id)
        if self._known_read_at is not None:
            # The order was read now: no later read may answer from an older book.
            self._known_read_at = float("-inf")
        return None if row is None else _to_order(row)

    async def get_filled_orders(self, symbol: str, since: datetime) -> list[Order]:
        self._market(symbol)
        rows = await self._pool.fetch(_FILLED_SINCE, self.account_id, symbol, since)
        return [_to_order(_OrderRow.from_record(row)) for row in rows]

    async def get_open_orders(self, symbol: str | None = None) -> list[Order]:
        if symbol is not None:
            self._market(symbol)
        book = await self._read_book(marked=False)
        return [_to_order(row) for row in book.working if symbol is None or row.symbol == symbol]

    async def process_price(self, symbol: str, price: Decimal) -> list[Order]:
        """Fill this account's resting orders on `symbol` that `price` triggers or reaches;
        return the orders filled. Reduce-only orders with nothing left to reduce are
        canceled instead, and triggered orders the margin cannot cover are rejected."""
        market = self._market(symbol)
        if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
            raise ValueError(f"price must be a positive Decimal, got {price!r}")

        async def trigger(book: _Book) -> _Triggered:
            filled: list[_OrderRow] = []
            canceled: list[_OrderRow] = []
            rejected: list[_OrderRow] = []
            await self._mark(book, (symbol,), known={symbol: price})
            for row in [r for r in book.working if r.symbol == symbol]:
                if row.status not in _WORKING or not _triggered(row, price):
                    continue
                quantity = row.quantity - row.filled_quantity
                if row.reduce_only:
                    net = book.net(symbol)
                    if net is None or not _reduces(row.side, net):
                        row.status = OrderStatus.CANCELED.value
                        canceled.append(row)
                        continue
                    quantity = min(quantity, abs(net.size))
                    row.quantity = row.filled_quantity + quantity
                if row.type == OrderType.LIMIT:
                    assert row.price is not None
                    fill_price = row.price  # it rested on the book at that price
                else:
                    fill_price = self._taker_price(market, row.side, price)
                try:
                    self._fill(book, row, quantity, fill_price)
                except InsufficientFunds:
                    row.status = OrderStatus.REJECTED.value
                    rejected.append(row)
                    continue
                filled.append(row)
                canceled.extend(self._cancel_orphans(book, symbol))
            return filled, canceled, rejected

        filled, canceled, rejected = await self._write(trigger)
        orders = [_to_order(r) for r in filled]
        for order in orders:
            self._log_order(order, [], placed=False)
        for row in canceled:
            log.info("paper_order_canceled", account_id=self.account_id, order_id=str(row.id))
        for row in rejected:
            log.warning(
                "paper_order_rejected_at_trigger",
                account_id=self.account_id,
                order_id=str(row.id),
                reason="insufficient_margin",
            )
        return orders

    # ----------------------------------------------------------------------- account state

    async def get_positions(self) -> list[Position]:
        book = await self._read_book()
        return [self._position(book, symbol) for symbol in sorted(book.positions)]

    async def get_position(self, symbol: str) -> Position | None:
        self._market(symbol)
        book = await self._read_book()
        return self._position(book, symbol) if symbol in book.positions else None

    async def get_balances(self) -> list[Balance]:
        """One USDT balance: `total` is the margin balance (wallet + unrealised PnL, i.e. the
        equity), `locked` the initial margin of positions and resting orders, `free` what
        is left for new positions (never below 0)."""
        book = await self._read_book()
        nets = book.nets()
        total = _money(book.wallet + book.unrealized(nets))
        locked = _money(book.position_margin(nets) + book.order_margin())
        free = max(total - locked, Decimal(0))
        return [Balance(asset=QUOTE_ASSET, free=free, locked=locked, total=total)]

    async def get_equity(self) -> Decimal:
        book = await self._read_book()
        return _money(book.wallet + book.unrealized(book.nets()))

    async def get_wallet_balance(self) -> Decimal:
        """Deposits + realised PnL - fees, in USDT (paper-only; equity minus unrealised)."""
        book = await self._read_book(marked=False)
        return book.wallet

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        market = self._market(symbol)
        if isinstance(leverage, bool) or not isinstance(leverage, int):
            raise TypeError(f"leverage must be an int, got {type(leverage).__name__}")
        if not 1 <= leverage <= market.max_leverage:
            raise OrderRejected(
                f"leverage {leverage}x is not allowed for {symbol}:"
                f" choose 1 to {market.max_leverage}",
                code="invalid_leverage",
            )

        async def set_(book: _Book) -> None:
            if book.version is not None and book.leverage_for(symbol) == leverage:
                return  # usually unchanged: the one read
            await self._mark(book)
            previous = book.leverage_for(symbol)
            book.leverage[symbol] = leverage
            net = book.net(symbol)
            if net is not None and leverage < previous:
                nets = book.nets() | {symbol: replace(net, leverage=leverage)}
                available = book.available(nets, book.wallet)
                if available < 0:
                    raise InsufficientFunds(
                        f"lowering {symbol} leverage to {leverage}x needs"
                        f" {_shown(-available.quantize(Decimal('0.01')))} USDT more margin"
                        " than the account has available",
                        code="insufficient_margin",
                    )
            if symbol in book.positions:
                book.positions[symbol].leverage = leverage

        await self._write(set_)

    # ----------------------------------------------------------------------- internals

    def _market(self, symbol: str) -> MarketInfo:
        market = paper_market(symbol)
        if market is None:
            raise OrderRejected(
                f"unknown symbol {symbol!r}: the paper exchange lists {', '.join(PAPER_MARKETS)}",
                code="unknown_symbol",
            )
        return market

    async def _write(
        self,
        change: Callable[[_Book], Awaitable[_T]],
        *,
        client_order_id: str | None = None,
        order_id: uuid.UUID | None = None,
    ) -> _T:
        """Apply `change` to the account's book and save what it changed, optimistically:
        read the book (one statement, no lock), let `change` compute on it (it may raise,
        writing nothing), then save in one statement that applies only if nobody wrote the
        account since the read. When somebody did, read and compute again. A change of
        nothing writes nothing; the first write of an account creates it, then starts over.
        Returns what the `change` that was saved (or changed nothing) returned.

        When this instance knows a book already, `change` first computes on that one, whose
        `existing` is the working order with `client_order_id` or `order_id` (None when no
        working order has it): if it changes something and the save applies, that is the
        write, without a read. Anything else (the save does not apply, it changes nothing,
        it raises, a new order's client id is taken) counts for nothing: the book is dropped
        and the write goes the way above, so every outcome comes from a book either just read
        or confirmed current by the save."""
        async with self._pool.acquire() as conn:
            known = self._take_known(client_order_id, order_id)
            if known is not None and (saved := await self._write_known(conn, known, change)):
                return saved[0]
            for attempt in range(_WRITE_ATTEMPTS):
                if attempt > 1:  # lost twice: let the other writers through first
                    # Random jitter spreads the retries; it guards nothing.
                    await asyncio.sleep(random.uniform(0, 0.001 * attempt))  # noqa: S311  # nosec B311
                read_at = time.monotonic()
                book = await self._load_book(conn, client_order_id, order_id)
                result = await change(book)
                changes = book.changes()
                if changes is None:
                    if book.version is not None:
                        self._remember(book.copy(), read_at)
                    return result
                if book.version is None:  # a new account, unless another writer just made it
                    await conn.execute(_CREATE, self.account_id, self._starting_balance)
                    continue
                if await self._save(conn, book, changes):
                    return result
        raise RuntimeError(
            f"paper account {self.account_id!r}: gave up writing after {_WRITE_ATTEMPTS}"
            " attempts, other writers changed the account after each read of it"
        )

    async def _write_known(
        self, conn: Connection, book: _Book, change: Callable[[_Book], Awaitable[_T]]
    ) -> tuple[_T] | None:
        """`change` computed on the known `book` and saved: (what it returned,), or None
        when that was not the write (see `_write`)."""
        try:
            result = await change(book)
        except Exception:  # decided again on a book read now
            return None
        changes = book.changes()
        if changes is None:
            return None
        try:
            saved = await self._save(conn, book, changes)
        except asyncpg.UniqueViolationError as exc:
            # The client id is an order's that the book does not have (not a working one),
            # and the statement wrote nothing: a read finds that order, and replays it.
            if exc.constraint_name != _UNIQUE_CLIENT_ID:
                raise
            return None
        return (result,) if saved else None

    async def _save(self, conn: Connection, book: _Book, changes: _Changes) -> bool:
        """Save `changes` to `book` (see `_Book.save`); when that applies, remember the state
        saved. Whether it applied."""
        now = await book.save(conn, self.account_id, changes)
        if now is None:
            return False
        self._remember(book.saved(now), None)
        return True

    def _take_known(self, client_order_id: str | None, order_id: uuid.UUID | None) -> _Book | None:
        """The book this instance knows, for a write to compute on; it is no longer known (a
        write changes it, and a save that applies makes the next one)."""
        book, self._known, self._known_read_at = self._known, None, None
        if book is not None:
            book.existing = next(
                (
                    row
                    for row in book.working
                    if row.client_order_id == client_order_id or row.id == order_id
                ),
                None,
            )
        return book

    def _remember(self, book: _Book, read_at: float | None) -> None:
        """Know `book` (a copy nobody else holds), read at `read_at` or saved (None), unless
        a later version is known already."""
        known = self._known
        assert book.version is not None
        if known is None or known.version is None or book.version >= known.version:
            self._known, self._known_read_at = book, read_at

    async def _load_book(
        self,
        conn: Connection,
        client_order_id: str | None = None,
        order_id: uuid.UUID | None = None,
    ) -> _Book:
        """The account's book (without marks), with the order that has `client_order_id` or
        `order_id` as `existing`."""
        record = await conn.fetchrow(_BOOK, self.account_id, client_order_id, order_id)
        assert record is not None  # the query always returns its one row
        return _Book.from_record(record, self._starting_balance)

    async def _read_book(self, *, marked: bool = True) -> _Book:
        """The book with every position's mark (unless not `marked`), read in one statement
        and without a lock; or, when this instance read it less than `_READ_REUSE` ago and
        has saved nothing since, that book again."""
        known, read_at = self._known, self._known_read_at
        if known is not None and read_at is not None and time.monotonic() < read_at + _READ_REUSE:
            book = known.copy()
        else:
            read_at = time.monotonic()
            async with self._pool.acquire() as conn:
                book = await self._load_book(conn)
            if book.version is not None:
                self._remember(book.copy(), read_at)
        if marked:
            await self._mark(book)
        return book

    async def _mark(
        self,
        book: _Book,
        symbols: Iterable[str] = (),
        known: Mapping[str, Decimal] | None = None,
    ) -> None:
        """Fetch the mark price of every position and of `symbols`, unless `known`."""
        for symbol in sorted(set(symbols) | set(book.positions)):
            price = (known or {}).get(symbol)
            book.marks[symbol] = price if price is not None else await self._feed.price(symbol)

    async def _place(self, req: OrderRequest, market: MarketInfo) -> tuple[Order, list[_OrderRow]]:
        """Create the order in one write; return it and the orders it canceled."""

        async def place(book: _Book) -> tuple[_OrderRow, list[_OrderRow], bool]:
            if book.existing is not None:
                return book.existing, [], True

            await self._mark(book, (req.symbol,))
            mark = book.marks[req.symbol]
            net = book.net(req.symbol)
            _check_against_market(req, market, mark, net)

            fill_price = self._immediate_fill_price(req, market, mark)
            quantity = req.quantity
            if req.reduce_only and fill_price is not None:
                # Filling now: no more than the position. (Resting reduce-only orders keep
                # their size and are capped when they fill.)
                assert net is not None  # _check_against_market refused the order otherwise
                quantity = min(quantity, abs(net.size))
            row = _OrderRow(
                id=uuid.uuid4(),
                client_order_id=req.client_order_id,
                symbol=req.symbol,
                side=req.side.value,
                type=req.type.value,
                status=OrderStatus.OPEN.value,
                quantity=quantity,
                filled_quantity=Decimal(0),
                avg_fill_price=None,
                price=req.price,
                stop_price=req.stop_price,
                reduce_only=req.reduce_only,
                fee=Decimal(0),
                realized_pnl=Decimal(0),
                created_at=book.now,  # written as is
                updated_at=book.now,
            )
            canceled: list[_OrderRow] = []
            if fill_price is not None:
                self._fill(book, row, quantity, fill_price)
                canceled = self._cancel_orphans(book, req.symbol)
            else:
                self._check_resting_margin(book, row)
            book.placed.append(row)
            return row, canceled, False

        row, canceled, replayed = await self._write(place, client_order_id=req.client_order_id)
        if replayed:
            log.info(
                "paper_order_replayed",
                account_id=self.account_id,
                client_order_id=req.client_order_id,
                order_id=str(row.id),
            )
        return _to_order(row), canceled

    def _immediate_fill_price(
        self, req: OrderRequest, market: MarketInfo, mark: Decimal
    ) -> Decimal | None:
        """The price the order fills at now, or None when it rests."""
        if req.type == OrderType.MARKET:
            return self._taker_price(market, req.side, mark)
        if req.type == OrderType.LIMIT:
            assert req.price is not None
            taker = self._taker_price(market, req.side, mark)
            if req.side == OrderSide.BUY and req.price >= mark:
                return min(req.price, taker)
            if req.side == OrderSide.SELL and req.price <= mark:
                return max(req.price, taker)
        return None

    def _taker_price(self, market: MarketInfo, side: str, reference: Decimal) -> Decimal:
        """`reference` moved by the slippage against the taker, on the tick, rounded against
        the taker too."""
        if side == OrderSide.BUY:
            return market.ceil_price(reference * (1 + self._slippage))
        return max(market.floor_price(reference * (1 - self._slippage)), market.price_step)

    def _check_resting_margin(self, book: _Book, row: _OrderRow) -> None:
        if row.type != OrderType.LIMIT or row.reduce_only:
            return
        assert row.price is not None
        leverage = book.leverage_for(row.symbol)
        needed = row.quantity * row.price / leverage
        available = book.available(book.nets(), book.wallet)
        if needed > available:
            raise InsufficientFunds(
                _margin_reason(row, row.quantity, row.price, leverage, needed, available),
                code="insufficient_margin",
            )

    def _fill(self, book: _Book, row: _OrderRow, quantity: Decimal, price: Decimal) -> None:
        """Fill `quantity` of `row` at `price`: position, wallet and order updated together.
        Raises InsufficientFunds, changing nothing, when the margin does not cover it."""
        symbol = row.symbol
        leverage = book.leverage_for(symbol)
        fill = _apply_fill(book.net(symbol), _signed(row.side, quantity), price, leverage)
        fee = _money(quantity * price * self._fee_rate)
        wallet = book.wallet + fill.realized - fee
        if fill.opened > 0:
            nets = book.nets()
            nets.pop(symbol, None)
            if fill.after is not None:
                nets[symbol] = fill.after
            available = book.available(nets, wallet, excluding=row)
            if available < 0:
                mark = book.marks[symbol]
                needed = fill.opened * mark / leverage
                raise InsufficientFunds(
                    _margin_reason(row, fill.opened, mark, leverage, needed, available + needed),
                    code="insufficient_margin",
                )

        book.wallet = _money(wallet)
        book.store_position(symbol, fill.after)
        row.status = OrderStatus.FILLED.value
        row.filled_quantity += quantity
        row.avg_fill_price = price
        row.fee += fee
        row.realized_pnl += fill.realized

    def _cancel_orphans(self, book: _Book, symbol: str) -> list[_OrderRow]:
        """Cancel working reduce-only orders of `symbol` that have nothing left to reduce."""
        net = book.net(symbol)
        orphans = [
            row
            for row in book.working
            if row.symbol == symbol
            and row.reduce_only
            and row.status in _WORKING
            and not _reduces(row.side, net)
        ]
        for row in orphans:
            row.status = OrderStatus.CANCELED.value
        return orphans

    async def _find_order(
        self,
        conn: Connection,
        symbol: str,
        order_id: str | None,
        client_order_id: str | None,
    ) -> _OrderRow | None:
        if order_id is not None:
            try:
                id_ = uuid.UUID(order_id)
            except ValueError:
                return None  # not an id this exchange ever issued
            record = await conn.fetchrow(_ORDER_BY_ID, self.account_id, id_)
        else:
            record = await conn.fetchrow(_ORDER_BY_CLIENT_ID, self.account_id, client_order_id)
        if record is None or record["symbol"] != symbol:
            return None
        return _OrderRow.from_record(record)

    async def _order_by_client_id(self, client_order_id: str) -> Order | None:
        record = await self._pool.fetchrow(_ORDER_BY_CLIENT_ID, self.account_id, client_order_id)
        return None if record is None else _to_order(_OrderRow.from_record(record))

    def _position(self, book: _Book, symbol: str) -> Position:
        net = book.net(symbol)
        assert net is not None
        mark = book.marks[symbol]
        return Position(
            symbol=symbol,
            side=net.side,
            quantity=abs(net.size),
            entry_price=net.entry,
            mark_price=mark,
            unrealized_pnl=_money((mark - net.entry) * net.size),
            leverage=net.leverage,
            liquidation_price=None,  # no liquidation engine
            margin=_money(abs(net.size) * mark / net.leverage),
        )

    def _log_order(self, order: Order, canceled: list[_OrderRow], *, placed: bool = True) -> None:
        """Log a fill or a placement. Orders placed through `create_order` are logged at debug
        level: their caller has the result and logs it (the executor writes `order_placed`);
        fills of resting orders happen here alone and are logged at info."""
        write = log.debug if placed else log.info
        write(
            "paper_order_filled" if order.status == OrderStatus.FILLED else "paper_order_placed",
            account_id=self.account_id,
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side.value,
            type=order.type.value,
            quantity=order.quantity,
            avg_fill_price=order.avg_fill_price,
            fee=order.fee,
            realized_pnl=order.realized_pnl,
        )
        for row in canceled:
            log.info("paper_order_canceled", account_id=self.account_id, order_id=str(row.id))


# --------------------------------------------------------------------------- validation


def _one_id(order_id: str | None, client_order_id: str | None) -> None:
    if (order_id is None) == (client_order_id is None):
        raise ValueError("pass exactly one of order_id and client_order_id")


def _reject(reason: str, code: str) -> OrderRejected:
    return OrderRejected(reason, code=code)


def _check_shape(req: OrderRequest, market: MarketInfo) -> None:
    """Checks that need no price and no account state."""
    symbol = market.symbol
    if not _CLIENT_ORDER_ID.match(req.client_order_id):
        raise _reject(
            f"client order id {req.client_order_id!r} must be 1 to 36 characters of"
            " letters, digits and . : / _ -",
            "invalid_client_order_id",
        )
    if req.quantity <= 0:
        raise _reject(f"quantity must be positive, got {_shown(req.quantity)}", "invalid_quantity")
    if req.quantity < market.min_amount:
        raise _reject(
            f"quantity {_shown(req.quantity)} is below the minimum"
            f" {_shown(market.min_amount)} for {symbol}",
            "quantity_below_minimum",
        )
    if not market.is_amount_on_step(req.quantity):
        raise _reject(
            f"quantity {_shown(req.quantity)} is not a multiple of {symbol}'s step"
            f" {_shown(market.amount_step)}",
            "invalid_quantity_step",
        )
    if req.type == OrderType.LIMIT:
        if req.price is None:
            raise _reject("a limit order needs a price", "missing_price")
    elif req.price is not None:
        raise _reject(f"a {req.type.value} order takes no limit price", "unexpected_price")
    if req.type in _TRIGGER_TYPES:
        if req.stop_price is None:
            raise _reject(f"a {req.type.value} order needs a stop_price", "missing_stop_price")
    elif req.stop_price is not None:
        raise _reject(f"a {req.type.value} order takes no stop_price", "unexpected_stop_price")
    for label, price in (("price", req.price), ("stop_price", req.stop_price)):
        if price is None:
            continue
        if price <= 0:
            raise _reject(f"{label} must be positive, got {_shown(price)}", "invalid_price")
        if not market.is_price_on_step(price):
            raise _reject(
                f"{label} {_shown(price)} is not a multiple of {symbol}'s tick"
                f" {_shown(market.price_step)}",
                "invalid_price_step",
            )


def _check_against_market(
    req: OrderRequest, market: MarketInfo, mark: Decimal, net: _Net | None
) -> None:
    """Checks that need the current price or the position."""
    symbol = market.symbol
    if req.reduce_only:
        if net is None:
            raise _reject(
                f"reduce-only order would open a position: there is no {symbol} position",
                "reduce_only_rejected",
            )
        if not _reduces(req.side, net):
            raise _reject(
                f"reduce-only {req.side.value} would increase the {net.side} {symbol} position",
                "reduce_only_rejected",
            )
    else:
        reference = req.price or req.stop_price or mark
        notional = req.quantity * reference
        if notional < market.min_notional:
            raise _reject(
                f"order value {_shown(notional.quantize(Decimal('0.01')))} USDT"
                f" ({_shown(req.quantity)} x {_shown(reference)}) is below the minimum"
                f" {_shown(market.min_notional)} USDT for {symbol}",
                "notional_below_minimum",
            )
    if req.type in _TRIGGER_TYPES:
        assert req.stop_price is not None
        buy = req.side == OrderSide.BUY
        if req.type == OrderType.STOP_MARKET:
            immediate = mark >= req.stop_price if buy else mark <= req.stop_price
            where = "above" if buy else "below"
        else:
            immediate = mark <= req.stop_price if buy else mark >= req.stop_price
            where = "below" if buy else "above"
        if immediate:
            raise _reject(
                f"a {req.side.value} {req.type.value} at {_shown(req.stop_price)} would trigger"
                f" immediately: {symbol} is at {_shown(mark)}, the trigger must be {where} it",
                "would_immediately_trigger",
            )


def _margin_reason(
    row: _OrderRow,
    quantity: Decimal,
    price: Decimal,
    leverage: int,
    needed: Decimal,
    available: Decimal,
) -> str:
    cent = Decimal("0.01")
    return (
        f"insufficient margin: {row.side} {_shown(quantity)} {row.symbol} at {_shown(price)}"
        f" needs {_shown(needed.quantize(cent))} USDT at {leverage}x leverage, but only"
        f" {_shown(available.quantize(cent))} USDT is available"
    )


# --------------------------------------------------------------------------- trigger worker


@dataclass(frozen=True)
class TriggeredFill:
    """An order `process_all_accounts` filled, and the account it belongs to."""

    account_id: str
    order: Order

    @property
    def symbol(self) -> str:
        return self.order.symbol


async def process_all_accounts(
    pool: Pool,
    feed: PriceFeed,
    *,
    taker_fee_rate: Decimal = Decimal("0.0004"),
    slippage_percent: Decimal = Decimal("0.05"),
) -> list[TriggeredFill]:
    """Check every account's resting orders against the feed's current prices (one price
    per symbol for all accounts); return the orders filled, by account and symbol.

    A failure on one account or symbol is logged and does not stop the others.
    """
    pairs = [(r["account_id"], r["symbol"]) for r in await pool.fetch(_WORKING_PAIRS)]
    prices: dict[str, Decimal] = {}
    for symbol in sorted({symbol for _, symbol in pairs}):
        try:
            prices[symbol] = await feed.price(symbol)
        except Exception:
            log.exception("paper_trigger_price_failed", symbol=symbol)
    filled: list[TriggeredFill] = []
    for account_id, symbol in pairs:
        if symbol not in prices:
            continue
        # The account exists (it has orders), so the starting balance is never used.
        exchange = PaperExchange(
            pool,
            account_id,
            feed,
            starting_balance=Decimal(0),
            taker_fee_rate=taker_fee_rate,
            slippage_percent=slippage_percent,
        )
        try:
            orders = await exchange.process_price(symbol, prices[symbol])
        except Exception:
            log.exception("paper_trigger_failed", account_id=account_id, symbol=symbol)
            continue
        filled.extend(TriggeredFill(account_id, order) for order in orders)
    return filled
