"""Binance USDⓈ-M futures through ccxt (`binanceusdm`).

Binance specifics this adapter handles:
- Stop loss and take profit are conditional orders of the algo-order API (`clientAlgoId`,
  `algoStatus`); when one triggers, Binance places a regular market order (`actualOrderId`)
  whose fills carry the price, fee and realised PnL. Their ids here are `algo:<algoId>`, so a
  cancel or look-up by id knows which API to ask.
- A client order id is unique only among *open* orders: a filled market order's id can be
  reused, so a create is never resent before the order was looked up (see `CcxtAdapter`).
- Fees and realised PnL are read from the order's fills (`userTrades`), as Binance reports
  them; the order itself carries neither.
- Hedge-mode accounts (`dualSidePosition`) need `positionSide` on every order, one-way
  accounts refuse it (-4061); the mode is read from the account, not assumed.
- Demo trading (`enable_demo_trading`) has no SAPI: a demo key's permissions are what a demo
  account allows (trade, never withdraw).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt

from app.exchanges.base import (
    Balance,
    KeyPermissions,
    MarketInfo,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
    Position,
)
from app.exchanges.ccxt_adapter import (
    CcxtAdapter,
    dec,
    dec0,
    history_start_ms,
    ms_to_datetime,
    plain,
)
from app.exchanges.errors import OrderNotFound, RetryLater
from app.exchanges.symbols import canonical_symbol, split_symbol

ALGO_PREFIX = "algo:"
# Binance USDⓈ-M request weights: 2,400 per minute per IP; orders 1,200 per minute per account.
ADDRESS_WEIGHT_PER_MIN = 2400
KEY_WEIGHT_PER_MIN = 1200
DEFAULT_MAX_LEVERAGE = 125  # exchangeInfo has no leverage; the exchange's bracket still applies
# Positions are read from positionRisk v2, the version that reports each symbol's leverage.
V2 = {"useV2": True}

_STATUS = {
    "NEW": OrderStatus.OPEN,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.CANCELED,
    "EXPIRED_IN_MATCH": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
}
_ALGO_WAITING = {"NEW", "TRIGGERING"}
_ALGO_ENDED = {"CANCELED": OrderStatus.CANCELED, "EXPIRED": OrderStatus.CANCELED,
               "REJECTED": OrderStatus.REJECTED}  # fmt: skip
_TYPES = {
    "MARKET": OrderType.MARKET,
    "LIMIT": OrderType.LIMIT,
    "STOP_MARKET": OrderType.STOP_MARKET,
    "STOP": OrderType.STOP_MARKET,
    "TAKE_PROFIT_MARKET": OrderType.TAKE_PROFIT_MARKET,
    "TAKE_PROFIT": OrderType.TAKE_PROFIT_MARKET,
}


def _filter(info: dict[str, Any], name: str) -> dict[str, Any]:
    for entry in info.get("filters", ()):
        if entry.get("filterType") == name:
            return dict(entry)
    return {}


@dataclass
class _Fills:
    """What an order's fills add up to."""

    fee: Decimal = Decimal(0)
    currency: str = "USDT"
    realized_pnl: Decimal = Decimal(0)


def _fills_by_order(trades: list[dict[str, Any]]) -> dict[str, _Fills]:
    """ccxt trades (`userTrades`) summed per order id, from their raw fields."""
    by_order: dict[str, _Fills] = {}
    for trade in trades:
        raw = trade["info"]
        fills = by_order.setdefault(str(raw.get("orderId")), _Fills())
        fills.fee += abs(dec0(raw.get("commission")))
        fills.currency = raw.get("commissionAsset") or fills.currency
        fills.realized_pnl += dec0(raw.get("realizedPnl"))
    return by_order


def _positive(value: Any) -> Decimal | None:
    number = dec(value)
    return number if number is not None and number > 0 else None


