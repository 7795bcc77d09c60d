"""The Bybit v5 emulator driven through ccxt's real async `bybit` client: markets, orders of
every kind and their look-ups, fills, fees, positions, closed PnL, balances, leverage, position
mode, key permissions, signature checks and injected faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from app.exchanges.price_feed import base_price
from app.exchanges.symbols import PAPER_MARKETS
from tests.conftest import SecretsSeen
from tests.exchange_sim.bybit_v5 import (
    INSTRUMENTS_INFO,
    ORDER_CREATE,
    ORDER_REALTIME,
    TICKERS,
    TRADING_STOP,
    BybitV5Server,
    make_client,
)

BTC, ETH, SOL = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"
KEY, SECRET = "bybit-test-key", "bybit-test-secret-0123456789"

Connect = Callable[..., Any]


@pytest.fixture
def bybit() -> Iterator[BybitV5Server]:
    with BybitV5Server() as server:
        yield server


@pytest.fixture
async def connect(bybit: BybitV5Server, secrets_seen: SecretsSeen) -> AsyncIterator[Connect]:
    """`connect(key, secret, **ccxt_options)`: a ccxt client of that key; all closed after."""
    clients: list[Any] = []

    def make(api_key: str = KEY, secret: str = SECRET, **options: Any) -> Any:
        secrets_seen.add(secret)  # the secret signs requests and must never be logged
        client = make_client(bybit, api_key, secret, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def trader(bybit: BybitV5Server, connect: Connect) -> Any:
    """A client of a one-way account holding 10,000 USDT."""
    bybit.add_account(KEY, SECRET)
    return connect()


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not become true in time"
        await asyncio.sleep(0.02)


async def raw_orders(client: Any, **query: str) -> list[dict[str, Any]]:
    response = await client.private_get_v5_order_realtime({"category": "linear", **query})
    return list(response["result"]["list"])


async def closed_pnl(client: Any, symbol: str) -> list[dict[str, Any]]:
    response = await client.private_get_v5_position_closed_pnl(
        {"category": "linear", "symbol": symbol}
    )
    return list(response["result"]["list"])


async def market(client: Any, symbol: str, side: str, amount: str, **params: Any) -> Any:
    return await client.create_order(symbol, "market", side, amount, None, params)


def usdt(balance: dict[str, Any]) -> dict[str, Any]:
    coins = balance["info"]["result"]["list"][0]["coin"]
    return next(coin for coin in coins if coin["coin"] == "USDT")


# --------------------------------------------------------------------------- market data


async def test_markets_are_the_paper_perpetuals_with_their_rules(
    bybit: BybitV5Server, trader: Any
) -> None:
    markets = await trader.load_markets()

    assert {m["id"] for m in markets.values()} == set(PAPER_MARKETS)
    assert all(m["swap"] and m["linear"] and m["settle"] == "USDT" for m in markets.values())
    btc = markets[BTC]
    assert btc["precision"] == {"amount": 0.001, "price": 0.1}
    assert btc["limits"]["cost"]["min"] == 100
    assert btc["limits"]["leverage"]["max"] == 125
    assert btc["info"]["lotSizeFilter"]["minNotionalValue"] == "100"
    assert btc["info"]["contractType"] == "LinearPerpetual"
    # Only linear instruments were asked for: no spot, inverse or option markets.
    categories = {r.params["category"] for r in bybit.requests if r.path == INSTRUMENTS_INFO}
    assert categories == {"linear"}


async def test_ticker_and_server_time(bybit: BybitV5Server, trader: Any) -> None:
    ticker = await trader.fetch_ticker(BTC)
    assert Decimal(ticker["info"]["lastPrice"]) == base_price("BTCUSDT")

    bybit.set_price("BTCUSDT", Decimal("64123.4"))
    ticker = await trader.fetch_ticker(BTC)
    assert ticker["info"]["lastPrice"] == "64123.4"
    assert ticker["info"]["markPrice"] == "64123.4"

    before = int(time.time() * 1000)
    assert before - 1000 <= await trader.fetch_time() <= int(time.time() * 1000) + 1000
    bybit.set_clock_skew(60_000)
    assert await trader.fetch_time() - before >= 59_000


async def test_unknown_symbol_ticker_is_refused(trader: Any) -> None:
    with pytest.raises(ccxt.BadSymbol, match="Not supported symbols"):
        await trader.public_get_v5_market_tickers({"category": "linear", "symbol": "NOPEUSDT"})


# --------------------------------------------------------------------------- orders


async def test_market_order_fills_at_once_with_the_taker_fee(
    bybit: BybitV5Server, trader: Any
) -> None:
    placed = await market(trader, BTC, "buy", "0.01", clientOrderId="entry-1")

    assert set(placed["info"]) == {"orderId", "orderLinkId"}  # Bybit answers only the ids
    assert placed["clientOrderId"] == "entry-1"
    order = await trader.fetch_order(placed["id"], BTC, {"acknowledged": True})
    assert order["status"] == "closed"
    assert order["info"]["orderStatus"] == "Filled"
    assert order["info"]["cumExecQty"] == "0.01"
    assert order["info"]["avgPrice"] == "65000"
    assert Decimal(order["info"]["cumExecFee"]) == Decimal("650") * Decimal("0.00055")
    assert bybit.balance(KEY).wallet_balance == Decimal("10000") - Decimal("0.3575")

    bybit.slippage = Decimal("0.001")
    sold = await market(trader, BTC, "sell", "0.01", clientOrderId="exit-1")
    order = await trader.fetch_order(sold["id"], BTC, {"acknowledged": True})
    assert order["info"]["avgPrice"] == "64935"  # 65000 less 0.1 %, against the taker


async def test_limit_order_rests_until_the_price_crosses_it(
    bybit: BybitV5Server, trader: Any
) -> None:
    placed = await trader.create_order(
        BTC, "limit", "buy", "0.01", "64000", {"clientOrderId": "l1"}
    )

    [resting] = await trader.fetch_open_orders(BTC)
    assert resting["id"] == placed["id"]
    assert resting["info"]["orderStatus"] == "New"
    assert usdt(await trader.fetch_balance())["totalOrderIM"] == "64"  # 640 at 10x

    bybit.set_price("BTCUSDT", Decimal("64500"))
    assert len(await trader.fetch_open_orders(BTC)) == 1
    bybit.set_price("BTCUSDT", Decimal("63990"))

    filled = await trader.fetch_closed_order(placed["id"], BTC)
    assert filled["info"]["avgPrice"] == "64000"
    [trade] = await trader.fetch_my_trades(BTC, params={"orderId": placed["id"]})
    assert trade["takerOrMaker"] == "maker"
    assert trade["info"]["execFee"] == "0.128"  # 640 x 0.0002
    assert await trader.fetch_open_orders(BTC) == []


async def test_stop_loss_rests_then_closes_the_position_with_closed_pnl(
    bybit: BybitV5Server, trader: Any
) -> None:
    await market(trader, BTC, "buy", "0.01", clientOrderId="entry")
    stop = await market(
        trader, BTC, "sell", "0.01", clientOrderId="stop", reduceOnly=True, stopLossPrice="64000"
    )
    target = await market(
        trader, BTC, "sell", "0.01", clientOrderId="tp", reduceOnly=True, takeProfitPrice="66000"
    )

    sent = next(
        r
        for r in bybit.requests
        if r.path == ORDER_CREATE and r.params.get("orderLinkId") == "stop"
    )
    assert sent.method == "POST"
    assert (sent.params["triggerPrice"], sent.params["triggerDirection"]) == ("64000", 2)
    assert sent.params["reduceOnly"] is True
    resting = {o["id"]: o for o in await trader.fetch_open_orders(BTC)}
    assert resting[stop["id"]]["info"]["orderStatus"] == "Untriggered"
    assert resting[stop["id"]]["stopLossPrice"] == 64000
    assert resting[target["id"]]["takeProfitPrice"] == 66000
    conditional = await trader.fetch_open_orders(BTC, params={"trigger": True})
    assert {o["id"] for o in conditional} == {stop["id"], target["id"]}
    assert await trader.fetch_open_orders(BTC, params={"orderFilter": "Order"}) == []

    bybit.set_price("BTCUSDT", Decimal("64500"))
    assert len(await trader.fetch_open_orders(BTC)) == 2
    bybit.set_price("BTCUSDT", Decimal("63950"))

    assert await trader.fetch_positions() == []
    [flat] = await trader.fetch_positions([BTC])
    assert flat["info"]["size"] == "0" and flat["info"]["side"] == ""
    stopped = await trader.fetch_closed_order(stop["id"], BTC)
    assert stopped["info"]["avgPrice"] == "63950"
    [tp] = await raw_orders(trader, symbol="BTCUSDT", orderLinkId="tp")
    assert tp["orderStatus"] == "Deactivated"  # its position is gone

    [record] = await closed_pnl(trader, "BTCUSDT")
    open_fee, close_fee = Decimal("650") * Decimal("0.00055"), Decimal("639.5") * Decimal("0.00055")
    assert record["orderId"] == stop["id"]
    assert record["side"] == "Sell"
    assert (record["closedSize"], record["avgEntryPrice"], record["avgExitPrice"]) == (
        "0.01",
        "65000",
        "63950",
    )
    assert Decimal(record["openFee"]) == open_fee
    assert Decimal(record["closeFee"]) == close_fee
    expected = Decimal("-10.5") - open_fee - close_fee
    assert Decimal(record["closedPnl"]) == expected
    assert Decimal(usdt(await trader.fetch_balance())["walletBalance"]) == 10000 + expected


async def test_take_profit_closes_a_short_in_profit(bybit: BybitV5Server, trader: Any) -> None:
    await market(trader, SOL, "sell", "1", clientOrderId="short")
    await market(
        trader, SOL, "buy", "1", clientOrderId="tp", reduceOnly=True, takeProfitPrice="140"
    )
    [position] = await trader.fetch_positions([SOL])
    assert position["side"] == "short" and position["contracts"] == 1

    bybit.set_price("SOLUSDT", Decimal("139.5"))

    [record] = await closed_pnl(trader, "SOLUSDT")
    fees = (Decimal("150") + Decimal("139.5")) * Decimal("0.00055")
    assert Decimal(record["closedPnl"]) == Decimal("10.5") - fees
    assert bybit.balance(KEY).wallet_balance == Decimal("10000") + Decimal("10.5") - fees
    assert bybit.positions(KEY) == []


async def test_attached_stop_loss_and_take_profit_guard_the_position(
    bybit: BybitV5Server, trader: Any
) -> None:
    await market(
        trader,
        ETH,
        "buy",
        "0.1",
        clientOrderId="with-tpsl",
        stopLoss={"triggerPrice": "3400"},
        takeProfit={"triggerPrice": "3700"},
    )

    [position] = await trader.fetch_positions([ETH])
    assert (position["info"]["stopLoss"], position["info"]["takeProfit"]) == ("3400", "3700")
    guards = {o["info"]["stopOrderType"]: o for o in await trader.fetch_open_orders(ETH)}
    assert set(guards) == {"StopLoss", "TakeProfit"}
    assert guards["StopLoss"]["info"]["qty"] == "0.1"

    bybit.set_price("ETHUSDT", Decimal("3700"))

    assert bybit.positions(KEY) == []
    [flat] = await trader.fetch_positions([ETH])
    assert flat["info"]["stopLoss"] == "0"
    statuses = {o.stop_order_type: o.status for o in bybit.orders(KEY) if o.stop_order_type}
    assert statuses == {"TakeProfit": "Filled", "StopLoss": "Deactivated"}


async def test_stop_loss_and_take_profit_together_go_through_trading_stop(
    bybit: BybitV5Server, trader: Any
) -> None:
    await market(trader, ETH, "buy", "0.1", clientOrderId="entry")
    await market(trader, ETH, "sell", "0.1", stopLossPrice="3300", takeProfitPrice="3800")

    assert any(r.path == TRADING_STOP for r in bybit.requests)
    kinds = {o["info"]["stopOrderType"] for o in await trader.fetch_open_orders(ETH)}
    assert kinds == {"PartialStopLoss", "PartialTakeProfit"}
    bybit.set_price("ETHUSDT", Decimal("3290"))
    assert bybit.positions(KEY) == []
    assert await trader.fetch_open_orders(ETH) == []


async def test_reduce_only_never_opens_increases_or_flips(
    bybit: BybitV5Server, trader: Any
) -> None:
    with pytest.raises(ccxt.InvalidOrder, match="110017"):
        await market(trader, BTC, "sell", "0.01", reduceOnly=True)
    await market(trader, BTC, "buy", "0.01")
    with pytest.raises(ccxt.InvalidOrder, match="110017"):
        await market(trader, BTC, "buy", "0.01", reduceOnly=True)

    closing = await market(trader, BTC, "sell", "0.02", clientOrderId="close", reduceOnly=True)

    order = await trader.fetch_order(closing["id"], BTC, {"acknowledged": True})
    assert (order["info"]["qty"], order["info"]["cumExecQty"]) == ("0.01", "0.01")
    assert bybit.positions(KEY) == []  # closed, not flipped short

    await market(trader, BTC, "buy", "0.01")
    stop = await market(trader, BTC, "sell", "0.01", reduceOnly=True, stopLossPrice="60000")
    await market(trader, BTC, "sell", "0.01")  # closes the long by hand
    [row] = await raw_orders(trader, symbol="BTCUSDT", orderId=stop["id"])
    assert row["orderStatus"] == "Deactivated"


async def test_orders_are_found_by_order_link_id_open_or_closed(
    bybit: BybitV5Server, trader: Any
) -> None:
    resting = await trader.create_order(
        BTC, "limit", "buy", "0.01", "60000", {"clientOrderId": "open-1"}
    )
    await market(trader, BTC, "buy", "0.01", clientOrderId="closed-1")

    [open_row] = await raw_orders(trader, symbol="BTCUSDT", orderLinkId="open-1")
    [closed_row] = await raw_orders(trader, symbol="BTCUSDT", orderLinkId="closed-1")
    assert (open_row["orderStatus"], closed_row["orderStatus"]) == ("New", "Filled")
    history = await trader.private_get_v5_order_history(
        {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "closed-1"}
    )
    assert [row["orderStatus"] for row in history["result"]["list"]] == ["Filled"]
    assert await raw_orders(trader, symbol="BTCUSDT", orderLinkId="never-sent") == []
    # Without an id the real-time list holds only open orders.
    assert [row["orderLinkId"] for row in await raw_orders(trader, symbol="BTCUSDT")] == ["open-1"]

    found = await trader.fetch_open_order("", BTC, {"orderLinkId": "open-1"})
    assert found["id"] == resting["id"]
    closed = await trader.fetch_closed_order("", BTC, {"orderLinkId": "closed-1"})
    assert closed["clientOrderId"] == "closed-1"
    assert (await trader.fetch_order(resting["id"], BTC, {"acknowledged": True}))[
        "status"
    ] == "open"
    with pytest.raises(ccxt.OrderNotFound):
        await trader.fetch_open_order("no-such-id", BTC)
    with pytest.raises(ccxt.OrderNotFound):
        await trader.fetch_order("no-such-id", BTC, {"acknowledged": True})


async def test_cancel_open_and_conditional_orders_but_not_finished_ones(trader: Any) -> None:
    limit = await trader.create_order(BTC, "limit", "buy", "0.01", "60000", {"clientOrderId": "c1"})
    await market(trader, BTC, "buy", "0.01", clientOrderId="c2")
    stop = await market(trader, BTC, "sell", "0.01", reduceOnly=True, stopLossPrice="60000")

    await trader.cancel_order(limit["id"], BTC)
    await trader.cancel_order(stop["id"], BTC)

    [limit_row] = await raw_orders(trader, symbol="BTCUSDT", orderId=limit["id"])
    [stop_row] = await raw_orders(trader, symbol="BTCUSDT", orderId=stop["id"])
    assert (limit_row["orderStatus"], limit_row["cancelType"]) == ("Cancelled", "CancelByUser")
    assert stop_row["orderStatus"] == "Deactivated"
    assert await trader.fetch_open_orders(BTC) == []
    with pytest.raises(ccxt.OrderNotFound, match="110001"):
        await trader.cancel_order(limit["id"], BTC)
    with pytest.raises(ccxt.OrderNotFound, match="order not exists or too late to cancel"):
        await trader.cancel_order("no-such-id", BTC)


async def test_executions_report_fees_and_closed_size(trader: Any) -> None:
    opened = await market(trader, ETH, "buy", "0.1", clientOrderId="o")
    closing = await market(trader, ETH, "sell", "0.1", clientOrderId="c")

    [entry] = await trader.fetch_my_trades(ETH, params={"orderId": opened["id"]})
    [exit_] = await trader.fetch_my_trades(ETH, params={"orderId": closing["id"]})

    assert entry["order"] == opened["id"]
    assert (entry["side"], entry["amount"], entry["price"]) == ("buy", 0.1, 3500)
    assert entry["fee"]["currency"] == "USDT"
    assert entry["info"]["execType"] == "Trade"
    assert entry["info"]["execFee"] == "0.1925"  # 350 x 0.00055
    assert entry["info"]["feeRate"] == "0.00055"
    assert (entry["info"]["closedSize"], exit_["info"]["closedSize"]) == ("0", "0.1")
    assert exit_["takerOrMaker"] == "taker"


# --------------------------------------------------------------------------- account


async def test_positions_and_balance_follow_fills_and_price(
    bybit: BybitV5Server, trader: Any
) -> None:
    await market(trader, ETH, "buy", "0.1")
    bybit.set_price("ETHUSDT", Decimal("3600"))

    [position] = await trader.fetch_positions([ETH])
    info = position["info"]
    assert (position["side"], position["contracts"], position["hedged"]) == ("long", 0.1, False)
    assert (info["side"], info["size"], info["avgPrice"], info["markPrice"]) == (
        "Buy",
        "0.1",
        "3500",
        "3600",
    )
    assert (info["unrealisedPnl"], info["positionIdx"], info["leverage"]) == ("10", 0, "10")
    assert info["positionIM"] == "35"
    assert Decimal(info["liqPrice"]) < Decimal("3500")
    assert [p["symbol"] for p in await trader.fetch_positions()] == [ETH]

    balance = await trader.fetch_balance()
    coin = usdt(balance)
    wallet = Decimal("10000") - Decimal("0.1925")
    assert Decimal(coin["walletBalance"]) == wallet
    assert (coin["unrealisedPnl"], coin["totalPositionIM"]) == ("10", "35")
    assert Decimal(coin["equity"]) == wallet + 10
    assert Decimal(coin["availableToWithdraw"]) == wallet - 35
    assert balance["info"]["result"]["list"][0]["accountType"] == "UNIFIED"
    assert balance["USDT"]["total"] == float(wallet)


async def test_margin_must_cover_a_new_order(trader: Any) -> None:
    with pytest.raises(ccxt.InsufficientFunds, match="110007"):
        await market(trader, BTC, "buy", "2")  # 130,000 notional needs 13,000 at 10x

    await trader.set_leverage(20, BTC)
    await market(trader, BTC, "buy", "2")  # 6,500 of margin now


async def test_leverage_is_set_once_and_capped(trader: Any) -> None:
    await trader.set_leverage(20, BTC)

    [position] = await trader.fetch_positions([BTC])
    assert position["info"]["leverage"] == "20"
    with pytest.raises(ccxt.BadRequest, match="110043"):
        await trader.set_leverage(20, BTC)
    with pytest.raises(ccxt.BadRequest, match="110013"):
        await trader.set_leverage(200, BTC)


async def test_hedge_mode_needs_position_idx_and_switches_only_when_flat(
    bybit: BybitV5Server, connect: Connect
) -> None:
    bybit.add_account("hedged-key", SECRET, hedge_mode=True)
    client = connect("hedged-key")

    with pytest.raises(ccxt.BadRequest, match="position idx not match position mode"):
        await market(client, BTC, "buy", "0.01")
    await market(client, BTC, "buy", "0.01", hedged=True)
    rows = [p["info"] for p in await client.fetch_positions([BTC])]
    assert [(r["positionIdx"], r["size"]) for r in rows] == [(1, "0.01"), (2, "0")]
    with pytest.raises(ccxt.BadRequest, match="110024"):
        await client.set_position_mode(False)

    await market(client, BTC, "sell", "0.01", hedged=True, reduceOnly=True)
    await client.set_position_mode(False)
    with pytest.raises(ccxt.NoChange, match="110025"):
        await client.set_position_mode(False)
    await market(client, BTC, "buy", "0.01")
    assert [p.position_idx for p in bybit.positions("hedged-key")] == [0]


async def test_one_way_mode_refuses_a_hedge_position_idx(trader: Any) -> None:
    with pytest.raises(ccxt.BadRequest, match="10001"):
        await market(trader, BTC, "buy", "0.01", positionIdx=1)


async def test_key_permissions_are_reported_and_enforced(
    bybit: BybitV5Server, connect: Connect
) -> None:
    bybit.add_account("withdrawer", SECRET, can_withdraw=True)
    bybit.add_account("reader", SECRET, read_only=True)
    bybit.add_account("no-trade", SECRET, can_trade=False)

    withdrawer = (await connect("withdrawer").private_get_v5_user_query_api())["result"]
    reader_client = connect("reader")
    reader = (await reader_client.private_get_v5_user_query_api())["result"]
    no_trade_client = connect("no-trade")
    no_trade = (await no_trade_client.private_get_v5_user_query_api())["result"]

    assert withdrawer["readOnly"] == 0 and "Withdraw" in withdrawer["permissions"]["Wallet"]
    assert withdrawer["permissions"]["ContractTrade"] == ["Order", "Position"]
    assert reader["readOnly"] == 1 and "Withdraw" not in reader["permissions"]["Wallet"]
    assert no_trade["permissions"]["ContractTrade"] == []
    assert (await reader_client.fetch_balance())["USDT"]["total"] == 10000
    for client in (reader_client, no_trade_client):
        with pytest.raises(ccxt.PermissionDenied, match="10005"):
            await market(client, BTC, "buy", "0.01")
    assert bybit.orders("reader") == bybit.orders("no-trade") == []


# --------------------------------------------------------------------------- refusals


async def test_bad_keys_signatures_and_clocks_are_refused(
    bybit: BybitV5Server, connect: Connect
) -> None:
    bybit.add_account(KEY, SECRET)

    with pytest.raises(ccxt.AuthenticationError, match="10004"):
        await connect(KEY, "a-wrong-secret").fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="10003"):
        await connect("unknown-key", SECRET).fetch_balance()
    client = connect()
    await client.fetch_balance()
    bybit.set_clock_skew(-30_000)  # the server is behind: the request looks from the future
    with pytest.raises(ccxt.InvalidNonce, match="10002"):
        await client.fetch_balance()


async def test_orders_bybit_would_refuse(bybit: BybitV5Server, trader: Any) -> None:
    await market(trader, BTC, "buy", "0.01", clientOrderId="dup")
    with pytest.raises(ccxt.InvalidOrder, match="110072"):
        await market(trader, BTC, "buy", "0.01", clientOrderId="dup")
    with pytest.raises(ccxt.InvalidOrder, match="110094"):
        await market(trader, BTC, "buy", "0.001")  # 65 USDT, under the 100 minimum
    with pytest.raises(ccxt.InvalidOrder, match="110093"):
        await market(trader, BTC, "sell", "0.01", reduceOnly=True, stopLossPrice="66000")
    raw = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market"}
    with pytest.raises(ccxt.BadRequest, match="minimum limit"):
        await trader.private_post_v5_order_create({**raw, "qty": "0.0001"})
    with pytest.raises(ccxt.BadRequest, match="qty err"):
        await trader.private_post_v5_order_create({**raw, "qty": "0.0105"})

    assert [o.order_link_id for o in bybit.orders(KEY)] == ["dup"]


# --------------------------------------------------------------------------- faults


async def test_rate_limits_and_gateway_errors_have_no_effect(
    bybit: BybitV5Server, trader: Any
) -> None:
    await trader.load_markets()
    bybit.fail_next("POST", ORDER_CREATE, 200, retry_after=2)
    bybit.fail_next("GET", TICKERS, 503, times=2)

    with pytest.raises(ccxt.RateLimitExceeded, match="10006"):
        await market(trader, BTC, "buy", "0.01", clientOrderId="limited")
    reset = int(trader.last_response_headers["X-Bapi-Limit-Reset-Timestamp"])
    assert reset >= bybit.now_ms() + 1000
    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await trader.fetch_ticker(BTC)
    assert (await trader.fetch_ticker(BTC))["last"] == 65000

    bybit.fail_next("POST", ORDER_CREATE, 403)  # the gateway's IP limit
    with pytest.raises(ccxt.RateLimitExceeded, match="access too frequent"):
        await market(trader, BTC, "buy", "0.01", clientOrderId="blocked")

    assert bybit.orders(KEY) == []
    await market(trader, BTC, "buy", "0.01", clientOrderId="limited")  # the id is still free


async def test_a_stalled_create_times_out_but_the_order_exists(
    bybit: BybitV5Server, connect: Connect
) -> None:
    bybit.add_account(KEY, SECRET)
    client = connect(timeout=1000)
    await client.load_markets()
    await client.fetch_balance()  # ccxt's account checks are done before the create
    bybit.accept_then_stall("POST", ORDER_CREATE, seconds=3)

    with pytest.raises(ccxt.RequestTimeout):
        await market(client, BTC, "buy", "0.01", clientOrderId="stalled")

    [row] = await raw_orders(client, symbol="BTCUSDT", orderLinkId="stalled")
    assert row["orderStatus"] == "Filled"


async def test_a_delayed_create_takes_effect_only_after_the_delay(
    bybit: BybitV5Server, connect: Connect
) -> None:
    bybit.add_account(KEY, SECRET)
    client = connect(timeout=1000)
    await client.load_markets()
    await client.fetch_balance()
    bybit.delay("POST", ORDER_CREATE, seconds=2)

    with pytest.raises(ccxt.RequestTimeout):
        await market(client, BTC, "buy", "0.01", clientOrderId="late")
    assert await raw_orders(client, symbol="BTCUSDT", orderLinkId="late") == []

    await eventually(lambda: any(o.order_link_id == "late" for o in bybit.orders(KEY)))
    assert [r.method for r in bybit.requests if r.path == ORDER_REALTIME] == ["GET"]
