"""The paper exchange against the real migrated PostgreSQL: fills, fees and slippage, net
positions and realised PnL, reduce-only, idempotency (also under concurrency), rejections,
margin, conditional orders, restarts, and the database round trips each call costs.

Prices come from a ManualPriceFeed; the default slippage is 0.05 % and the fee 0.04 %, so
a market buy at 65000 fills at 65032.5 and a market sell at 64000 fills at 63968.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from functools import partial

import pytest
from asyncpg.connection import LoggedQuery
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.database import create_sessionmaker
from app.core.pg import Pool, create_pool
from app.exchanges import paper
from app.exchanges.base import Balance, Order, OrderRequest, OrderSide, OrderStatus, OrderType
from app.exchanges.errors import (
    InsufficientFunds,
    OrderNotFound,
    OrderRejected,
)
from app.exchanges.paper import PaperExchange, process_all_accounts
from app.exchanges.price_feed import ManualPriceFeed
from app.exchanges.symbols import PAPER_MARKETS, canonical_symbol, split_symbol
from app.models import PaperAccount, PaperOrder, PaperPosition

D = Decimal
START = D("10000")
FEE_RATE = D("0.0004")
BUY, SELL = OrderSide.BUY, OrderSide.SELL

Sessionmaker = async_sessionmaker[AsyncSession]


@pytest.fixture
def sessionmaker(db_engine: AsyncEngine, clean_state: None) -> Sessionmaker:
    return create_sessionmaker(db_engine)


@pytest.fixture
def feed() -> ManualPriceFeed:
    return ManualPriceFeed({"BTCUSDT": D("65000"), "ETHUSDT": D("3500"), "SOLUSDT": D("150")})


@pytest.fixture
def pool(pg_pool: Pool, clean_state: None) -> Pool:
    return pg_pool


@pytest.fixture
def exchange(pool: Pool, feed: ManualPriceFeed) -> PaperExchange:
    return PaperExchange(pool, "user-1", feed, starting_balance=START)


def request(
    side: OrderSide,
    quantity: str,
    *,
    kind: OrderType = OrderType.MARKET,
    symbol: str = "BTCUSDT",
    price: str | None = None,
    stop: str | None = None,
    reduce_only: bool = False,
    client_order_id: str | None = None,
) -> OrderRequest:
    return OrderRequest(
        symbol=symbol,
        side=side,
        type=kind,
        quantity=D(quantity),
        client_order_id=client_order_id or f"t-{uuid.uuid4().hex[:16]}",
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
        reduce_only=reduce_only,
    )


def fee(quantity: str, price: str) -> Decimal:
    return D(quantity) * D(price) * FEE_RATE


async def count(sessionmaker: Sessionmaker, model: type[object]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def assert_books_balance(sessionmaker: Sessionmaker, account_id: str) -> None:
    """wallet = starting balance + sum of realised PnL - sum of fees, to the last unit."""
    async with sessionmaker() as session:
        wallet = await session.scalar(
            select(PaperAccount.wallet_balance).where(PaperAccount.account_id == account_id)
        )
        realized, fees = (
            await session.execute(
                select(func.sum(PaperOrder.realized_pnl), func.sum(PaperOrder.fee)).where(
                    PaperOrder.account_id == account_id
                )
            )
        ).one()
    assert wallet == START + (realized or 0) - (fees or 0)


# --------------------------------------------------------------------------- markets


async def test_markets_and_symbols(exchange: PaperExchange) -> None:
    btc = await exchange.market("BTCUSDT")
    assert (btc.base, btc.quote, btc.amount_step, btc.min_amount) == (
        "BTC",
        "USDT",
        D("0.001"),
        D("0.001"),
    )
    assert (btc.price_step, btc.max_leverage) == (D("0.1"), 125)
    assert len(PAPER_MARKETS) >= 10
    assert all(m.quote == "USDT" and m.min_notional > 0 for m in PAPER_MARKETS.values())
    assert exchange.name == "paper"
    assert await exchange.validate_credentials()

    with pytest.raises(OrderRejected) as unknown:
        await exchange.market("BTC/USDT")
    assert unknown.value.code == "unknown_symbol"

    for raw in (
        "BTCUSDT",
        "BINANCE:BTCUSDT",
        "btcusdt.p",
        "BTC/USDT:USDT",
        "BTC-USDT",
        "BTCUSDTPERP",
    ):
        assert canonical_symbol(raw) == "BTCUSDT"
    assert split_symbol("1000PEPEUSDT") == ("1000PEPE", "USDT")
    assert split_symbol("BTCUSDC") == ("BTC", "USDC")
    with pytest.raises(ValueError, match="not a trading symbol"):
        canonical_symbol("BTC USDT!")


async def test_ticker_price_comes_from_the_feed(
    exchange: PaperExchange, feed: ManualPriceFeed
) -> None:
    assert await exchange.get_ticker_price("BTCUSDT") == D("65000")
    feed.set("BTCUSDT", D("65100.1"))
    assert await exchange.get_ticker_price("BTCUSDT") == D("65100.1")


# --------------------------------------------------------------------------- fills and positions


async def test_market_buy_opens_a_long_with_slippage_and_fee(
    exchange: PaperExchange, sessionmaker: Sessionmaker
) -> None:
    await exchange.set_leverage("BTCUSDT", 5)

    order = await exchange.create_order(request(BUY, "0.1"))

    assert order.status == OrderStatus.FILLED
    assert (order.quantity, order.filled_quantity) == (D("0.1"), D("0.1"))
    assert order.avg_fill_price == D("65032.5")  # 65000 + 0.05 %
    assert order.fee == fee("0.1", "65032.5") == D("2.6013")
    assert order.fee_currency == "USDT"
    assert order.realized_pnl == 0
    assert not order.is_open

    position = await exchange.get_position("BTCUSDT")
    assert position is not None
    assert (position.side, position.quantity, position.entry_price) == (
        "long",
        D("0.1"),
        D("65032.5"),
    )
    assert position.mark_price == D("65000")
    assert position.unrealized_pnl == D("-3.25")  # the slippage, marked to market
    assert position.leverage == 5
    assert position.margin == D("1300")  # 0.1 x 65000 / 5
    assert await exchange.get_wallet_balance() == START - D("2.6013")
    await assert_books_balance(sessionmaker, "user-1")


async def test_market_sell_opens_a_short_at_a_lower_price(exchange: PaperExchange) -> None:
    order = await exchange.create_order(request(SELL, "10", symbol="SOLUSDT"))

    assert order.avg_fill_price == D("149.92")  # 150 - 0.05 %, rounded down to the tick
    position = await exchange.get_position("SOLUSDT")
    assert position is not None
    assert (position.side, position.quantity, position.entry_price) == (
        "short",
        D("10"),
        D("149.92"),
    )


async def test_adding_to_a_position_averages_the_entry(
    exchange: PaperExchange, feed: ManualPriceFeed
) -> None:
    await exchange.set_leverage("BTCUSDT", 10)
    await exchange.create_order(request(BUY, "0.1"))
    feed.set("BTCUSDT", D("66000"))

    added = await exchange.create_order(request(BUY, "0.3"))

    assert added.avg_fill_price == D("66033")
    assert added.realized_pnl == 0
    position = await exchange.get_position("BTCUSDT")
    assert position is not None
    assert position.quantity == D("0.4")
    # (0.1 x 65032.5 + 0.3 x 66033) / 0.4
    assert position.entry_price == D("65782.875")


async def test_a_partial_reduce_realises_pnl_in_proportion(
    exchange: PaperExchange, feed: ManualPriceFeed, sessionmaker: Sessionmaker
) -> None:
    await exchange.set_leverage("BTCUSDT", 10)
    await exchange.create_order(request(BUY, "0.2"))
    feed.set("BTCUSDT", D("70000"))

    reduce = await exchange.create_order(request(SELL, "0.05"))

    assert reduce.avg_fill_price == D("69965")
    assert reduce.realized_pnl == (D("69965") - D("65032.5")) * D("0.05") == D("246.625")
    assert reduce.fee == fee("0.05", "69965")
    position = await exchange.get_position("BTCUSDT")
    assert position is not None
    assert (position.side, position.quantity, position.entry_price) == (
        "long",
        D("0.15"),
        D("65032.5"),
    )
    wallet = START - fee("0.2", "65032.5") - fee("0.05", "69965") + D("246.625")
    assert await exchange.get_wallet_balance() == wallet
    await assert_books_balance(sessionmaker, "user-1")


async def test_a_sell_bigger_than_the_long_flips_to_a_short(
    exchange: PaperExchange, feed: ManualPriceFeed, sessionmaker: Sessionmaker
) -> None:
    await exchange.set_leverage("BTCUSDT", 10)
    await exchange.create_order(request(BUY, "0.1"))
    feed.set("BTCUSDT", D("64000"))

    flip = await exchange.create_order(request(SELL, "0.3"))

    assert flip.avg_fill_price == D("63968")
    # Only the 0.1 that closed the long realised anything.
    assert flip.realized_pnl == (D("63968") - D("65032.5")) * D("0.1") == D("-106.45")
    assert flip.fee == fee("0.3", "63968")
    position = await exchange.get_position("BTCUSDT")
    assert position is not None
    assert (position.side, position.quantity, position.entry_price) == (
        "short",
        D("0.2"),
        D("63968"),
    )
    await assert_books_balance(sessionmaker, "user-1")


async def test_closing_exactly_leaves_no_position(
    exchange: PaperExchange, sessionmaker: Sessionmaker
) -> None:
    await exchange.create_order(request(BUY, "0.1"))
    close = await exchange.create_order(request(SELL, "0.1"))

    assert close.realized_pnl == (D("64967.5") - D("65032.5")) * D("0.1")
    assert await exchange.get_position("BTCUSDT") is None
    assert await exchange.get_positions() == []
    assert await count(sessionmaker, PaperPosition) == 0
    await assert_books_balance(sessionmaker, "user-1")


# --------------------------------------------------------------------------- reduce-only


async def test_reduce_only_is_capped_to_the_position(exchange: PaperExchange) -> None:
    await exchange.create_order(request(BUY, "0.1"))

    close = await exchange.create_order(request(SELL, "0.5", reduce_only=True))

    assert close.status == OrderStatus.FILLED
    assert close.quantity == close.filled_quantity == D("0.1")
    assert await exchange.get_position("BTCUSDT") is None


async def test_reduce_only_may_be_below_the_minimum_notional(exchange: PaperExchange) -> None:
    await exchange.create_order(request(BUY, "0.002"))  # 130 USDT, above BTC's 100 minimum

    # 65 USDT: refused as an opening order, fine as a reduce-only one.
    with pytest.raises(OrderRejected, match="below the minimum 100 USDT"):
        await exchange.create_order(request(SELL, "0.001"))
    reduce = await exchange.create_order(request(SELL, "0.001", reduce_only=True))

    assert reduce.status == OrderStatus.FILLED
    position = await exchange.get_position("BTCUSDT")
    assert position is not None and position.quantity == D("0.001")


async def test_reduce_only_never_opens_or_increases(
    exchange: PaperExchange, sessionmaker: Sessionmaker
) -> None:
    with pytest.raises(OrderRejected, match="reduce-only order would open a position") as flat:
        await exchange.create_order(request(SELL, "0.1", reduce_only=True))
    assert flat.value.code == "reduce_only_rejected"

    await exchange.create_order(request(BUY, "0.1"))
    with pytest.raises(OrderRejected, match="would increase the long BTCUSDT position"):
        await exchange.create_order(request(BUY, "0.1", reduce_only=True))
    with pytest.raises(OrderRejected, match="would open a position"):
        await exchange.create_order(
            request(
                SELL,
                "0.1",
                kind=OrderType.STOP_MARKET,
                stop="60000",
                reduce_only=True,
                symbol="ETHUSDT",
            )
        )

    assert await count(sessionmaker, PaperOrder) == 1


# --------------------------------------------------------------------------- idempotency


async def test_create_order_is_idempotent_on_the_client_order_id(
    exchange: PaperExchange, sessionmaker: Sessionmaker
) -> None:
    first = await exchange.create_order(request(BUY, "0.1", client_order_id="sig-1-entry"))
    # A retry after an unknown outcome, even with a different size, places nothing.
    again = await exchange.create_order(request(BUY, "0.2", client_order_id="sig-1-entry"))

    assert again == first
    assert await count(sessionmaker, PaperOrder) == 1
    position = await exchange.get_position("BTCUSDT")
    assert position is not None and position.quantity == D("0.1")
    await assert_books_balance(sessionmaker, "user-1")


async def test_ten_concurrent_calls_with_one_client_id_make_one_order(
    pool: Pool, sessionmaker: Sessionmaker, feed: ManualPriceFeed
) -> None:
    # Ten adapters, as ten workers would each build their own; the account does not exist yet.
    exchanges = [PaperExchange(pool, "user-c", feed, starting_balance=START) for _ in range(10)]
    req = request(BUY, "0.1", client_order_id="sig-c-entry")

    orders = await asyncio.gather(*(e.create_order(req) for e in exchanges))

    assert len({o.order_id for o in orders}) == 1
    assert all(o.status == OrderStatus.FILLED for o in orders)
    assert await count(sessionmaker, PaperOrder) == 1
    assert await count(sessionmaker, PaperAccount) == 1
    position = await exchanges[0].get_position("BTCUSDT")
    assert position is not None and position.quantity == D("0.1")
    assert await exchanges[0].get_wallet_balance() == START - fee("0.1", "65032.5")


async def test_concurrent_orders_on_one_account_are_serialised(
    exchange: PaperExchange, sessionmaker: Sessionmaker
) -> None:
    orders = await asyncio.gather(
        *(exchange.create_order(request(BUY, "0.01", symbol="ETHUSDT")) for _ in range(10))
    )

    assert {o.status for o in orders} == {OrderStatus.FILLED}
    position = await exchange.get_position("ETHUSDT")
    assert position is not None and position.quantity == D("0.1")
    await assert_books_balance(sessionmaker, "user-1")
    assert await exchange.get_wallet_balance() == START - 10 * fee("0.01", "3501.75")


async def test_client_ids_are_per_account(pool: Pool, feed: ManualPriceFeed) -> None:
    alice = PaperExchange(pool, "alice", feed, starting_balance=START)
    bob = PaperExchange(pool, "bob", feed, starting_balance=START)

    a = await alice.create_order(request(BUY, "0.1", client_order_id="same"))
    b = await bob.create_order(request(SELL, "0.1", client_order_id="same"))

    assert a.order_id != b.order_id
    assert (await alice.get_positions())[0].side == "long"
    assert (await bob.get_positions())[0].side == "short"


# --------------------------------------------------------------------------- rejections


# (request, error code, words the reason contains)
REJECTIONS: list[tuple[OrderRequest, str, str]] = [
    (
        request(BUY, "0.0001"),
        "quantity_below_minimum",
        "quantity 0.0001 is below the minimum 0.001 for BTCUSDT",
    ),
    (
        request(BUY, "0.0015"),
        "invalid_quantity_step",
        "quantity 0.0015 is not a multiple of BTCUSDT's step 0.001",
    ),
    (
        request(BUY, "0.001"),
        "notional_below_minimum",
        "order value 65 USDT (0.001 x 65000) is below the minimum 100 USDT for BTCUSDT",
    ),
    (request(BUY, "0.1", symbol="FOOUSDT"), "unknown_symbol", "unknown symbol 'FOOUSDT'"),
    (
        request(BUY, "0.1", kind=OrderType.LIMIT, price="60000.05"),
        "invalid_price_step",
        "price 60000.05 is not a multiple of BTCUSDT's tick 0.1",
    ),
    (request(BUY, "0.1", kind=OrderType.LIMIT), "missing_price", "a limit order needs a price"),
    (
        request(SELL, "0.1", kind=OrderType.STOP_MARKET, stop="66000"),
        "would_immediately_trigger",
        "a sell stop_market at 66000 would trigger immediately",
    ),
    (
        request(BUY, "0.1", client_order_id="has spaces"),
        "invalid_client_order_id",
        "client order id 'has spaces'",
    ),
]


@pytest.mark.parametrize(
    ("req", "code", "reason"), REJECTIONS, ids=[code for _, code, _ in REJECTIONS]
)
async def test_invalid_orders_are_rejected_and_store_nothing(
    exchange: PaperExchange,
    sessionmaker: Sessionmaker,
    req: OrderRequest,
    code: str,
    reason: str,
) -> None:
    with pytest.raises(OrderRejected) as rejected:
        await exchange.create_order(req)

    assert rejected.value.code == code
    assert reason in rejected.value.reason
    assert await count(sessionmaker, PaperOrder) == 0
    assert await count(sessionmaker, PaperPosition) == 0


def test_floats_never_enter_an_order_request() -> None:
    with pytest.raises(TypeError, match="quantity must be a Decimal"):
        OrderRequest("BTCUSDT", BUY, OrderType.MARKET, 0.1, "cid")  # type: ignore[arg-type]


async def test_insufficient_margin_is_refused_and_changes_nothing(
    exchange: PaperExchange, sessionmaker: Sessionmaker
) -> None:
    # 0.2 BTC is 13,000 USDT of notional: more than a 10,000 USDT wallet at 1x.
    with pytest.raises(InsufficientFunds) as refused:
        await exchange.create_order(request(BUY, "0.2"))

    assert isinstance(refused.value, OrderRejected)
    assert refused.value.code == "insufficient_margin"
    assert "needs 13000 USDT at 1x leverage" in refused.value.reason
    assert await count(sessionmaker, PaperOrder) == 0
    assert await exchange.get_wallet_balance() == START

    # The same order fits at 2x; a resting limit order holds margin too.
    await exchange.set_leverage("BTCUSDT", 2)
    await exchange.create_order(request(BUY, "0.2"))
    with pytest.raises(InsufficientFunds):
        await exchange.create_order(request(BUY, "0.2", kind=OrderType.LIMIT, price="60000"))


async def test_leverage_limits_and_lowering_it_needs_margin(exchange: PaperExchange) -> None:
    for wrong in (0, 126):
        with pytest.raises(OrderRejected, match="choose 1 to 125") as refused:
            await exchange.set_leverage("BTCUSDT", wrong)
        assert refused.value.code == "invalid_leverage"

    await exchange.set_leverage("BTCUSDT", 10)
    await exchange.create_order(request(BUY, "1"))  # 65,000 USDT of BTC on 10,000 USDT
    with pytest.raises(InsufficientFunds, match="lowering BTCUSDT leverage to 5x"):
        await exchange.set_leverage("BTCUSDT", 5)
    await exchange.set_leverage("BTCUSDT", 20)

    position = await exchange.get_position("BTCUSDT")
    assert position is not None and position.leverage == 20


# --------------------------------------------------------------------------- conditional orders


async def open_long_with_brackets(exchange: PaperExchange) -> tuple[Order, Order]:
    """0.1 BTC long at 65032.5, a stop-loss at 63000 and a take-profit at 68000."""
    await exchange.set_leverage("BTCUSDT", 10)
    await exchange.create_order(request(BUY, "0.1"))
    stop = await exchange.create_order(
        request(SELL, "0.1", kind=OrderType.STOP_MARKET, stop="63000", reduce_only=True)
    )
    take = await exchange.create_order(
        request(SELL, "0.1", kind=OrderType.TAKE_PROFIT_MARKET, stop="68000", reduce_only=True)
    )
    assert stop.status == take.status == OrderStatus.OPEN
    assert stop.filled_quantity == 0 and stop.avg_fill_price is None
    return stop, take


async def test_stop_loss_triggers_closes_and_cancels_the_take_profit(
    exchange: PaperExchange, sessionmaker: Sessionmaker
) -> None:
    stop, take = await open_long_with_brackets(exchange)
    assert [o.order_id for o in await exchange.get_open_orders("BTCUSDT")] == [
        stop.order_id,
        take.order_id,
    ]

    assert await exchange.process_price("BTCUSDT", D("63000.1")) == []
    filled = await exchange.process_price("BTCUSDT", D("62900"))

    assert [o.order_id for o in filled] == [stop.order_id]
    hit = filled[0]
    assert hit.status == OrderStatus.FILLED
    assert hit.avg_fill_price == D("62868.5")  # 62900 - 0.05 %, rounded down to the tick
    assert hit.realized_pnl == (D("62868.5") - D("65032.5")) * D("0.1") == D("-216.4")
    assert hit.fee == fee("0.1", "62868.5")
    assert await exchange.get_position("BTCUSDT") is None

    # The take-profit had nothing left to reduce: canceled, and never executed.
    orphan = await exchange.get_order("BTCUSDT", order_id=take.order_id)
    assert orphan is not None and orphan.status == OrderStatus.CANCELED
    assert await exchange.process_price("BTCUSDT", D("69000")) == []
    assert await exchange.get_position("BTCUSDT") is None
    assert await exchange.get_open_orders() == []
    await assert_books_balance(sessionmaker, "user-1")


async def test_take_profit_triggers_with_the_right_pnl(exchange: PaperExchange) -> None:
    stop, take = await open_long_with_brackets(exchange)

    filled = await exchange.process_price("BTCUSDT", D("68500"))

    assert [o.order_id for o in filled] == [take.order_id]
    assert filled[0].avg_fill_price == D("68465.7")
    assert filled[0].realized_pnl == (D("68465.7") - D("65032.5")) * D("0.1") == D("343.32")
    assert await exchange.process_price("BTCUSDT", D("60000")) == []
    canceled = await exchange.get_order("BTCUSDT", order_id=stop.order_id)
    assert canceled is not None and canceled.status == OrderStatus.CANCELED


async def test_a_stop_left_after_a_manual_close_is_canceled_not_executed(
    exchange: PaperExchange,
) -> None:
    stop, _ = await open_long_with_brackets(exchange)

    await exchange.create_order(request(SELL, "0.1"))  # closed by hand

    assert await exchange.get_open_orders() == []
    assert await exchange.process_price("BTCUSDT", D("60000")) == []
    assert await exchange.get_position("BTCUSDT") is None
    left = await exchange.get_order("BTCUSDT", order_id=stop.order_id)
    assert left is not None and left.status == OrderStatus.CANCELED


async def test_a_reduce_only_stop_larger_than_the_position_closes_only_the_position(
    exchange: PaperExchange,
) -> None:
    stop, _ = await open_long_with_brackets(exchange)
    await exchange.create_order(request(SELL, "0.04"))  # partly closed by hand
    [resting_stop, _] = await exchange.get_open_orders()
    assert resting_stop.quantity == D("0.1")  # capped only when it fills

    filled = await exchange.process_price("BTCUSDT", D("62000"))

    assert [o.order_id for o in filled] == [stop.order_id]
    assert filled[0].quantity == filled[0].filled_quantity == D("0.06")
    assert await exchange.get_position("BTCUSDT") is None


async def test_short_side_triggers(exchange: PaperExchange) -> None:
    await exchange.create_order(request(SELL, "10", symbol="SOLUSDT"))  # short at 149.92
    stop = await exchange.create_order(
        request(
            BUY, "10", symbol="SOLUSDT", kind=OrderType.STOP_MARKET, stop="155", reduce_only=True
        )
    )
    take = await exchange.create_order(
        request(
            BUY,
            "10",
            symbol="SOLUSDT",
            kind=OrderType.TAKE_PROFIT_MARKET,
            stop="140",
            reduce_only=True,
        )
    )

    assert await exchange.process_price("SOLUSDT", D("154.99")) == []
    filled = await exchange.process_price("SOLUSDT", D("155.5"))

    assert [o.order_id for o in filled] == [stop.order_id]
    assert filled[0].avg_fill_price == D("155.58")  # 155.5 + 0.05 %, rounded up
    assert filled[0].realized_pnl == (D("149.92") - D("155.58")) * 10
    canceled = await exchange.get_order("SOLUSDT", order_id=take.order_id)
    assert canceled is not None and canceled.status == OrderStatus.CANCELED


async def test_limit_orders_rest_until_reached_and_fill_at_their_price(
    exchange: PaperExchange,
) -> None:
    await exchange.set_leverage("BTCUSDT", 10)
    resting = await exchange.create_order(request(BUY, "0.1", kind=OrderType.LIMIT, price="60000"))
    assert resting.status == OrderStatus.OPEN and resting.is_open

    # Marketable when placed: fills now, at the market (with slippage), never above the limit.
    marketable = await exchange.create_order(
        request(BUY, "0.1", kind=OrderType.LIMIT, price="66000")
    )
    assert marketable.avg_fill_price == D("65032.5")

    assert await exchange.process_price("BTCUSDT", D("60000.1")) == []
    filled = await exchange.process_price("BTCUSDT", D("59000"))

    assert [o.order_id for o in filled] == [resting.order_id]
    assert filled[0].avg_fill_price == D("60000")
    assert filled[0].fee == fee("0.1", "60000")
    position = await exchange.get_position("BTCUSDT")
    assert position is not None
    assert position.quantity == D("0.2")
    assert position.entry_price == (D("65032.5") + D("60000")) / 2


async def test_a_triggered_order_the_margin_cannot_cover_is_rejected(
    exchange: PaperExchange,
) -> None:
    # A buy stop (a breakout entry) reserves no margin; when it fires there is not enough.
    entry = await exchange.create_order(
        request(BUY, "0.2", kind=OrderType.STOP_MARKET, stop="66000")
    )

    assert await exchange.process_price("BTCUSDT", D("66100")) == []
    rejected = await exchange.get_order("BTCUSDT", order_id=entry.order_id)
    assert rejected is not None and rejected.status == OrderStatus.REJECTED
    assert await exchange.get_position("BTCUSDT") is None


async def test_process_all_accounts_uses_the_feed_for_every_account(
    pool: Pool, feed: ManualPriceFeed
) -> None:
    alice = PaperExchange(pool, "alice", feed, starting_balance=START)
    bob = PaperExchange(pool, "bob", feed, starting_balance=START)
    carol = PaperExchange(pool, "carol", feed, starting_balance=START)
    for account in (alice, bob):
        await account.create_order(request(BUY, "0.1"))
        await account.create_order(
            request(SELL, "0.1", kind=OrderType.STOP_MARKET, stop="63000", reduce_only=True)
        )
    await carol.create_order(request(BUY, "1", symbol="ETHUSDT"))
    carol_stop = await carol.create_order(
        request(
            SELL, "1", symbol="ETHUSDT", kind=OrderType.STOP_MARKET, stop="3000", reduce_only=True
        )
    )

    assert await process_all_accounts(pool, feed) == []
    feed.set("BTCUSDT", D("62000"))
    filled = await process_all_accounts(pool, feed)

    assert [(f.account_id, f.symbol) for f in filled] == [("alice", "BTCUSDT"), ("bob", "BTCUSDT")]
    assert all(f.order.status == OrderStatus.FILLED and f.order.reduce_only for f in filled)
    assert await alice.get_positions() == [] and await bob.get_positions() == []
    still = await carol.get_order("ETHUSDT", order_id=carol_stop.order_id)
    assert still is not None and still.status == OrderStatus.OPEN


# --------------------------------------------------------------------------- account state


async def test_equity_is_wallet_plus_unrealised_pnl(
    exchange: PaperExchange, feed: ManualPriceFeed
) -> None:
    assert await exchange.get_equity() == START
    await exchange.set_leverage("BTCUSDT", 10)
    await exchange.set_leverage("ETHUSDT", 10)
    await exchange.create_order(request(BUY, "0.1"))
    await exchange.create_order(request(SELL, "1", symbol="ETHUSDT"))  # short at 3498.25
    feed.set("BTCUSDT", D("70000"))
    feed.set("ETHUSDT", D("3400"))

    wallet = await exchange.get_wallet_balance()
    unrealized = (D("70000") - D("65032.5")) * D("0.1") + (D("3498.25") - D("3400")) * 1

    assert await exchange.get_equity() == wallet + unrealized
    positions = await exchange.get_positions()
    assert [p.symbol for p in positions] == ["BTCUSDT", "ETHUSDT"]
    assert sum(p.unrealized_pnl or 0 for p in positions) == unrealized
    [balance] = await exchange.get_balances()
    assert balance.asset == "USDT"
    assert balance.total == wallet + unrealized
    assert balance.locked == D("700") + D("340")  # 7000 / 10 + 3400 / 10
    assert balance.free == balance.total - balance.locked


async def test_state_survives_a_restart(pool: Pool, feed: ManualPriceFeed) -> None:
    before = PaperExchange(pool, "user-r", feed, starting_balance=START)
    await before.set_leverage("BTCUSDT", 10)
    await before.create_order(request(BUY, "0.1"))
    stop = await before.create_order(
        request(SELL, "0.1", kind=OrderType.STOP_MARKET, stop="63000", reduce_only=True)
    )
    wallet, positions = await before.get_wallet_balance(), await before.get_positions()

    # A new process builds a new adapter; its starting balance applies to new accounts only.
    after = PaperExchange(pool, "user-r", feed, starting_balance=D("1"))

    assert await after.get_wallet_balance() == wallet
    assert await after.get_positions() == positions
    assert [o.order_id for o in await after.get_open_orders()] == [stop.order_id]
    filled = await after.process_price("BTCUSDT", D("62000"))
    assert [o.order_id for o in filled] == [stop.order_id]


async def test_a_new_account_starts_with_its_starting_balance(
    pool: Pool, feed: ManualPriceFeed
) -> None:
    fresh = PaperExchange(pool, "user-new", feed, starting_balance=D("2500.5"))
    assert await fresh.get_equity() == D("2500.5")
    assert await fresh.get_balances() == [
        Balance(asset="USDT", free=D("2500.5"), locked=D("0"), total=D("2500.5"))
    ]


async def test_reads_do_not_create_the_account(
    pool: Pool, sessionmaker: Sessionmaker, feed: ManualPriceFeed
) -> None:
    fresh = PaperExchange(pool, "user-new", feed, starting_balance=D("2500.5"))

    assert await fresh.get_wallet_balance() == D("2500.5")
    assert await fresh.get_equity() == D("2500.5")
    assert await fresh.get_positions() == []
    assert await fresh.get_position("BTCUSDT") is None
    assert await fresh.get_open_orders() == []
    assert await fresh.get_order("BTCUSDT", client_order_id="any") is None
    [balance] = await fresh.get_balances()
    assert balance.total == D("2500.5")
    assert await count(sessionmaker, PaperAccount) == 0

    await fresh.set_leverage("BTCUSDT", 3)  # the first write creates it
    assert await count(sessionmaker, PaperAccount) == 1
    assert await fresh.get_wallet_balance() == D("2500.5")


# --------------------------------------------------------------------------- racing writers


async def account_version(sessionmaker: Sessionmaker, account_id: str) -> int | None:
    async with sessionmaker() as session:
        return await session.scalar(
            select(PaperAccount.version).where(PaperAccount.account_id == account_id)
        )


class PausingFeed(ManualPriceFeed):
    """A ManualPriceFeed that, once `pause()`d, holds every caller of `price` (a writer
    between its read of the book and its save) until `resume()`; `waiting` is set as soon
    as one is held."""

    def __init__(self, prices: dict[str, Decimal]) -> None:
        super().__init__(prices)
        self.waiting = asyncio.Event()
        self._go = asyncio.Event()
        self._go.set()

    def pause(self) -> None:
        self.waiting.clear()
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    async def price(self, symbol: str) -> Decimal:
        if not self._go.is_set():
            self.waiting.set()
            await self._go.wait()
        return await super().price(symbol)


# (symbol, price, quantity): ten markets, each order above its minimum notional.
TEN_MARKETS = [
    ("BTCUSDT", "65000", "0.002"),
    ("ETHUSDT", "3500", "0.01"),
    ("SOLUSDT", "150", "1"),
    ("BNBUSDT", "600", "0.1"),
    ("XRPUSDT", "0.6", "10"),
    ("DOGEUSDT", "0.15", "100"),
    ("ADAUSDT", "0.45", "100"),
    ("AVAXUSDT", "35", "1"),
    ("LINKUSDT", "15", "1"),
    ("DOTUSDT", "7", "1"),
]


async def test_ten_writers_racing_on_a_new_account_each_apply_exactly_once(
    pool: Pool, sessionmaker: Sessionmaker
) -> None:
    feed = ManualPriceFeed({symbol: D(price) for symbol, price, _ in TEN_MARKETS})
    # Ten adapters, as ten workers would each build their own; the account does not exist yet,
    # so they also race to create it.
    exchanges = [PaperExchange(pool, "user-race", feed, starting_balance=START) for _ in range(10)]

    orders = await asyncio.gather(
        *(
            e.create_order(request(BUY, quantity, symbol=symbol))
            for e, (symbol, _, quantity) in zip(exchanges, TEN_MARKETS, strict=True)
        )
    )

    assert {o.status for o in orders} == {OrderStatus.FILLED}
    assert all(o.fee == fee(str(o.quantity), str(o.avg_fill_price)) for o in orders)
    positions = await exchanges[0].get_positions()
    assert {(p.symbol, p.side, p.quantity) for p in positions} == {
        (symbol, "long", D(quantity)) for symbol, _, quantity in TEN_MARKETS
    }
    assert {p.symbol: p.entry_price for p in positions} == {
        o.symbol: o.avg_fill_price for o in orders
    }
    # Every fee was taken once: no writer saved a book another had already changed.
    assert await exchanges[0].get_wallet_balance() == START - sum(o.fee for o in orders)
    await assert_books_balance(sessionmaker, "user-race")
    assert await count(sessionmaker, PaperAccount) == 1
    assert await count(sessionmaker, PaperOrder) == 10
    assert await account_version(sessionmaker, "user-race") == 10  # one bump per write


async def test_a_writer_that_lost_the_race_computes_again_on_the_new_book(
    pool: Pool, exchange: PaperExchange, sessionmaker: Sessionmaker
) -> None:
    stop, take = await open_long_with_brackets(exchange)
    version = await account_version(sessionmaker, "user-1")
    paused = PausingFeed({"BTCUSDT": D("65000")})
    closer = PaperExchange(pool, "user-1", paused, starting_balance=START)

    # The closer reads the book (the long is there) and is held before it saves ...
    paused.pause()
    close = asyncio.create_task(closer.create_order(request(SELL, "0.1", reduce_only=True)))
    await paused.waiting.wait()
    # ... while the stop fills and closes the long.
    filled = await exchange.process_price("BTCUSDT", D("62000"))
    paused.resume()

    # Its save found the account changed; on the new book there is nothing left to reduce.
    with pytest.raises(OrderRejected, match="reduce-only order would open a position"):
        await close
    assert [o.order_id for o in filled] == [stop.order_id]
    assert await exchange.get_position("BTCUSDT") is None
    canceled = await exchange.get_order("BTCUSDT", order_id=take.order_id)
    assert canceled is not None and canceled.status == OrderStatus.CANCELED
    assert await count(sessionmaker, PaperOrder) == 3  # the entry and the two brackets
    assert await account_version(sessionmaker, "user-1") == (version or 0) + 1
    await assert_books_balance(sessionmaker, "user-1")


async def test_concurrent_triggers_and_orders_on_one_account_apply_exactly_once(
    pool: Pool, exchange: PaperExchange, feed: ManualPriceFeed, sessionmaker: Sessionmaker
) -> None:
    stop, take = await open_long_with_brackets(exchange)
    version = await account_version(sessionmaker, "user-1")
    # Two trigger workers see the same price while a signal worker places an order.
    worker = PaperExchange(pool, "user-1", feed, starting_balance=START)

    first, second, eth = await asyncio.gather(
        exchange.process_price("BTCUSDT", D("62000")),
        worker.process_price("BTCUSDT", D("62000")),
        worker.create_order(request(BUY, "1", symbol="ETHUSDT")),
    )

    # The stop filled once, whichever worker got there first; the other found nothing to do.
    assert sorted([[o.order_id for o in first], [o.order_id for o in second]]) == [
        [],
        [stop.order_id],
    ]
    [hit] = first or second
    assert hit.avg_fill_price == D("61969")  # 62000 - 0.05 %, rounded down to the tick
    assert hit.realized_pnl == (D("61969") - D("65032.5")) * D("0.1")
    assert eth.status == OrderStatus.FILLED and eth.avg_fill_price == D("3501.75")
    assert await exchange.get_position("BTCUSDT") is None
    position = await exchange.get_position("ETHUSDT")
    assert position is not None and position.quantity == D("1")
    canceled = await exchange.get_order("BTCUSDT", order_id=take.order_id)
    assert canceled is not None and canceled.status == OrderStatus.CANCELED
    assert await exchange.get_order("BTCUSDT", order_id=stop.order_id) == hit
    assert await count(sessionmaker, PaperOrder) == 4
    # Two writes (the stop's fill, the ETH order); the trigger that found nothing wrote nothing.
    assert await account_version(sessionmaker, "user-1") == (version or 0) + 2
    await assert_books_balance(sessionmaker, "user-1")


async def test_a_writer_that_always_loses_the_race_gives_up(
    pool: Pool, feed: ManualPriceFeed, sessionmaker: Sessionmaker
) -> None:
    other = PaperExchange(pool, "user-1", feed, starting_balance=START)
    await other.set_leverage("ETHUSDT", 2)
    leverages = iter(range(3, 100))

    class MeddlingFeed(ManualPriceFeed):
        """Another writer changes the account between each read of the book and its save."""

        async def price(self, symbol: str) -> Decimal:
            await other.set_leverage("ETHUSDT", next(leverages))
            return await super().price(symbol)

    unlucky = PaperExchange(
        pool, "user-1", MeddlingFeed({"BTCUSDT": D("65000")}), starting_balance=START
    )

    with pytest.raises(RuntimeError, match="'user-1': gave up writing after 20 attempts"):
        await unlucky.create_order(request(BUY, "0.1"))

    assert await count(sessionmaker, PaperOrder) == 0
    assert await account_version(sessionmaker, "user-1") == 1 + 20
    assert await other.get_wallet_balance() == START


# --------------------------------------------------------------------------- round trips


@pytest.fixture
async def logged(database_url: str, clean_state: None) -> AsyncIterator[tuple[Pool, list[str]]]:
    """A pool of one connection, and the statements it runs (its reset on release aside)."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    statements: list[str] = []
    async with pool.acquire() as conn:
        reset = conn.get_reset_query()

        def record(query: LoggedQuery) -> None:
            if query.query != reset:
                statements.append(query.query.split()[0].rstrip(";"))

        conn.add_query_logger(record)
    try:
        yield pool, statements
    finally:
        await pool.close()