class BinanceAdapter(CcxtAdapter):
    exchange_id = "binanceusdm"
    exchange_name = "binance"
    address_weight_per_min = ADDRESS_WEIGHT_PER_MIN
    key_weight_per_min = KEY_WEIGHT_PER_MIN
    duplicate_codes = frozenset({"-4116", "-20132"})
    position_mode_codes = frozenset({"-4061"})
    # Unknown error, internal error, unexpected response, backend timeout, overloaded: Binance
    # says the execution status of the request is unknown.
    unknown_outcome_codes = frozenset({"-1000", "-1001", "-1006", "-1007", "-1008"})

    def client_options(self) -> dict[str, Any]:
        return {
            "fetchMarkets": {"types": ["linear"]},
            "fetchCurrencies": False,
            "adjustForTimeDifference": False,
            "warnOnFetchOpenOrdersWithoutSymbol": False,
        }

    def keep_host_behaviour(self, client: ccxt.Exchange) -> None:
        # ccxt chooses its USDⓈ-M error table (-2019 InsufficientFunds, -2021, -2022, -4116
        # InvalidOrder, ...) by the request host `fapi.binance.com`; another host would get
        # only the table shared by every Binance market, where those codes are bare errors.
        linear = client.exceptions.get("linear") or {}
        for kind in ("exact", "broad"):
            client.exceptions[kind] = client.exceptions[kind] | linear.get(kind, {})

    # ------------------------------------------------------------------ markets
    def market_info(self, symbol: str, market: dict[str, Any]) -> MarketInfo:
        info = market["info"]
        lot, price_filter = _filter(info, "LOT_SIZE"), _filter(info, "PRICE_FILTER")
        market_lot = _filter(info, "MARKET_LOT_SIZE")
        step = dec(lot.get("stepSize")) or dec(market_lot.get("stepSize"))
        tick = dec(price_filter.get("tickSize"))
        if step is None or tick is None:
            raise RetryLater(f"binance sent no trading rules for {symbol}", code="no_market_rules")
        min_amount = max(dec0(lot.get("minQty")), dec0(market_lot.get("minQty")), step)
        leverage = (market.get("limits") or {}).get("leverage") or {}
        base, quote = split_symbol(symbol)
        return MarketInfo(
            symbol=symbol,
            base=base,
            quote=quote,
            amount_step=step.normalize(),
            price_step=tick.normalize(),
            min_amount=min_amount.normalize(),
            min_notional=dec0(_filter(info, "MIN_NOTIONAL").get("notional")),
            max_leverage=int(leverage.get("max") or DEFAULT_MAX_LEVERAGE),
        )

    def ticker_price(self, ticker: dict[str, Any]) -> Decimal | None:
        return dec((ticker.get("info") or {}).get("lastPrice"))

    # ------------------------------------------------------------------ orders
    async def submit(
        self,
        unified: str,
        req: OrderRequest,
        amount: Decimal,
        trigger: Decimal | None,
        hedged: bool,
    ) -> Order:
        params: dict[str, Any] = {"clientOrderId": req.client_order_id}
        if req.reduce_only:
            params["reduceOnly"] = True
        if hedged:
            params["hedged"] = True
        price: str | None = None
        kind = "market"
        if req.type == OrderType.MARKET:
            params["newOrderRespType"] = "RESULT"
        elif req.type == OrderType.LIMIT:
            assert req.price is not None
            kind, price = "limit", plain(req.price)
        elif req.type == OrderType.STOP_MARKET:
            assert trigger is not None
            params["stopLossPrice"] = plain(trigger)
        else:
            assert trigger is not None
            params["takeProfitPrice"] = plain(trigger)
        placed = await self.client.create_order(
            unified, kind, req.side.value, plain(amount), price, params
        )
        info = placed["info"]
        if "algoId" in info:
            return await self._from_algo(unified, info)
        return await self._from_regular(unified, info)

    async def find_order(
        self, unified: str, client_order_id: str, *, conditional: bool
    ) -> Order | None:
        params: dict[str, Any] = {"clientOrderId": client_order_id}
        if conditional:
            params["trigger"] = True
        found = await self._fetch(unified, None, params)
        if not conditional and found is not None and self.is_conditional(found.type):
            # The market order a triggered stop or take profit placed carries the
            # conditional order's client id: the conditional order (with these fills) it is.
            return await self._fetch(unified, None, params | {"trigger": True}) or found
        return found

    async def find_order_by_id(self, unified: str, order_id: str) -> Order | None:
        if order_id.startswith(ALGO_PREFIX):
            return await self._fetch(unified, order_id[len(ALGO_PREFIX) :], {"trigger": True})
        return await self._fetch(unified, order_id, {})

    async def _fetch(self, unified: str, order_id: str | None, params: dict[str, Any]
                     ) -> Order | None:  # fmt: skip
        try:
            found = await self.read(lambda: self.client.fetch_order(order_id, unified, params))
        except OrderNotFound:
            return None
        info = found["info"]
        if "algoId" in info:
            return await self._from_algo(unified, info)
        return await self._from_regular(unified, info)

    async def send_cancel(self, unified: str, order: Order) -> None:
        if order.order_id.startswith(ALGO_PREFIX):
            algo_id = order.order_id[len(ALGO_PREFIX) :]
            await self.client.cancel_order(algo_id, unified, {"trigger": True})
        else:
            await self.client.cancel_order(order.order_id, unified)

    async def get_open_orders(self, symbol: str | None = None) -> list[Order]:
        unified = None if symbol is None else await self.unified_symbol(symbol)
        if unified is None:
            await self.ensure_markets()
        regular = await self.read(lambda: self.client.fetch_open_orders(unified))
        algo = await self.read(
            lambda: self.client.fetch_open_orders(unified, None, None, {"trigger": True})
        )
        orders = [await self._from_regular(o["symbol"], o["info"]) for o in regular]
        orders += [await self._from_algo(o["symbol"], o["info"]) for o in algo]
        return sorted(orders, key=lambda o: o.created_at)

    async def _fills(self, unified: str, order_id: Any) -> _Fills:
        """Fee and realised PnL of a regular order, from its fills."""
        trades = await self.read(
            lambda: self.client.fetch_my_trades(unified, None, None, {"orderId": order_id})
        )
        return _fills_by_order(trades).get(str(order_id), _Fills())

    async def get_filled_orders(self, symbol: str, since: datetime) -> list[Order]:
        unified = await self.unified_symbol(symbol)
        since_ms = history_start_ms(since)
        trades = await self.read(lambda: self.client.fetch_my_trades(unified, since_ms, 1000))
        fills = _fills_by_order(trades)
        if not fills:
            return []
        listed = await self.read(lambda: self.client.fetch_orders(unified, since_ms, 1000))
        infos = {str(o["info"]["orderId"]): o["info"] for o in listed}
        orders = []
        for order_id, order_fills in fills.items():
            info = infos.get(order_id)
            if info is None:  # placed before `since`, filled after it
                info = (await self._fetch_raw(unified, order_id))["info"]
            orders.append(await self._from_regular(unified, info, order_fills))
        return sorted(orders, key=lambda o: o.updated_at)

    async def _fetch_raw(self, unified: str, order_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.read(lambda: self.client.fetch_order(order_id, unified))
        return found

    async def _from_regular(
        self, unified: str, info: dict[str, Any], fills: _Fills | None = None
    ) -> Order:
        filled = dec0(info.get("executedQty"))
        if fills is None:
            fills = await self._fills(unified, info["orderId"]) if filled > 0 else _Fills()
        fee, currency, pnl = fills.fee, fills.currency, fills.realized_pnl
        return Order(
            order_id=str(info["orderId"]),
            client_order_id=str(info.get("clientOrderId") or ""),
            symbol=canonical_symbol(unified),
            side=OrderSide(str(info["side"]).lower()),
            type=_TYPES.get(str(info.get("origType") or info.get("type")), OrderType.MARKET),
            status=_STATUS.get(str(info.get("status")), OrderStatus.OPEN),
            quantity=dec0(info.get("origQty")),
            filled_quantity=filled,
            avg_fill_price=_positive(info.get("avgPrice")),
            fee=fee,
            fee_currency=currency,
            price=_positive(info.get("price")),
            stop_price=_positive(info.get("stopPrice")),
            reduce_only=bool(info.get("reduceOnly")),
            realized_pnl=pnl,
            created_at=ms_to_datetime(info.get("time") or info.get("updateTime")),
            updated_at=ms_to_datetime(info.get("updateTime") or info.get("time")),
        )

    async def _from_algo(self, unified: str, info: dict[str, Any]) -> Order:
        """A conditional order; once triggered, its fills are those of the order it placed."""
        algo_status = str(info.get("algoStatus"))
        actual_id = info.get("actualOrderId")
        actual: Order | None = None
        if algo_status not in _ALGO_WAITING and actual_id not in (None, "", 0, "0"):
            actual = await self._fetch(unified, str(actual_id), {})
        if algo_status in _ALGO_WAITING:
            status = OrderStatus.OPEN
        elif actual is not None:
            status = actual.status
        else:
            status = _ALGO_ENDED.get(algo_status, OrderStatus.CANCELED)
        return Order(
            order_id=f"{ALGO_PREFIX}{info['algoId']}",
            client_order_id=str(info.get("clientAlgoId") or ""),
            symbol=canonical_symbol(unified),
            side=OrderSide(str(info["side"]).lower()),
            type=_TYPES.get(str(info.get("orderType")), OrderType.STOP_MARKET),
            status=status,
            quantity=dec0(info.get("quantity")),
            filled_quantity=actual.filled_quantity if actual else Decimal(0),
            avg_fill_price=actual.avg_fill_price if actual else None,
            fee=actual.fee if actual else Decimal(0),
            fee_currency=actual.fee_currency if actual else "USDT",
            price=_positive(info.get("price")),
            stop_price=_positive(info.get("triggerPrice")),
            reduce_only=bool(info.get("reduceOnly")),
            realized_pnl=actual.realized_pnl if actual else Decimal(0),
            created_at=ms_to_datetime(info.get("createTime")),
            updated_at=ms_to_datetime(info.get("updateTime") or info.get("createTime")),
        )

    # ------------------------------------------------------------------ account
    async def fetch_hedge_mode(self, symbol: str) -> bool:
        unified = await self.unified_symbol(symbol)
        mode = await self.read(lambda: self.client.fetch_position_mode(unified))
        return bool(mode.get("hedged"))

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        unified = await self.unified_symbol(symbol)
        # Setting the same leverage twice is harmless, so a lost answer is simply retried.
        await self.read(lambda: self.client.set_leverage(leverage, unified))

    async def get_positions(self) -> list[Position]:
        await self.ensure_markets()
        return self._positions(await self.read(lambda: self.client.fetch_positions(None, V2)))

    async def get_position(self, symbol: str) -> Position | None:
        unified = await self.unified_symbol(symbol)
        found = self._positions(await self.read(lambda: self.client.fetch_positions([unified], V2)))
        mine = [p for p in found if p.symbol == symbol]
        return max(mine, key=lambda p: p.quantity) if mine else None

    def _positions(self, raw: list[dict[str, Any]]) -> list[Position]:
        positions = []
        for entry in raw:
            info = entry["info"]
            amount = dec0(info.get("positionAmt"))
            if amount == 0:
                continue
            side_flag = str(info.get("positionSide") or "BOTH")
            side = {"LONG": "long", "SHORT": "short"}.get(
                side_flag, "long" if amount > 0 else "short"
            )
            leverage = int(dec(info.get("leverage")) or dec(entry.get("leverage")) or 1)
            margin = (
                _positive(info.get("isolatedMargin"))
                or _positive(info.get("positionInitialMargin") or info.get("initialMargin"))
                or abs(dec0(info.get("notional"))) / leverage
            )
            positions.append(
                Position(
                    symbol=canonical_symbol(entry["symbol"]),
                    side=side,
                    quantity=abs(amount),
                    entry_price=dec0(info.get("entryPrice")),
                    mark_price=_positive(info.get("markPrice")),
                    unrealized_pnl=dec(info.get("unRealizedProfit")),
                    leverage=leverage,
                    liquidation_price=_positive(info.get("liquidationPrice")),
                    margin=margin,
                )
            )
        return positions

    async def _account(self) -> dict[str, Any] | list[Any]:
        balance = await self.read(lambda: self.client.fetch_balance())
        info: dict[str, Any] | list[Any] = balance["info"]
        return info

    async def get_balances(self) -> list[Balance]:
        info = await self._account()
        rows = info.get("assets", []) if isinstance(info, dict) else info
        balances = []
        for row in rows:
            wallet = dec0(row.get("walletBalance") or row.get("balance"))
            total = dec(row.get("marginBalance"))
            if total is None:
                total = wallet + dec0(row.get("unrealizedProfit") or row.get("crossUnPnl"))
            free = dec0(row.get("availableBalance"))
            if total == 0 and free == 0:
                continue
            balances.append(
                Balance(asset=str(row["asset"]), free=free, locked=max(total - free, Decimal(0)),
                        total=total)
            )  # fmt: skip
        return balances

    async def get_equity(self) -> Decimal:
        info = await self._account()
        if isinstance(info, dict) and info.get("totalMarginBalance") is not None:
            return dec0(info["totalMarginBalance"])
        rows = info.get("assets", []) if isinstance(info, dict) else info
        for row in rows:
            if row.get("asset") == "USDT":
                wallet = dec0(row.get("walletBalance") or row.get("balance"))
                return wallet + dec0(row.get("unrealizedProfit") or row.get("crossUnPnl"))
        return Decimal(0)

    async def key_permissions(self) -> KeyPermissions:
        if self.endpoint.mode == "demo":
            # Demo trading serves no SAPI; its accounts can trade and can never withdraw.
            await self.read(lambda: self.client.fetch_balance())
            return KeyPermissions(can_read=True, can_trade=True, can_withdraw=False)
        restrictions = await self.read(lambda: self.client.sapi_get_account_apirestrictions())
        return KeyPermissions(
            can_read=bool(restrictions.get("enableReading")),
            can_trade=bool(restrictions.get("enableFutures")),
            can_withdraw=bool(restrictions.get("enableWithdrawals")),
        )
