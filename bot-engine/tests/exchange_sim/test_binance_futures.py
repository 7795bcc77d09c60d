"""The Binance USDⓈ-M futures emulator, driven through the real ccxt `binanceusdm` client:
every call the exchange adapter makes, the trading rules (fills, fees, realised PnL,
reduce-only, conditional orders), Binance's errors as ccxt raises them, and the faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from typing import Any

import ccxt
import pytest

from tests.exchange_sim.binance_futures import (
    ACCOUNT_V3,
    ALGO_ORDER,
    CCXT_API_PATHS,
    ORDER,
    BinanceFuturesServer,
    make_client,
    use_linear_error_map,
)

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
KEY, SECRET = "key-main", "secret-main"
START = Decimal("10000")
MakeClient = Callable[..., Any]


@pytest.fixture
def server() -> Iterator[BinanceFuturesServer]:
    with BinanceFuturesServer() as running:
        running.add_account(KEY, SECRET)
        yield running


@pytest.fixture
async def make(server: BinanceFuturesServer) -> AsyncIterator[MakeClient]:
    """ccxt clients on the server (the main account's key unless told), closed at the end."""
    clients: list[Any] = []

    def factory(api_key: str = KEY, secret: str = SECRET, **options: Any) -> Any:
        client = make_client(server, api_key, secret, **options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
def client(make: MakeClient) -> Any:
    return make()


async def market(client: Any, side: str, amount: float, symbol: str = BTC, **params: Any) -> Any:
    params = {"reduceOnly": False, "newOrderRespType": "RESULT"} | params
    return await client.create_order(symbol, "market", side, amount, None, params)


async def stop_loss(client: Any, side: str, amount: float, trigger: float, **params: Any) -> Any:
    params = {"clientOrderId": "sl-1", "reduceOnly": True, "stopLossPrice": trigger} | params
    return await client.create_order(BTC, "market", side, amount, None, params)


def info_decimal(structure: dict[str, Any], key: str) -> Decimal:
    return Decimal(structure["info"][key])


# --------------------------------------------------------------------------- wiring
async def test_api_urls_point_every_ccxt_section_here(server: BinanceFuturesServer) -> None:
    ccxt_urls = ccxt.binanceusdm().urls["api"]
    assert set(server.api_urls) == set(ccxt_urls) == set(CCXT_API_PATHS)
    for name, url in server.api_urls.items():
        assert url == server.url + ccxt_urls[name].split(".com", 1)[1], name


async def test_markets_ticker_and_server_time(server: BinanceFuturesServer, client: Any) -> None:
    markets = await client.load_markets()
    assert markets[BTC]["linear"] and markets[BTC]["precision"]["amount"] == 0.001
    server.set_price("BTCUSDT", Decimal("64321.5"))
    assert (await client.fetch_ticker(BTC))["last"] == 64321.5

    server.set_clock_offset(-60_000)
    assert abs(await client.fetch_time() - server.now_ms()) < 5_000
    assert server.now_ms() < client.milliseconds() - 50_000


# --------------------------------------------------------------------------- orders
async def test_market_order_fills_at_once_at_the_price_with_the_taker_fee(
    server: BinanceFuturesServer, client: Any
) -> None:
    order = await market(client, "buy", 0.01, clientOrderId="entry-1")

    assert order["status"] == "closed" and order["clientOrderId"] == "entry-1"
    assert order["info"]["status"] == "FILLED"
    assert info_decimal(order, "executedQty") == Decimal("0.010")
    assert info_decimal(order, "avgPrice") == Decimal("65000")
    assert info_decimal(order, "cumQuote") == Decimal("650")
    [trade] = await client.fetch_my_trades(BTC, params={"orderId": order["id"]})
    assert trade["info"]["commission"] == "0.26000000"  # 650 × 0.0004
    assert trade["info"]["realizedPnl"] == "0.00000000"
    assert trade["info"]["maker"] is False and trade["info"]["buyer"] is True
    assert trade["info"]["positionSide"] == "BOTH" and trade["info"]["commissionAsset"] == "USDT"
    assert server.balance(KEY) == START - Decimal("0.26")


async def test_market_fills_move_by_the_configured_slippage(make: MakeClient) -> None:
    with BinanceFuturesServer(slippage=Decimal("0.001")) as slipping:
        slipping.add_account(KEY, SECRET)
        client = make_client(slipping, KEY, SECRET)
        try:
            buy = await market(client, "buy", 0.01)
            sell = await market(client, "sell", 0.01, reduceOnly=True)
        finally:
            await client.close()
    assert info_decimal(buy, "avgPrice") == Decimal("65065.0")
    assert info_decimal(sell, "avgPrice") == Decimal("64935.0")


async def test_ack_response_reports_the_order_as_new(client: Any) -> None:
    order = await market(client, "buy", 0.01, newOrderRespType="ACK")
    assert order["info"]["status"] == "NEW"
    assert (await client.fetch_order(order["id"], BTC))["status"] == "closed"


async def test_limit_order_rests_until_the_price_crosses_it_then_fills_as_maker(
    server: BinanceFuturesServer, client: Any
) -> None:
    order = await client.create_order(BTC, "limit", "buy", 0.01, 64000, {"clientOrderId": "l-1"})
    assert order["status"] == "open"
    assert [o["id"] for o in await client.fetch_open_orders(BTC)] == [order["id"]]

    server.set_price("BTCUSDT", Decimal("64500"))
    assert (await client.fetch_order(order["id"], BTC))["status"] == "open"
    server.set_price("BTCUSDT", Decimal("63900"))

    filled = await client.fetch_order(order["id"], BTC)
    assert filled["status"] == "closed" and info_decimal(filled, "avgPrice") == Decimal("64000")
    [trade] = await client.fetch_my_trades(BTC, params={"orderId": order["id"]})
    assert trade["info"]["maker"] is True and trade["info"]["commission"] == "0.12800000"
    assert await client.fetch_open_orders(BTC) == []


async def test_marketable_limit_order_fills_at_once_no_worse_than_its_price(client: Any) -> None:
    order = await client.create_order(BTC, "limit", "buy", 0.01, 66000, {})
    assert order["status"] == "closed" and info_decimal(order, "avgPrice") == Decimal("65000")


# --------------------------------------------------------------------------- conditional
async def test_stop_loss_rests_then_closes_the_long_with_the_realized_loss(
    server: BinanceFuturesServer, client: Any
) -> None:
    await market(client, "buy", 0.01)
    stop = await stop_loss(client, "sell", 0.01, 60000)
    assert stop["status"] == "open" and stop["info"]["algoStatus"] == "NEW"
    assert stop["info"]["orderType"] == "STOP_MARKET" and stop["triggerPrice"] == 60000
    sent = server.requests_to("POST", ALGO_ORDER)[-1].params
    assert sent["algoType"] == "CONDITIONAL" and sent["clientAlgoId"] == "sl-1"
    assert sent["triggerPrice"] == "60000" and sent["reduceOnly"] == "true"
    open_stops = await client.fetch_open_orders(BTC, params={"trigger": True})
    assert [o["id"] for o in open_stops] == [stop["id"]]

    server.set_price("BTCUSDT", Decimal("60500"))
    assert (await client.fetch_order(stop["id"], BTC, {"trigger": True}))["status"] == "open"
    server.set_price("BTCUSDT", Decimal("59950"))  # gaps through the trigger

    done = await client.fetch_order(stop["id"], BTC, {"trigger": True})
    assert done["status"] == "closed" and done["info"]["algoStatus"] == "FINISHED"
    actual = await client.fetch_order(done["info"]["actualOrderId"], BTC)
    assert actual["status"] == "closed" and actual["type"] == "market"
    assert actual["info"]["origType"] == "STOP_MARKET" and actual["clientOrderId"] == "sl-1"
    [trade] = await client.fetch_my_trades(BTC, params={"orderId": actual["id"]})
    assert Decimal(trade["info"]["price"]) == Decimal("59950")
    assert trade["info"]["realizedPnl"] == "-50.50000000"  # 0.01 × (59950 − 65000), gross
    assert trade["info"]["commission"] == "0.23980000"
    assert await client.fetch_positions([BTC]) == []
    assert server.balance(KEY) == START - Decimal("0.26") - Decimal("50.5") - Decimal("0.2398")
    assert await client.fetch_open_orders(BTC, params={"trigger": True}) == []


async def test_take_profit_closes_a_short_with_the_realized_gain(
    server: BinanceFuturesServer, client: Any
) -> None:
    await market(client, "sell", 1, symbol=ETH)
    [short] = await client.fetch_positions([ETH])
    assert short["side"] == "short" and short["info"]["positionAmt"] == "-1.000"

    params = {"clientOrderId": "tp-1", "reduceOnly": True, "takeProfitPrice": 3000}
    take = await client.create_order(ETH, "market", "buy", 1, None, params)
    assert take["info"]["orderType"] == "TAKE_PROFIT_MARKET"
    server.set_price("ETHUSDT", Decimal("2990"))

    done = await client.fetch_order(None, ETH, {"clientOrderId": "tp-1", "trigger": True})
    assert done["status"] == "closed"
    [trade] = await client.fetch_my_trades(ETH, params={"orderId": done["info"]["actualOrderId"]})
    assert trade["info"]["realizedPnl"] == "510.00000000" and trade["side"] == "buy"
    assert server.positions(KEY) == []


async def test_reduce_only_stop_never_opens_a_position_once_the_position_is_gone(
    server: BinanceFuturesServer, client: Any
) -> None:
    await market(client, "buy", 0.01)
    stop = await stop_loss(client, "sell", 0.01, 60000)
    await market(client, "sell", 0.01, reduceOnly=True)
    # Binance keeps a plain (GTC) reduce-only conditional order after the position closed.
    assert (await client.fetch_order(stop["id"], BTC, {"trigger": True}))["status"] == "open"

    server.set_price("BTCUSDT", Decimal("59000"))

    done = await client.fetch_order(stop["id"], BTC, {"trigger": True})
    actual = await client.fetch_order(done["info"]["actualOrderId"], BTC)
    assert actual["status"] == "expired" and actual["filled"] == 0
    assert server.positions(KEY) == []
    assert await client.fetch_my_trades(BTC, params={"orderId": actual["id"]}) == []


async def test_reduce_only_stop_larger_than_the_position_only_closes_it(
    server: BinanceFuturesServer, client: Any
) -> None:
    await market(client, "buy", 0.01)
    await stop_loss(client, "sell", 0.05, 60000)
    server.set_price("BTCUSDT", Decimal("59000"))
    assert server.positions(KEY) == []
    [order] = [o for o in server.orders(KEY) if o.orig_type == "STOP_MARKET"]
    assert order.executed_qty == Decimal("0.01") and order.status == "EXPIRED"


async def test_gte_gtc_stop_expires_when_its_position_closes(client: Any) -> None:
    await market(client, "buy", 0.01)
    stop = await stop_loss(client, "sell", 0.01, 60000, timeInForce="GTE_GTC")
    await market(client, "sell", 0.01, reduceOnly=True)
    expired = await client.fetch_order(stop["id"], BTC, {"trigger": True})
    assert expired["status"] == "expired" and expired["info"]["algoStatus"] == "EXPIRED"


async def test_reduce_only_limit_order_expires_when_the_position_closes(
    server: BinanceFuturesServer, client: Any
) -> None:
    await market(client, "buy", 0.01)
    params = {"reduceOnly": True}
    target = await client.create_order(BTC, "limit", "sell", 0.01, 70000, params)
    await market(client, "sell", 0.01, reduceOnly=True)
    assert (await client.fetch_order(target["id"], BTC))["status"] == "expired"


async def test_a_stop_that_would_trigger_at_once_is_refused(client: Any) -> None:
    await market(client, "buy", 0.01)
    with pytest.raises(ccxt.ExchangeError, match="-2021"):
        await stop_loss(client, "sell", 0.01, 66000)


# --------------------------------------------------------------------------- look-ups
async def test_orders_are_found_by_id_and_by_client_id_and_unknown_ones_are_not(
    client: Any,
) -> None:
    order = await market(client, "buy", 0.01, clientOrderId="entry-7")
    stop = await stop_loss(client, "sell", 0.01, 60000, clientOrderId="stop-7")

    assert (await client.fetch_order(order["id"], BTC))["clientOrderId"] == "entry-7"
    by_client = await client.fetch_order(None, BTC, {"clientOrderId": "entry-7"})
    assert by_client["id"] == order["id"]
    assert (await client.fetch_order(stop["id"], BTC, {"trigger": True}))["id"] == stop["id"]
    algo = await client.fetch_order(None, BTC, {"clientOrderId": "stop-7", "trigger": True})
    assert algo["id"] == stop["id"] and algo["clientOrderId"] == "stop-7"

    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        await client.fetch_order("123", BTC)
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        await client.fetch_order(None, BTC, {"clientOrderId": "nope"})
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        await client.fetch_order("123", BTC, {"trigger": True})
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        await client.fetch_order(None, BTC, {"clientOrderId": "nope", "trigger": True})


async def test_open_orders_with_and_without_a_symbol(client: Any) -> None:
    btc = await client.create_order(BTC, "limit", "buy", 0.01, 60000, {})
    eth = await client.create_order(ETH, "limit", "sell", 1, 4000, {})
    await market(client, "buy", 0.01)
    stop = await stop_loss(client, "sell", 0.01, 50000)

    assert {o["id"] for o in await client.fetch_open_orders()} == {btc["id"], eth["id"]}
    assert [o["id"] for o in await client.fetch_open_orders(ETH)] == [eth["id"]]
    stops = await client.fetch_open_orders(None, params={"trigger": True})
    assert [o["id"] for o in stops] == [stop["id"]]


async def test_cancel_open_orders_and_refuse_to_cancel_finished_ones(client: Any) -> None:
    resting = await client.create_order(BTC, "limit", "buy", 0.01, 60000, {})
    filled = await market(client, "buy", 0.01)
    stop = await stop_loss(client, "sell", 0.01, 50000)

    canceled = await client.cancel_order(resting["id"], BTC)
    assert canceled["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        await client.cancel_order(resting["id"], BTC)
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        await client.cancel_order(filled["id"], BTC)

    await client.cancel_order(stop["id"], BTC, {"trigger": True})
    assert (await client.fetch_order(stop["id"], BTC, {"trigger": True}))["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        await client.cancel_order(stop["id"], BTC, {"trigger": True})
    assert await client.fetch_open_orders() == []


# --------------------------------------------------------------------------- positions
async def test_positions_report_entry_mark_pnl_and_margins(
    server: BinanceFuturesServer, client: Any
) -> None:
    await market(client, "buy", 0.01)
    server.set_price("BTCUSDT", Decimal("66000"))
    await market(client, "buy", 0.03)
    await market(client, "sell", 1, symbol=ETH)
    server.set_price("BTCUSDT", Decimal("67000"))

    [btc] = await client.fetch_positions([BTC])
    assert info_decimal(btc, "entryPrice") == Decimal("65750")  # (650 + 1980) / 0.04
    assert btc["side"] == "long" and btc["contracts"] == 0.04
    assert info_decimal(btc, "markPrice") == Decimal("67000")
    assert info_decimal(btc, "unRealizedProfit") == Decimal("50")  # 0.04 × (67000 − 65750)
    assert info_decimal(btc, "initialMargin") == Decimal("134")  # 2680 / 20
    assert btc["info"]["positionSide"] == "BOTH" and btc["info"]["isolatedMargin"] == "0"
    both = await client.fetch_positions()
    assert {p["symbol"]: p["info"]["positionAmt"] for p in both} == {
        BTC: "0.040",
        ETH: "-1.000",
    }


async def test_v2_positions_carry_the_leverage_set(client: Any) -> None:
    await client.set_leverage(10, BTC)
    await market(client, "buy", 0.01)
    [position] = await client.fetch_positions([BTC], {"useV2": True})
    # v2 carries the leverage (v3 does not) and no margin figures.
    assert position["leverage"] == 10 and position["info"]["leverage"] == "10"
    assert info_decimal(position, "notional") == Decimal("650")
    assert "initialMargin" not in position["info"]


async def test_liquidation_price_of_a_leveraged_cross_position(
    server: BinanceFuturesServer, make: MakeClient
) -> None:
    server.add_account("key-small", "secret-small", balance=Decimal("100"))
    small = make("key-small", "secret-small")
    await market(small, "buy", 0.01)
    [position] = await small.fetch_positions([BTC])
    # Wallet 99.74 after the fee; liquidation where 99.74 + 0.01 (L − 65000) = 0.004 × 0.01 L.
    expected = (Decimal("650") - Decimal("99.74")) / (Decimal("0.01") * Decimal("0.996"))
    assert abs(info_decimal(position, "liquidationPrice") - expected) < Decimal("0.00000001")
    assert position["liquidationPrice"] == pytest.approx(float(expected))


# --------------------------------------------------------------------------- balance
async def test_balance_moves_with_fees_unrealized_and_realized_pnl(
    server: BinanceFuturesServer, client: Any
) -> None:
    await market(client, "buy", 0.1)  # 6500 notional, 325 margin, 2.6 fee
    server.set_price("BTCUSDT", Decimal("66000"))

    balance = await client.fetch_balance()
    assert Decimal(str(balance["USDT"]["total"])) == START - Decimal("2.6") + Decimal("100")
    assert Decimal(str(balance["USDT"]["used"])) == Decimal("330")  # 6600 / 20
    assert Decimal(str(balance["USDT"]["free"])) == START - Decimal("2.6") + 100 - 330
    raw = balance["info"]
    assert Decimal(raw["totalWalletBalance"]) == START - Decimal("2.6")
    assert Decimal(raw["totalUnrealizedProfit"]) == Decimal("100")

    await market(client, "sell", 0.1, reduceOnly=True)  # +100 realised, 2.64 fee
    assert server.balance(KEY) == START - Decimal("2.6") + 100 - Decimal("2.64")
    after = await client.fetch_balance()
    assert Decimal(after["info"]["availableBalance"]) == server.balance(KEY)


# --------------------------------------------------------------------------- settings
async def test_leverage_and_position_mode(server: BinanceFuturesServer, client: Any) -> None:
    answer = await client.set_leverage(5, BTC)
    assert answer["leverage"] == 5 and answer["symbol"] == "BTCUSDT"
    leverage = await client.fetch_leverage(BTC)
    assert leverage["longLeverage"] == 5
    with pytest.raises(ccxt.BadRequest, match="-4028"):
        await client.set_leverage(75, "AVAX/USDT:USDT")  # AVAXUSDT allows 50×

    assert (await client.fetch_position_mode(BTC))["hedged"] is False
    await client.set_position_mode(True)
    assert (await client.fetch_position_mode(BTC))["hedged"] is True
    with pytest.raises(ccxt.OperationRejected, match="-4059"):
        await client.set_position_mode(True)

    await client.create_order(BTC, "market", "buy", 0.01, None, {"positionSide": "LONG"})
    with pytest.raises(ccxt.OperationRejected, match="-4068"):
        await client.set_position_mode(False)


async def test_key_permissions(server: BinanceFuturesServer, make: MakeClient) -> None:
    server.add_account("key-w", "secret-w", can_withdraw=True, can_trade=False)
    restrictions = await make("key-w", "secret-w").sapi_get_account_apirestrictions()
    assert restrictions["enableWithdrawals"] is True and restrictions["enableFutures"] is False
    assert restrictions["enableReading"] is True and restrictions["ipRestrict"] is False
    mine = await make().sapi_get_account_apirestrictions()
    assert mine["enableWithdrawals"] is False and mine["enableFutures"] is True


# --------------------------------------------------------------------------- auth
async def test_unknown_key_and_bad_signature_are_authentication_errors(
    server: BinanceFuturesServer, make: MakeClient
) -> None:
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        await make("key-unknown", SECRET).fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        await make(KEY, "wrong-secret").fetch_balance()


async def test_timestamps_outside_the_recv_window_are_refused(
    server: BinanceFuturesServer, client: Any
) -> None:
    server.set_clock_offset(20_000)  # 20 s old: past ccxt's 10 s recvWindow
    with pytest.raises(ccxt.InvalidNonce, match="outside of the recvWindow"):
        await client.fetch_balance()
    server.set_clock_offset(-20_000)  # the client's timestamps are 20 s ahead
    with pytest.raises(ccxt.InvalidNonce, match="ahead of the server"):
        await client.fetch_balance()
    server.set_clock_offset(0)
    assert (await client.fetch_balance())["USDT"]["total"] == 10000


async def test_a_key_without_futures_trading_reads_but_cannot_trade(
    server: BinanceFuturesServer, make: MakeClient
) -> None:
    server.add_account("key-ro", "secret-ro", can_trade=False)
    read_only = make("key-ro", "secret-ro")
    assert (await read_only.fetch_balance())["USDT"]["total"] == 10000
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        await market(read_only, "buy", 0.01)
    assert server.orders("key-ro") == []


# --------------------------------------------------------------------------- trading rules
async def test_position_side_must_match_the_account_mode(
    server: BinanceFuturesServer, make: MakeClient, client: Any
) -> None:
    server.add_account("key-hedge", "secret-hedge", hedge_mode=True)
    hedged = make("key-hedge", "secret-hedge")
    with pytest.raises(ccxt.OperationRejected, match="-4061"):
        await hedged.create_order(BTC, "market", "buy", 0.01, None, {})
    with pytest.raises(ccxt.OperationRejected, match="-4061"):
        await client.create_order(BTC, "market", "buy", 0.01, None, {"positionSide": "LONG"})
    with pytest.raises(ccxt.BadRequest, match="-1106"):
        await hedged.create_order(
            BTC, "market", "buy", 0.01, None, {"positionSide": "LONG", "reduceOnly": False}
        )

    await hedged.create_order(BTC, "market", "buy", 0.01, None, {"positionSide": "LONG"})
    await hedged.create_order(BTC, "market", "sell", 0.02, None, {"positionSide": "SHORT"})
    sides = {p.position_side: p.amount for p in server.positions("key-hedge")}
    assert sides == {"LONG": Decimal("0.01"), "SHORT": Decimal("-0.02")}
    closing = await hedged.create_order(
        BTC, "market", "sell", 0.01, None, {"hedged": True, "reduceOnly": True}
    )
    assert closing["info"]["positionSide"] == "LONG"
    assert {p.position_side for p in server.positions("key-hedge")} == {"SHORT"}


async def test_client_order_ids_are_unique_per_account(
    server: BinanceFuturesServer, client: Any
) -> None:
    await market(client, "buy", 0.01, clientOrderId="dup-1")
    with pytest.raises(ccxt.ExchangeError, match="-4116") as raised:
        await market(client, "buy", 0.01, clientOrderId="dup-1")
    assert "ClientOrderId is duplicated." in str(raised.value)
    assert len(server.orders(KEY)) == 1

    await stop_loss(client, "sell", 0.01, 60000, clientOrderId="algo-dup")
    with pytest.raises(ccxt.BadRequest, match="-20132"):
        await stop_loss(client, "sell", 0.01, 60000, clientOrderId="algo-dup")


async def test_client_order_ids_may_be_reused_after_close_when_configured() -> None:
    with BinanceFuturesServer(reuse_client_ids="after_close") as lenient:
        lenient.add_account(KEY, SECRET)
        client = make_client(lenient, KEY, SECRET)
        try:
            await market(client, "buy", 0.01, clientOrderId="again")
            await market(client, "buy", 0.01, clientOrderId="again")
            await client.create_order(BTC, "limit", "buy", 0.01, 60000, {"clientOrderId": "open"})
            with pytest.raises(ccxt.ExchangeError, match="-4116"):
                await client.create_order(
                    BTC, "limit", "buy", 0.01, 60000, {"clientOrderId": "open"}
                )
        finally:
            await client.close()


async def test_margin_reduce_only_and_filter_rejections(
    server: BinanceFuturesServer, make: MakeClient, client: Any
) -> None:
    server.add_account("key-poor", "secret-poor", balance=Decimal("30"))
    with pytest.raises(ccxt.ExchangeError, match="-2019"):
        await market(make("key-poor", "secret-poor"), "buy", 0.01)  # 32.5 margin + 0.26 fee
    assert server.orders("key-poor") == []

    with pytest.raises(ccxt.ExchangeError, match="-2022"):
        await market(client, "sell", 0.01, reduceOnly=True)  # nothing to reduce
    with pytest.raises(ccxt.ExchangeError, match="-4164") as small:
        await market(client, "buy", 0.001)  # 65 USDT < 100
    assert "no smaller than 100 (unless you choose reduce only)" in str(small.value)
    with pytest.raises(ccxt.BadRequest, match="-1111"):
        await client.fapiPrivatePostOrder(
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.0015"}
        )
    with pytest.raises(ccxt.BadSymbol, match="-1121"):
        await client.fapiPrivateGetOpenOrders({"symbol": "NOPEUSDT"})


async def test_linear_error_map_gives_the_classes_ccxt_raises_in_production(
    server: BinanceFuturesServer, make: MakeClient
) -> None:
    client = use_linear_error_map(make())
    with pytest.raises(ccxt.InvalidOrder, match="-2022"):
        await market(client, "sell", 0.01, reduceOnly=True)
    with pytest.raises(ccxt.InvalidOrder, match="-4164"):
        await market(client, "buy", 0.001)
    await market(client, "buy", 0.01, clientOrderId="dup-2")
    with pytest.raises(ccxt.InvalidOrder, match="-4116"):
        await market(client, "buy", 0.01, clientOrderId="dup-2")
    with pytest.raises(ccxt.OrderImmediatelyFillable, match="-2021"):
        await stop_loss(client, "sell", 0.01, 66000)
    server.add_account("key-poor", "secret-poor", balance=Decimal("30"))
    with pytest.raises(ccxt.InsufficientFunds, match="-2019"):
        await market(use_linear_error_map(make("key-poor", "secret-poor")), "buy", 0.01)


# --------------------------------------------------------------------------- faults
async def test_rate_limit_answer_has_no_effect_and_carries_retry_after(
    server: BinanceFuturesServer, client: Any
) -> None:
    server.fail_next("POST", ORDER, 429, retry_after=7)
    with pytest.raises(ccxt.DDoSProtection, match="-1003"):
        await market(client, "buy", 0.01)
    assert client.last_response_headers["Retry-After"] == "7"
    assert server.orders(KEY) == []
    assert len(server.requests_to("POST", ORDER)) == 1

    order = await market(client, "buy", 0.01)
    assert order["status"] == "closed"


async def test_server_errors_and_bans(server: BinanceFuturesServer, client: Any) -> None:
    server.fail_next("GET", ACCOUNT_V3, 503, times=2)
    for _ in range(2):
        with pytest.raises(ccxt.OperationFailed, match="-1001"):
            await client.fetch_balance()
    server.fail_next("GET", ACCOUNT_V3, 418, retry_after=120)
    with pytest.raises(ccxt.DDoSProtection, match="banned"):
        await client.fetch_balance()
    assert (await client.fetch_balance())["USDT"]["total"] == 10000


async def test_accepted_then_stalled_order_times_out_yet_exists(
    server: BinanceFuturesServer, make: MakeClient
) -> None:
    client = make(timeout=1000)
    await client.load_markets()
    server.accept_then_stall("POST", ORDER, seconds=3)
    with pytest.raises(ccxt.RequestTimeout):
        await market(client, "buy", 0.01, clientOrderId="lost-1")

    found = await client.fetch_order(None, BTC, {"clientOrderId": "lost-1"})
    assert found["status"] == "closed" and found["filled"] == 0.01


async def test_delay_holds_the_request_before_it_takes_effect(
    server: BinanceFuturesServer, make: MakeClient
) -> None:
    client = make(timeout=1000)
    await client.load_markets()
    server.delay("POST", ORDER, seconds=3)
    with pytest.raises(ccxt.RequestTimeout):
        await market(client, "buy", 0.01, clientOrderId="late-1")
    assert server.orders(KEY) == []  # still waiting when the client gave up

    deadline = asyncio.get_running_loop().time() + 10
    while not server.orders(KEY):
        assert asyncio.get_running_loop().time() < deadline, "the delayed order never arrived"
        await asyncio.sleep(0.05)
    assert server.orders(KEY)[0].client_order_id == "late-1"


async def test_requests_log_shows_what_was_sent(server: BinanceFuturesServer, client: Any) -> None:
    with pytest.raises(ccxt.InvalidOrder):
        await client.create_order(BTC, "limit", "buy", 0.01, None, {})  # no price: ccxt refuses
    assert server.requests_to("POST", ORDER) == []

    await market(client, "buy", 0.01, clientOrderId="logged-1")
    [sent] = server.requests_to("POST", ORDER)
    assert sent.params["newClientOrderId"] == "logged-1" and sent.params["quantity"] == "0.01"
    assert sent.params["reduceOnly"] == "false" and "signature" in sent.params
