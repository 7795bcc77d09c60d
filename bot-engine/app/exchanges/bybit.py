"""Bybit v5 USDT linear perpetuals (unified trading account) through ccxt (`bybit`).

Bybit specifics this adapter handles:
- A create answers only the order's ids; the order is then read back (`/v5/order/realtime`,
  which also shows recently closed orders, then `/v5/order/history`) for its status and fills.
- Stop loss and take profit are conditional market orders (`triggerPrice`,
  `triggerDirection`); which of the two an order is follows from its side and direction.
- Realised PnL comes from the position's closed-PnL records of the order (`closedPnl` is net
  of the opening and closing fees; both are added back, since an order's realised PnL here is
  before fees and its fee is reported separately).
- Hedge mode shows as `positionIdx` 1/2 on the account's positions.
- Setting the leverage it already has answers 110043, which is success.
- A rate limit is a 200 answer with retCode 10006; when it lifts is in
  `X-Bapi-Limit-Reset-Timestamp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

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
    answered,
    dec,
    dec0,
    history_start_ms,
    ms_to_datetime,
    plain,
)
from app.exchanges.errors import (
    OrderRejected,
    OutcomeUnknown,
    RetryLater,
)
from app.exchanges.symbols import canonical_symbol, split_symbol

# Bybit limits per UID and endpoint (10–20 requests per second for orders) and 600 requests
# per 5 s per IP; as weights per minute, with every request costing ccxt's endpoint cost.
ADDRESS_WEIGHT_PER_MIN = 7200
KEY_WEIGHT_PER_MIN = 600
VISIBLE_DELAYS_S = (0.0, 0.1, 0.3, 0.6)  # a new order can take a moment to be readable

_STATUS = {
    "New": OrderStatus.OPEN,
    "Untriggered": OrderStatus.OPEN,
    "Triggered": OrderStatus.OPEN,
    "Active": OrderStatus.OPEN,
    "Created": OrderStatus.OPEN,
    "PartiallyFilled": OrderStatus.PARTIALLY_FILLED,
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELED,
    "PartiallyFilledCanceled": OrderStatus.CANCELED,
    "Deactivated": OrderStatus.CANCELED,
    "Rejected": OrderStatus.REJECTED,
}


def _positive(value: Any) -> Decimal | None:
    number = dec(value)
    return number if number is not None and number > 0 else None


def _result_list(response: dict[str, Any]) -> list[dict[str, Any]]:
    result = response.get("result") or {}
    return list(result.get("list") or [])


class BybitAdapter(CcxtAdapter):
    exchange_id = "bybit"
    exchange_name = "bybit"
    address_weight_per_min = ADDRESS_WEIGHT_PER_MIN
    key_weight_per_min = KEY_WEIGHT_PER_MIN
    duplicate_codes = frozenset({"110072"})
    position_mode_texts = ("position idx not match position mode",)  # a 10001 among many

    def client_options(self) -> dict[str, Any]:
        return {
            "defaultType": "swap",
            "defaultSubType": "linear",
            "fetchMarkets": {"types": ["linear"]},
            "fetchCurrencies": False,
            "adjustForTimeDifference": False,
        }

    def retry_after_hint(self, headers: Mapping[str, Any]) -> float | None:
        # A rate-limited answer names when the limit resets, in epoch milliseconds.
        reset = headers.get("x-bapi-limit-reset-timestamp")
        if reset is not None:
            with contextlib.suppress(ValueError):
                return (int(str(reset)) - time.time() * 1000) / 1000
        return super().retry_after_hint(headers)

    # ------------------------------------------------------------------ markets
    def market_info(self, symbol: str, market: dict[str, Any]) -> MarketInfo:
        info = market["info"]
        lot = info.get("lotSizeFilter") or {}
        step, tick = dec(lot.get("qtyStep")), dec((info.get("priceFilter") or {}).get("tickSize"))
        if step is None or tick is None:
            raise RetryLater(f"bybit sent no trading rules for {symbol}", code="no_market_rules")
        base, quote = split_symbol(symbol)
        return MarketInfo(
            symbol=symbol,
            base=base,
            quote=quote,
            amount_step=step.normalize(),
            price_step=tick.normalize(),
            min_amount=max(dec0(lot.get("minOrderQty")), step).normalize(),
            min_notional=dec0(lot.get("minNotionalValue")),
            max_leverage=int(dec((info.get("leverageFilter") or {}).get("maxLeverage")) or 1),
        )

    def ticker_price(self, ticker: dict[str, Any]) -> Decimal | None:
        return dec((ticker.get("info") or {}).get("lastPrice"))

    def _market_id(self, unified: str) -> str:
        return str(self.client.market(unified)["id"])

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
        if req.type == OrderType.LIMIT:
            assert req.price is not None
            kind, price = "limit", plain(req.price)
        elif req.type == OrderType.STOP_MARKET:
            assert trigger is not None
            params["stopLossPrice"] = plain(trigger)
        elif req.type == OrderType.TAKE_PROFIT_MARKET:
            assert trigger is not None
            params["takeProfitPrice"] = plain(trigger)
        placed = await self.client.create_order(
            unified, kind, req.side.value, plain(amount), price, params
        )
        order_id = str(placed["info"].get("orderId") or placed.get("id"))
        for delay in VISIBLE_DELAYS_S:
            await asyncio.sleep(delay)
            order = await self.find_order_by_id(unified, order_id)
            if order is not None:
                return order
        raise OutcomeUnknown(f"bybit accepted order {order_id} but does not show it yet")

    async def _query(self, unified: str, **ids: str) -> dict[str, Any] | None:
        """The raw order with the given id (`orderId` or `orderLinkId`), open or closed."""
        request = {"category": "linear", "symbol": self._market_id(unified), **ids}
        for endpoint in (
            self.client.private_get_v5_order_realtime,
            self.client.private_get_v5_order_history,
        ):
            rows = _result_list(await self.read(lambda ep=endpoint: ep(request)))  # type: ignore[misc]
            if rows:
                return rows[0]
        return None

    async def find_order(
        self, unified: str, client_order_id: str, *, conditional: bool
    ) -> Order | None:
        if conditional:
            return None  # one look-up serves both kinds on Bybit (see find_order_by_id)
        raw = await self._query(unified, orderLinkId=client_order_id)
        return None if raw is None else await self._order(unified, raw)

    async def find_order_by_id(self, unified: str, order_id: str) -> Order | None:
        raw = await self._query(unified, orderId=order_id)
        return None if raw is None else await self._order(unified, raw)

    async def send_cancel(self, unified: str, order: Order) -> None:
        await self.client.cancel_order(order.order_id, unified)

    async def get_open_orders(self, symbol: str | None = None) -> list[Order]:
        request: dict[str, Any] = {"category": "linear", "openOnly": 0}
        if symbol is not None:
            request["symbol"] = self._market_id(await self.unified_symbol(symbol))
        else:
            await self.ensure_markets()
            request["settleCoin"] = "USDT"
        rows = _result_list(
            await self.read(lambda: self.client.private_get_v5_order_realtime(request))
        )
        orders = []
        for raw in rows:
            if _STATUS.get(str(raw.get("orderStatus"))) not in (
                OrderStatus.OPEN,
                OrderStatus.PARTIALLY_FILLED,
            ):
                continue
            unified = self.client.safe_symbol(raw["symbol"], None, None, "swap")
            orders.append(await self._order(unified, raw))
        return sorted(orders, key=lambda o: o.created_at)

    async def _realized_by_order(
        self, unified: str, since_ms: int | None = None
    ) -> dict[str, Decimal]:
        """Gross realised PnL per order id, from the symbol's latest closed-PnL records."""
        request: dict[str, Any] = {
            "category": "linear", "symbol": self._market_id(unified), "limit": 100,
        }  # fmt: skip
        if since_ms is not None:
            request["startTime"] = since_ms
        rows = _result_list(
            await self.read(lambda: self.client.private_get_v5_position_closed_pnl(request))
        )
        totals: dict[str, Decimal] = {}
        for row in rows:
            # closedPnl is net of the opening and closing fees: add them back.
            gross = (
                dec0(row.get("closedPnl")) + dec0(row.get("openFee")) + dec0(row.get("closeFee"))
            )
            order_id = str(row.get("orderId"))
            totals[order_id] = totals.get(order_id, Decimal(0)) + gross
        return totals

    async def get_filled_orders(self, symbol: str, since: datetime) -> list[Order]:
        unified = await self.unified_symbol(symbol)
        since_ms = history_start_ms(since)
        request = {"category": "linear", "symbol": self._market_id(unified),
                   "startTime": since_ms, "limit": 50}  # fmt: skip
        rows = _result_list(
            await self.read(lambda: self.client.private_get_v5_order_history(request))
        )
        filled = [row for row in rows if dec0(row.get("cumExecQty")) > 0]
        if not filled:
            return []
        realized = await self._realized_by_order(unified, since_ms)
        orders = [
            await self._order(unified, row, realized.get(str(row["orderId"]), Decimal(0)))
            for row in filled
        ]
        return sorted(orders, key=lambda o: o.updated_at)

    async def _order(
        self, unified: str, raw: dict[str, Any], realized: Decimal | None = None
    ) -> Order:
        side = OrderSide(str(raw["side"]).lower())
        trigger = _positive(raw.get("triggerPrice"))
        if trigger is not None:
            rising = str(raw.get("triggerDirection")) == "1"
            # Closing a long (sell), a stop triggers on a fall; closing a short, on a rise.
            is_stop = rising == (side == OrderSide.BUY)
            order_type = OrderType.STOP_MARKET if is_stop else OrderType.TAKE_PROFIT_MARKET
        else:
            order_type = OrderType.LIMIT if raw.get("orderType") == "Limit" else OrderType.MARKET
        filled = dec0(raw.get("cumExecQty"))
        order_id = str(raw["orderId"])
        pnl = realized
        if pnl is None:
            pnl = Decimal(0)
            if filled > 0:
                pnl = (await self._realized_by_order(unified)).get(order_id, Decimal(0))
        return Order(
            order_id=order_id,
            client_order_id=str(raw.get("orderLinkId") or ""),
            symbol=canonical_symbol(unified),
            side=side,
            type=order_type,
            status=_STATUS.get(str(raw.get("orderStatus")), OrderStatus.OPEN),
            quantity=dec0(raw.get("qty")),
            filled_quantity=filled,
            avg_fill_price=_positive(raw.get("avgPrice")),
            fee=dec0(raw.get("cumExecFee")),
            fee_currency="USDT",
            price=_positive(raw.get("price")) if order_type == OrderType.LIMIT else None,
            stop_price=trigger,
            reduce_only=bool(raw.get("reduceOnly")),
            realized_pnl=pnl,
            created_at=ms_to_datetime(raw.get("createdTime")),
            updated_at=ms_to_datetime(raw.get("updatedTime") or raw.get("createdTime")),
        )

    # ------------------------------------------------------------------ account
    async def _raw_positions(self, unified: str | None) -> list[dict[str, Any]]:
        symbols = None if unified is None else [unified]
        found = await self.read(lambda: self.client.fetch_positions(symbols))
        return [p["info"] for p in found]

    async def fetch_hedge_mode(self, symbol: str) -> bool:
        rows = await self._raw_positions(await self.unified_symbol(symbol))
        return any(str(row.get("positionIdx")) in ("1", "2") for row in rows)

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        unified = await self.unified_symbol(symbol)
        try:
            await self.read(lambda: self.client.set_leverage(leverage, unified))
        except OrderRejected as exc:
            if not answered(exc, {"110043"}):  # "leverage not modified": it already is
                raise

    async def get_positions(self) -> list[Position]:
        await self.ensure_markets()
        return self._positions(await self._raw_positions(None))

    async def get_position(self, symbol: str) -> Position | None:
        mine = [
            p
            for p in self._positions(await self._raw_positions(await self.unified_symbol(symbol)))
            if p.symbol == symbol
        ]
        return max(mine, key=lambda p: p.quantity) if mine else None

    def _positions(self, rows: list[dict[str, Any]]) -> list[Position]:
        positions = []
        for row in rows:
            size = dec0(row.get("size"))
            if size == 0 or row.get("side") not in ("Buy", "Sell"):
                continue
            positions.append(
                Position(
                    symbol=canonical_symbol(str(row["symbol"])),
                    side="long" if row["side"] == "Buy" else "short",
                    quantity=size,
                    entry_price=dec0(row.get("avgPrice")),
                    mark_price=_positive(row.get("markPrice")),
                    unrealized_pnl=dec(row.get("unrealisedPnl")),
                    leverage=int(dec(row.get("leverage")) or 1),
                    liquidation_price=_positive(row.get("liqPrice")),
                    margin=_positive(row.get("positionIM")),
                )
            )
        return positions

    async def _coins(self) -> list[dict[str, Any]]:
        balance = await self.read(lambda: self.client.fetch_balance())
        coins: list[dict[str, Any]] = []
        for account in _result_list(balance["info"]):
            coins.extend(account.get("coin") or [])
        return coins

    async def get_balances(self) -> list[Balance]:
        balances = []
        for coin in await self._coins():
            total = dec(coin.get("equity"))
            if total is None:
                total = dec0(coin.get("walletBalance")) + dec0(coin.get("unrealisedPnl"))
            locked = (
                dec0(coin.get("locked"))
                + dec0(coin.get("totalPositionIM"))
                + dec0(coin.get("totalOrderIM"))
            )
            if total == 0:
                continue
            free = max(total - locked, Decimal(0))
            balances.append(Balance(asset=str(coin["coin"]), free=free, locked=total - free,
                                    total=total))  # fmt: skip
        return balances

    async def get_equity(self) -> Decimal:
        for coin in await self._coins():
            if coin.get("coin") == "USDT":
                equity = dec(coin.get("equity"))
                if equity is not None:
                    return equity
                return dec0(coin.get("walletBalance")) + dec0(coin.get("unrealisedPnl"))
        return Decimal(0)

    async def key_permissions(self) -> KeyPermissions:
        response = await self.read(lambda: self.client.private_get_v5_user_query_api())
        result = response.get("result") or {}
        permissions = result.get("permissions") or {}
        read_only = str(result.get("readOnly")) == "1"
        trades = bool(permissions.get("ContractTrade")) or bool(permissions.get("Derivatives"))
        return KeyPermissions(
            can_read=True,
            can_trade=trades and not read_only,
            can_withdraw="Withdraw" in (permissions.get("Wallet") or []),
        )
