"""The exchange adapter contract, one suite run unchanged against every venue: the paper
exchange on the test database, and the Binance and Bybit adapters driving the real ccxt
clients against the local servers that speak those exchanges' REST protocols.

The assertions are what the executor relies on, stated without venue-specific numbers: fills
and their fees and realised PnL agree with each other, positions follow the fills, resting
orders wait for the market, refusals come before anything is sent, and every amount is a
Decimal. Venue-specific behaviour (hedge mode, key permissions, faults) is tested in
`test_live_adapters.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.core.pg import Pool
from app.exchanges.base import (
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
)
from app.exchanges.errors import InsufficientFunds, OrderNotFound, OrderRejected
from app.exchanges.price_feed import ManualPriceFeed, base_price
from app.exchanges.symbols import PAPER_MARKETS
from tests.exchange_sim.binance_futures import BinanceFuturesServer
from tests.exchange_sim.bybit_v5 import BybitV5Server
from tests.support.venues import (
    START_BALANCE,
    VENUES,
    Venue,
    binance_venue,
    bybit_venue,
    close_venue,
    paper_venue,
    reset_prices,
)

pytest_plugins = ("tests.support.live",)  # the emulators

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
BTC, ETH = "BTCUSDT", "ETHUSDT"
# Market fills may slip; none of the venues here slips by more than this.
SLIP = D("0.01")


@pytest.fixture
def feed() -> ManualPriceFeed:
    return ManualPriceFeed()


@pytest.fixture(params=VENUES)
async def venue(
    request: pytest.FixtureRequest,
    pg_pool: Pool,
    feed: ManualPriceFeed,
    binance_server: BinanceFuturesServer,
    bybit_server: BybitV5Server,
) -> AsyncIterator[Venue]:
    """A fresh account on one venue, every market at its base price."""
    reset_prices(feed, binance_server, bybit_server)
    if request.param == "paper":
        made = await paper_venue(pg_pool, feed)
    elif request.param == "binance":
        made = binance_venue(binance_server)
    else:
        made = bybit_venue(bybit_server)
    try:
        yield made
    finally:
        await close_venue(made)


def cid() -> str:
    return f"ct{uuid.uuid4().hex[:24]}"


def market_order(side: OrderSide, quantity: str, *, symbol: str = BTC, reduce_only: bool = False,
                 client_order_id: str | None = None) -> OrderRequest:  # fmt: skip
    return OrderRequest(
        symbol=symbol,
        side=side,
        type=OrderType.MARKET,
        quantity=D(quantity),
        client_order_id=client_order_id or cid(),
        reduce_only=reduce_only,
    )


def trigger_order(kind: OrderType, side: OrderSide, quantity: str, stop: str, *,
                  symbol: str = BTC) -> OrderRequest:  # fmt: skip
    return OrderRequest(
        symbol=symbol,
        side=side,
        type=kind,
        quantity=D(quantity),
        client_order_id=cid(),
        stop_price=D(stop),
        reduce_only=True,
    )


def near(price: Decimal | None, reference: Decimal) -> bool:
    assert price is not None
    return abs(price - reference) <= reference * SLIP


def assert_decimals(order: Order) -> None:
    for name in ("quantity", "filled_quantity", "fee", "realized_pnl"):
        assert isinstance(getattr(order, name), Decimal), name
    for name in ("avg_fill_price", "price", "stop_price"):
        value = getattr(order, name)
        assert value is None or isinstance(value, Decimal), name


async def open_long(venue: Venue, quantity: str = "0.01", symbol: str = BTC) -> Order:
    order = await venue.adapter.create_order(market_order(BUY, quantity, symbol=symbol))
    assert order.status == OrderStatus.FILLED
    return order


# --------------------------------------------------------------------------- markets, prices
async def test_a_listed_market_has_the_trading_rules(venue: Venue) -> None:
    rules = await venue.adapter.market(BTC)
    listed = PAPER_MARKETS[BTC]  # every venue here lists the same rules
    assert (rules.symbol, rules.base, rules.quote) == (BTC, "BTC", "USDT")
    assert rules.amount_step == listed.amount_step and rules.price_step == listed.price_step
    assert rules.min_amount == listed.min_amount and rules.min_notional == listed.min_notional
    assert rules.max_leverage >= 20


async def test_an_unlisted_symbol_is_refused_by_name(venue: Venue) -> None:
    before = await venue.order_requests()
    with pytest.raises(OrderRejected) as refused:
        await venue.adapter.market("NOPEUSDT")
    assert refused.value.code == "unknown_symbol"
    with pytest.raises(OrderRejected) as refused:
        await venue.adapter.create_order(market_order(BUY, "1", symbol="NOPEUSDT"))
    assert refused.value.code == "unknown_symbol" and "NOPEUSDT" in refused.value.reason
    assert await venue.order_requests() == before


async def test_the_ticker_shows_the_market_price(venue: Venue) -> None:
    await venue.move_price(ETH, D("3456.78"))
    price = await venue.adapter.get_ticker_price(ETH)
    assert price == D("3456.78") and isinstance(price, Decimal)


# --------------------------------------------------------------------------- market orders
async def test_a_market_buy_fills_and_opens_a_long(venue: Venue) -> None:
    order = await open_long(venue)
    assert_decimals(order)
    assert order.symbol == BTC and order.side == BUY and order.type == OrderType.MARKET
    assert order.quantity == order.filled_quantity == D("0.01")
    assert near(order.avg_fill_price, base_price(BTC))
    assert order.fee > 0 and order.fee_currency == "USDT" and order.realized_pnl == 0
    assert not order.reduce_only and not order.is_open

    position = await venue.adapter.get_position(BTC)
    assert position is not None
    assert (position.symbol, position.side, position.quantity) == (BTC, "long", D("0.01"))
    assert position.entry_price == order.avg_fill_price
    assert position.unrealized_pnl is not None and position.mark_price is not None
    assert position.unrealized_pnl == (position.mark_price - position.entry_price) * D("0.01")
    equity = await venue.adapter.get_equity()
    assert equity == START_BALANCE - order.fee + position.unrealized_pnl
    [usdt] = [b for b in await venue.adapter.get_balances() if b.asset == "USDT"]
    assert usdt.total == equity and usdt.locked > 0 and usdt.free == usdt.total - usdt.locked


async def test_a_fresh_account_holds_its_deposit_and_nothing_else(venue: Venue) -> None:
    assert await venue.adapter.get_positions() == []
    assert await venue.adapter.get_position(BTC) is None
    assert await venue.adapter.get_open_orders() == []
    assert await venue.adapter.get_equity() == START_BALANCE
    assert await venue.adapter.validate_credentials() is True


async def test_create_order_is_idempotent_on_the_client_id(venue: Venue) -> None:
    request = market_order(BUY, "0.01")
    before = await venue.order_requests()
    first = await venue.adapter.create_order(request)
    again = await venue.adapter.create_order(request)
    assert again.order_id == first.order_id and again.client_order_id == request.client_order_id
    assert await venue.order_requests() == before + 1
    position = await venue.adapter.get_position(BTC)
    assert position is not None and position.quantity == D("0.01")


async def test_an_order_is_found_by_either_id(venue: Venue) -> None:
    placed = await open_long(venue)
    by_client = await venue.adapter.get_order(BTC, client_order_id=placed.client_order_id)
    by_id = await venue.adapter.get_order(BTC, order_id=placed.order_id)
    assert by_client is not None and by_id is not None
    assert by_client.order_id == by_id.order_id == placed.order_id
    assert by_client.filled_quantity == placed.filled_quantity
    assert by_client.avg_fill_price == placed.avg_fill_price
    assert await venue.adapter.get_order(BTC, client_order_id=cid()) is None


async def test_positions_of_every_symbol_are_listed(venue: Venue) -> None:
    await open_long(venue)
    await venue.adapter.create_order(market_order(SELL, "0.1", symbol=ETH))
    positions = {p.symbol: (p.side, p.quantity) for p in await venue.adapter.get_positions()}
    assert positions == {BTC: ("long", D("0.01")), ETH: ("short", D("0.1"))}


async def test_a_reduce_only_close_realises_the_price_move(venue: Venue) -> None:
    entry = await open_long(venue)
    await venue.move_price(BTC, D("66000"))
    close = await venue.adapter.create_order(market_order(SELL, "0.01", reduce_only=True))
    assert close.status == OrderStatus.FILLED and close.reduce_only
    assert close.avg_fill_price is not None and entry.avg_fill_price is not None
    assert near(close.avg_fill_price, D("66000"))
    assert close.realized_pnl == (close.avg_fill_price - entry.avg_fill_price) * D("0.01")
    assert await venue.adapter.get_position(BTC) is None
    [usdt] = [b for b in await venue.adapter.get_balances() if b.asset == "USDT"]
    assert usdt.total == START_BALANCE + close.realized_pnl - entry.fee - close.fee


async def test_leverage_applies_to_the_next_position(venue: Venue) -> None:
    await venue.adapter.set_leverage(BTC, 5)
    await venue.adapter.set_leverage(BTC, 5)  # setting what it already is is no error
    entry = await open_long(venue)
    position = await venue.adapter.get_position(BTC)
    assert position is not None and position.leverage == 5
    assert position.margin is not None and entry.avg_fill_price is not None
    assert near(position.margin, entry.avg_fill_price * D("0.01") / 5)


# --------------------------------------------------------------------------- refusals
async def test_orders_under_the_minimums_are_refused_before_anything_is_sent(
    venue: Venue,
) -> None:
    before = await venue.order_requests()
    with pytest.raises(OrderRejected) as tiny:
        await venue.adapter.create_order(market_order(BUY, "0.0004"))
    assert tiny.value.code == "quantity_below_minimum"
    assert "0.001" in tiny.value.reason  # the minimum, in the user's terms
    with pytest.raises(OrderRejected) as small:
        await venue.adapter.create_order(market_order(BUY, "0.001"))  # 65 USDT < 100
    assert small.value.code == "notional_below_minimum" and "100" in small.value.reason
    assert await venue.order_requests() == before
    assert await venue.adapter.get_position(BTC) is None


async def test_a_reduce_only_order_without_a_position_is_refused(venue: Venue) -> None:
    with pytest.raises(OrderRejected) as refused:
        await venue.adapter.create_order(market_order(SELL, "0.01", reduce_only=True))
    assert not isinstance(refused.value, InsufficientFunds)
    assert await venue.adapter.get_position(BTC) is None


async def test_an_order_beyond_the_margin_is_insufficient_funds(venue: Venue) -> None:
    await venue.adapter.set_leverage(BTC, 1)
    with pytest.raises(InsufficientFunds):
        await venue.adapter.create_order(market_order(BUY, "1"))  # 65,000 USDT on 10,000
    assert await venue.adapter.get_position(BTC) is None


async def test_a_stop_the_market_already_crossed_is_refused(venue: Venue) -> None:
    await open_long(venue)
    with pytest.raises(OrderRejected):
        await venue.adapter.create_order(
            trigger_order(OrderType.STOP_MARKET, SELL, "0.01", "66000")  # above the market
        )
    assert await venue.adapter.get_open_orders(BTC) == []


# --------------------------------------------------------------------------- resting orders
async def test_a_stop_loss_rests_until_crossed_then_closes_with_the_loss(venue: Venue) -> None:
    entry = await open_long(venue)
    stop = await venue.adapter.create_order(
        trigger_order(OrderType.STOP_MARKET, SELL, "0.01", "60000")
    )
    assert_decimals(stop)
    assert stop.status == OrderStatus.OPEN and stop.is_open and stop.reduce_only
    assert stop.type == OrderType.STOP_MARKET and stop.stop_price == D("60000")
    assert [o.order_id for o in await venue.adapter.get_open_orders(BTC)] == [stop.order_id]

    await venue.move_price(BTC, D("60500"))
    resting = await venue.adapter.get_order(BTC, client_order_id=stop.client_order_id)
    assert resting is not None and resting.status == OrderStatus.OPEN

    await venue.move_price(BTC, D("59900"))  # through the trigger
    done = await venue.adapter.get_order(BTC, client_order_id=stop.client_order_id)
    assert done is not None and done.order_id == stop.order_id
    assert done.status == OrderStatus.FILLED and done.filled_quantity == D("0.01")
    assert done.type == OrderType.STOP_MARKET
    assert done.avg_fill_price is not None and entry.avg_fill_price is not None
    assert near(done.avg_fill_price, D("59900"))
    assert done.realized_pnl == (done.avg_fill_price - entry.avg_fill_price) * D("0.01")
    assert done.realized_pnl < 0 and done.fee > 0
    assert await venue.adapter.get_position(BTC) is None
    assert await venue.adapter.get_open_orders(BTC) == []


async def test_a_take_profit_closes_a_short_with_the_gain(venue: Venue) -> None:
    entry = await venue.adapter.create_order(market_order(SELL, "0.1", symbol=ETH))
    take = await venue.adapter.create_order(
        trigger_order(OrderType.TAKE_PROFIT_MARKET, BUY, "0.1", "3300", symbol=ETH)
    )
    assert take.status == OrderStatus.OPEN and take.type == OrderType.TAKE_PROFIT_MARKET
    await venue.move_price(ETH, D("3400"))
    assert (await venue.adapter.get_position(ETH)) is not None

    await venue.move_price(ETH, D("3290"))
    done = await venue.adapter.get_order(ETH, order_id=take.order_id)
    assert done is not None and done.status == OrderStatus.FILLED
    assert done.avg_fill_price is not None and entry.avg_fill_price is not None
    assert done.realized_pnl == (entry.avg_fill_price - done.avg_fill_price) * D("0.1")
    assert done.realized_pnl > 0
    assert await venue.adapter.get_position(ETH) is None


async def test_a_limit_order_rests_then_fills_at_its_price(venue: Venue) -> None:
    limit = await venue.adapter.create_order(
        OrderRequest(symbol=BTC, side=BUY, type=OrderType.LIMIT, quantity=D("0.01"),
                     client_order_id=cid(), price=D("64000"))
    )  # fmt: skip
    assert limit.status == OrderStatus.OPEN and limit.price == D("64000")
    assert limit.filled_quantity == 0 and limit.type == OrderType.LIMIT
    await venue.move_price(BTC, D("63900"))
    done = await venue.adapter.get_order(BTC, order_id=limit.order_id)
    assert done is not None and done.status == OrderStatus.FILLED
    assert done.avg_fill_price == D("64000") and done.filled_quantity == D("0.01")
    position = await venue.adapter.get_position(BTC)
    assert position is not None and position.entry_price == D("64000")


async def test_cancel_ends_a_resting_order_once(venue: Venue) -> None:
    await open_long(venue)
    stop = await venue.adapter.create_order(
        trigger_order(OrderType.STOP_MARKET, SELL, "0.01", "60000")
    )
    canceled = await venue.adapter.cancel_order(BTC, order_id=stop.order_id)
    assert canceled.order_id == stop.order_id and canceled.status == OrderStatus.CANCELED
    assert await venue.adapter.get_open_orders(BTC) == []
    again = await venue.adapter.cancel_order(BTC, client_order_id=stop.client_order_id)
    assert again.status == OrderStatus.CANCELED  # no longer open: returned unchanged
    with pytest.raises(OrderNotFound):
        await venue.adapter.cancel_order(BTC, client_order_id=cid())
    await venue.move_price(BTC, D("59000"))  # a canceled stop never fires
    position = await venue.adapter.get_position(BTC)
    assert position is not None and position.quantity == D("0.01")


# --------------------------------------------------------------------------- history
async def test_filled_orders_since_a_time_list_every_fill_of_the_symbol(venue: Venue) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    entry = await open_long(venue, "0.02")
    stop = await venue.adapter.create_order(
        trigger_order(OrderType.STOP_MARKET, SELL, "0.02", "60000")
    )
    await venue.adapter.create_order(market_order(SELL, "0.1", symbol=ETH))  # another symbol
    await venue.move_price(BTC, D("59900"))

    filled = await venue.adapter.get_filled_orders(BTC, since)
    assert [o.client_order_id for o in filled] == [entry.client_order_id, stop.client_order_id]
    first, last = filled
    assert first.filled_quantity == last.filled_quantity == D("0.02")
    assert first.avg_fill_price == entry.avg_fill_price and first.fee == entry.fee
    assert first.realized_pnl == 0 and last.reduce_only
    assert last.avg_fill_price is not None and entry.avg_fill_price is not None
    assert last.realized_pnl == (last.avg_fill_price - entry.avg_fill_price) * D("0.02")
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert await venue.adapter.get_filled_orders(BTC, later) == []