class Clock:
    """The monotonic clock the paper exchange sees: still until `advance`d."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(paper, "time", clock)  # the module's `time`, not the event loop's
    return clock


def tracer(statements: list[str]) -> Callable[[Awaitable[object]], Awaitable[list[str]]]:
    async def trips(call: Awaitable[object]) -> list[str]:
        """The statements `call` runs, by their first word."""
        await asyncio.sleep(0)  # a logger runs just after its statement: let late ones run
        statements.clear()
        await call
        await asyncio.sleep(0)
        return list(statements)

    return trips


async def test_round_trips_per_call(
    logged: tuple[Pool, list[str]], feed: ManualPriceFeed, clock: Clock
) -> None:
    """A write is one read of the book and one write of what changed, checked against the
    version read, both outside any transaction; on a book the instance already knows (it
    saved it, or read it), the write alone. A write that changes nothing, and a read, are
    one statement; a read right after a read of the same instance, none."""
    pool, statements = logged
    exchange = PaperExchange(pool, "user-1", feed, starting_balance=START)
    trips = tracer(statements)

    read_and_save = ["SELECT", "WITH"]
    save = ["WITH"]
    no_change = ["SELECT"]
    # The connection's first look at the book also looks up its row types: not counted.
    await exchange.get_positions()

    # The first write of an account reads it, finds none, creates it and reads it again;
    # setting what is already set is that one read (what the known book says is checked).
    assert await trips(exchange.set_leverage("BTCUSDT", 10)) == [
        "SELECT",
        "INSERT",
        *read_and_save,
    ]
    assert await trips(exchange.set_leverage("BTCUSDT", 10)) == no_change
    market = request(BUY, "0.1", client_order_id="entry")
    assert await trips(exchange.create_order(market)) == save
    # A replay of an order no longer working: the save fails on the client id, the read
    # finds the order.
    assert await trips(exchange.create_order(market)) == [*save, "SELECT"]
    stop = request(SELL, "0.1", kind=OrderType.STOP_MARKET, stop="63000", reduce_only=True)
    assert await trips(exchange.create_order(stop)) == save
    assert await trips(exchange.process_price("BTCUSDT", D("64000"))) == no_change
    assert await trips(exchange.process_price("BTCUSDT", D("62000"))) == save  # the stop fills
    limit = request(BUY, "0.01", kind=OrderType.LIMIT, price="60000", client_order_id="limit")
    assert await trips(exchange.create_order(limit)) == save
    assert await trips(exchange.cancel_order("BTCUSDT", client_order_id="limit")) == save
    # Cancelling what is no longer open, or what does not exist, is the one read.
    assert await trips(exchange.cancel_order("BTCUSDT", client_order_id="limit")) == no_change
    with pytest.raises(OrderNotFound):
        await trips(exchange.cancel_order("BTCUSDT", client_order_id="never"))
    await asyncio.sleep(0)
    assert statements == no_change

    # A new instance (one per signal), as the executor uses it for an entry.
    executor = PaperExchange(pool, "user-1", feed, starting_balance=START)
    assert await trips(executor.get_order("BTCUSDT", client_order_id="e-entry")) == no_change
    assert await trips(executor.get_position("BTCUSDT")) == no_change
    assert await trips(executor.get_equity()) == []  # the book just read
    assert await trips(executor.set_leverage("BTCUSDT", 5)) == save  # on that book
    entry = request(BUY, "0.1", client_order_id="e-entry")
    assert await trips(executor.create_order(entry)) == save
    sl = request(SELL, "0.1", kind=OrderType.STOP_MARKET, stop="60000", reduce_only=True)
    assert await trips(executor.create_order(sl)) == save
    tp = request(SELL, "0.1", kind=OrderType.TAKE_PROFIT_MARKET, stop="70000", reduce_only=True)
    assert await trips(executor.create_order(tp)) == save
    # After its own write an instance reads again, however little time passed.
    assert await trips(executor.get_position("BTCUSDT")) == no_change
    assert await trips(executor.get_order("BTCUSDT", client_order_id="e-entry")) == no_change
    # A write on an instance that knows no book yet reads it first.
    other = PaperExchange(pool, "user-1", feed, starting_balance=START)
    assert await trips(other.create_order(request(BUY, "1", symbol="ETHUSDT"))) == read_and_save

    reads: list[Callable[[], Awaitable[object]]] = [
        exchange.get_positions,
        partial(exchange.get_position, "BTCUSDT"),
        exchange.get_balances,
        exchange.get_equity,
        exchange.get_wallet_balance,
        exchange.get_open_orders,
        partial(exchange.get_order, "BTCUSDT", client_order_id="entry"),
    ]
    for read in reads:
        clock.advance(0.05)  # the book read before is too old to use again
        assert await trips(read()) == ["SELECT"], read
    clock.advance(0.05)
    assert await trips(exchange.get_positions()) == ["SELECT"]
    for read in reads[:-1]:  # the others on the book that one read (get_order aside)
        assert await trips(read()) == [], read
    clock.advance(0.049)
    assert await trips(exchange.get_equity()) == []
    clock.advance(0.001)
    assert await trips(exchange.get_equity()) == ["SELECT"]


# --------------------------------------------------------------------------- the known book


async def test_a_write_on_a_known_book_that_another_instance_changed_computes_again(
    logged: tuple[Pool, list[str]], feed: ManualPriceFeed, sessionmaker: Sessionmaker
) -> None:
    pool, statements = logged
    trips = tracer(statements)
    mine = PaperExchange(pool, "user-1", feed, starting_balance=START)
    other = PaperExchange(pool, "user-1", feed, starting_balance=START)
    await mine.set_leverage("BTCUSDT", 10)  # mine knows the book it saved
    eth = await other.create_order(request(BUY, "1", symbol="ETHUSDT"))
    version = await account_version(sessionmaker, "user-1")

    # The save on the known book does not apply; the book read then has the ETH order.
    assert await trips(mine.create_order(request(BUY, "0.1"))) == ["WITH", "SELECT", "WITH"]

    btc = await other.get_position("BTCUSDT")
    assert btc is not None and (btc.quantity, btc.leverage) == (D("0.1"), 10)
    position = await mine.get_position("ETHUSDT")
    assert position is not None and position.quantity == D("1")
    assert await mine.get_wallet_balance() == START - eth.fee - fee("0.1", "65032.5")
    assert await account_version(sessionmaker, "user-1") == (version or 0) + 1
    await assert_books_balance(sessionmaker, "user-1")
    # Its next write is on the book it saved again.
    assert await trips(mine.create_order(request(SELL, "0.1", reduce_only=True))) == ["WITH"]
    assert await mine.get_position("BTCUSDT") is None
    await assert_books_balance(sessionmaker, "user-1")


async def test_a_client_id_the_known_book_lacks_is_replayed_not_placed_twice(
    logged: tuple[Pool, list[str]], feed: ManualPriceFeed, sessionmaker: Sessionmaker
) -> None:
    pool, statements = logged
    trips = tracer(statements)
    first = PaperExchange(pool, "user-1", feed, starting_balance=START)
    placed = await first.create_order(request(BUY, "0.1", client_order_id="sig-7-entry"))
    # A second instance (a retry of the signal) whose known book is current but was never
    # looked up by that client id: the order filled, so it is not among the working ones.
    retry = PaperExchange(pool, "user-1", feed, starting_balance=START)
    await retry.set_leverage("BTCUSDT", 10)
    version = await account_version(sessionmaker, "user-1")

    calls = trips(retry.create_order(request(BUY, "0.2", client_order_id="sig-7-entry")))
    # The save fails on the unique client id, writing nothing; the read finds the order.
    assert await calls == ["WITH", "SELECT"]
    again = await retry.create_order(request(BUY, "0.2", client_order_id="sig-7-entry"))

    assert again == placed
    assert await retry.get_order("BTCUSDT", client_order_id="sig-7-entry") == placed
    assert await count(sessionmaker, PaperOrder) == 1
    assert await account_version(sessionmaker, "user-1") == version
    position = await retry.get_position("BTCUSDT")
    assert position is not None and position.quantity == D("0.1")
    assert await retry.get_wallet_balance() == START - placed.fee
    await assert_books_balance(sessionmaker, "user-1")


async def test_a_read_after_the_instances_own_write_sees_it(
    exchange: PaperExchange, clock: Clock, sessionmaker: Sessionmaker
) -> None:
    # The clock stands still: a book read is young enough to use again, but not after a write.
    assert await exchange.get_position("BTCUSDT") is None
    assert await exchange.get_equity() == START
    await exchange.set_leverage("BTCUSDT", 10)
    assert await exchange.get_position("BTCUSDT") is None
    assert await exchange.get_open_orders() == []

    order = await exchange.create_order(request(BUY, "0.1"))
    position = await exchange.get_position("BTCUSDT")
    assert position is not None and (position.quantity, position.leverage) == (D("0.1"), 10)
    assert await exchange.get_wallet_balance() == START - order.fee
    stop = await exchange.create_order(
        request(SELL, "0.1", kind=OrderType.STOP_MARKET, stop="63000", reduce_only=True)
    )
    assert await exchange.get_open_orders() == [stop]  # as returned: timestamps too
    assert await exchange.get_order("BTCUSDT", order_id=order.order_id) == order
    [balance] = await exchange.get_balances()
    assert balance.locked == D("650")  # 0.1 x 65000 / 10
    canceled = await exchange.cancel_order("BTCUSDT", order_id=stop.order_id)
    assert canceled.status == OrderStatus.CANCELED
    assert await exchange.get_open_orders() == []
    assert await exchange.get_order("BTCUSDT", order_id=stop.order_id) == canceled
    await assert_books_balance(sessionmaker, "user-1")


async def test_a_trigger_between_two_writes_of_an_instance_is_not_missed(
    exchange: PaperExchange, feed: ManualPriceFeed, pool: Pool, sessionmaker: Sessionmaker
) -> None:
    stop, take = await open_long_with_brackets(exchange)  # `exchange` knows the book it saved
    version = await account_version(sessionmaker, "user-1")

    feed.set("BTCUSDT", D("62000"))
    [hit] = await process_all_accounts(pool, feed)
    assert hit.order.order_id == stop.order_id

    # On its known book the long is still there; the save finds the account moved on, and on
    # the book read then there is nothing to reduce.
    with pytest.raises(OrderRejected, match="reduce-only order would open a position"):
        await exchange.create_order(request(SELL, "0.1", reduce_only=True))
    assert await account_version(sessionmaker, "user-1") == (version or 0) + 1
    assert await exchange.get_position("BTCUSDT") is None
    canceled = await exchange.get_order("BTCUSDT", order_id=take.order_id)
    assert canceled is not None and canceled.status == OrderStatus.CANCELED
    assert await count(sessionmaker, PaperOrder) == 3

    # Equally a process_price of another instance: the known book has no ETH position to
    # reduce, the book read then has the one the limit opened, and the close fills.
    await exchange.set_leverage("ETHUSDT", 5)
    limit = await exchange.create_order(
        request(BUY, "1", symbol="ETHUSDT", kind=OrderType.LIMIT, price="3400")
    )
    trigger = PaperExchange(pool, "user-1", feed, starting_balance=START)
    [filled] = await trigger.process_price("ETHUSDT", D("3390"))
    assert filled.order_id == limit.order_id
    closed = await exchange.create_order(request(SELL, "1", symbol="ETHUSDT", reduce_only=True))
    assert closed.status == OrderStatus.FILLED
    assert closed.realized_pnl == D("3498.25") - D("3400")  # 3500 - 0.05 %, 1 ETH
    assert await exchange.get_positions() == []
    await assert_books_balance(sessionmaker, "user-1")


# --------------------------------------------------------------------------- look-ups, cancel


async def test_get_order_by_either_id(exchange: PaperExchange) -> None:
    placed = await exchange.create_order(request(BUY, "0.1", client_order_id="sig-9-entry"))

    by_client = await exchange.get_order("BTCUSDT", client_order_id="sig-9-entry")
    by_id = await exchange.get_order("BTCUSDT", order_id=placed.order_id)

    assert by_client == by_id == placed
    assert await exchange.get_order("BTCUSDT", client_order_id="never-used") is None
    assert await exchange.get_order("BTCUSDT", order_id=str(uuid.uuid4())) is None
    assert await exchange.get_order("BTCUSDT", order_id="not-a-uuid") is None
    assert await exchange.get_order("ETHUSDT", client_order_id="sig-9-entry") is None
    with pytest.raises(ValueError, match="exactly one"):
        await exchange.get_order("BTCUSDT")


async def test_cancel(exchange: PaperExchange) -> None:
    resting = await exchange.create_order(
        request(BUY, "0.1", kind=OrderType.LIMIT, price="60000", client_order_id="lim-1")
    )
    filled = await exchange.create_order(request(BUY, "0.01", symbol="ETHUSDT"))

    canceled = await exchange.cancel_order("BTCUSDT", client_order_id="lim-1")

    assert canceled.order_id == resting.order_id
    assert canceled.status == OrderStatus.CANCELED
    assert canceled.updated_at >= resting.updated_at
    assert await exchange.get_open_orders() == []
    # Cancelling what is no longer open returns it unchanged.
    assert await exchange.cancel_order("BTCUSDT", order_id=resting.order_id) == canceled
    assert await exchange.cancel_order("ETHUSDT", order_id=filled.order_id) == filled
    # A canceled order never fills.
    assert await exchange.process_price("BTCUSDT", D("50000")) == []
    with pytest.raises(OrderNotFound):
        await exchange.cancel_order("BTCUSDT", client_order_id="no-such-order")
