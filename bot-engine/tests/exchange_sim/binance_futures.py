"""A local stand-in for Binance USDⓈ-M futures REST — accounts, orders, positions, fills —
so the exchange adapter is tested through the real ccxt client (`binanceusdm`, 4.5.90).

What it serves is what ccxt calls (read from its source):

- public: exchangeInfo, ticker/24hr, ping (answered by `BinancePublicServer`), time;
- `POST/GET/DELETE /fapi/v1/order`, `GET /fapi/v1/openOrder(s)`, `GET /fapi/v1/allOrders`:
  MARKET orders fill at once at the price (plus a configurable slippage), LIMIT orders rest
  until `set_price` crosses them (fills at the limit price as maker);
- `POST/GET/DELETE /fapi/v1/algoOrder`, `GET /fapi/v1/openAlgoOrders`: the conditional
  orders (STOP_MARKET, TAKE_PROFIT_MARKET, STOP, TAKE_PROFIT) ccxt sends for `stopLossPrice`
  / `takeProfitPrice`. They rest as algoStatus NEW until the price crosses the trigger, then
  place a real order (`actualOrderId`) and end FINISHED;
- `GET /fapi/v1/userTrades` with realised PnL (gross, before fees) and commission;
- `GET /fapi/v2|v3/positionRisk`, `GET /fapi/v2|v3/account`, `GET /fapi/v1/leverageBracket`,
  `GET /fapi/v1/symbolConfig`, `POST /fapi/v1/leverage`, `GET/POST /fapi/v1/positionSide/dual`;
- `GET /sapi/v1/account/apiRestrictions`.

Every signed request is verified like Binance does: API key header, HMAC-SHA256 of the exact
signed payload, timestamp within recvWindow of the server clock. Errors are Binance's bodies
`{"code": -NNNN, "msg": "..."}` with its HTTP statuses.

Modelling choices (where Binance is not fully specified or a simple model suffices):
- one cross-margin USDT wallet per account; mark price = last price = what `set_price` set;
- a `newClientOrderId` is refused with -4116 when the account has used it before, open or
  not (`reuse_client_ids="after_close"` refuses it only while that order is open);
- reduce-only LIMIT orders expire when their position is closed or flipped; reduce-only
  conditional orders stay NEW (the "orphan stop" of real accounts) unless timeInForce is
  GTE_GTC, and when one triggers with nothing to reduce its order ends EXPIRED, unfilled;
- the order a conditional order places is a MARKET (or LIMIT for STOP/TAKE_PROFIT) order whose
  clientOrderId is the clientAlgoId and whose origType is the conditional type;
- liquidation price is the single-bracket cross-margin formula (one maintenance rate per
  symbol, 1 / (2 × max leverage)).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from app.exchanges.price_feed import base_price
from app.exchanges.symbols import PAPER_MARKETS
from tests.exchange_sim.binance_public import (
    EXCHANGE_INFO,
    INTERNAL_ERROR,
    PING,
    SERVER_TIME,
    TICKER_24HR,
    TOO_MANY_REQUESTS,
    BinancePublicServer,
    FuturesMarket,
    paper_futures_markets,
)
from tests.support.http_server import BackgroundHttpServer, KeepAliveHandler, OwnedHttpServer

ORDER = "/fapi/v1/order"
OPEN_ORDER = "/fapi/v1/openOrder"
OPEN_ORDERS = "/fapi/v1/openOrders"
ALL_ORDERS = "/fapi/v1/allOrders"
ALGO_ORDER = "/fapi/v1/algoOrder"
OPEN_ALGO_ORDERS = "/fapi/v1/openAlgoOrders"
USER_TRADES = "/fapi/v1/userTrades"
POSITION_RISK_V2 = "/fapi/v2/positionRisk"
POSITION_RISK_V3 = "/fapi/v3/positionRisk"
ACCOUNT_V2 = "/fapi/v2/account"
ACCOUNT_V3 = "/fapi/v3/account"
LEVERAGE = "/fapi/v1/leverage"
LEVERAGE_BRACKET = "/fapi/v1/leverageBracket"
SYMBOL_CONFIG = "/fapi/v1/symbolConfig"
POSITION_MODE = "/fapi/v1/positionSide/dual"
API_RESTRICTIONS = "/sapi/v1/account/apiRestrictions"

# Path prefix of every section of ccxt's `binanceusdm.urls['api']` (4.5.90).
CCXT_API_PATHS: dict[str, str] = {
    "sapi": "/sapi/v1",
    "sapiV2": "/sapi/v2",
    "sapiV3": "/sapi/v3",
    "sapiV4": "/sapi/v4",
    "dapiPublic": "/dapi/v1",
    "dapiPrivate": "/dapi/v1",
    "dapiPrivateV2": "/dapi/v2",
    "dapiData": "/futures/data",
    "eapiPublic": "/eapi/v1",
    "eapiPrivate": "/eapi/v1",
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "public": "/api/v3",
    "private": "/api/v3",
    "v1": "/api/v1",
    "papi": "/papi/v1",
    "papiV2": "/papi/v2",
}

DEFAULT_TAKER_FEE = Decimal("0.0004")
DEFAULT_MAKER_FEE = Decimal("0.0002")
DEFAULT_LEVERAGE = 20
DEFAULT_RECV_WINDOW_MS = 5000
MAX_NOTIONAL = Decimal("1000000000")  # one leverage bracket, large enough to never bind

BANNED = {
    "code": -1003,
    "msg": "Way too many requests; IP(127.0.0.1) banned until 4102444800000."
    " Please use the websocket for live updates to avoid bans.",
}

_ZERO = Decimal(0)
_MONEY = Decimal("0.00000001")  # Binance reports balances, PnL and fees to 8 decimals
_CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_OPEN = frozenset({"NEW", "PARTIALLY_FILLED"})
_ALGO_TYPES = frozenset({"STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT"})
_CONDITIONAL_TYPES = _ALGO_TYPES | {"TRAILING_STOP_MARKET"}
_TIME_IN_FORCE = frozenset({"GTC", "IOC", "FOK", "GTX", "GTD"})


class BinanceError(Exception):
    """An answer Binance gives instead of a result: HTTP status + `{"code", "msg"}`."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status = code, msg, status

    @property
    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


def _mandatory(name: str) -> BinanceError:
    return BinanceError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _order_does_not_exist() -> BinanceError:
    return BinanceError(-2013, "Order does not exist.")


def _unknown_order() -> BinanceError:
    return BinanceError(-2011, "Unknown order sent.")


def _invalid_key() -> BinanceError:
    return BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)


# --------------------------------------------------------------------------- state
@dataclass
class Position:
    symbol: str
    position_side: str  # BOTH (one-way), LONG or SHORT (hedge mode)
    amount: Decimal = _ZERO  # negative for shorts, as Binance's positionAmt
    entry_price: Decimal = _ZERO  # average price of the opening fills
    update_ms: int = 0


@dataclass
class Order:
    order_id: int
    client_order_id: str
    symbol: str
    side: str  # BUY / SELL
    position_side: str
    type: str  # MARKET / LIMIT
    orig_type: str
    orig_qty: Decimal
    price: Decimal  # 0 for MARKET
    time_in_force: str
    reduce_only: bool
    close_position: bool
    time_ms: int
    update_ms: int
    status: str = "NEW"
    executed_qty: Decimal = _ZERO
    cum_quote: Decimal = _ZERO
    stop_price: Decimal = _ZERO
    algo_id: int | None = None  # the conditional order that placed it

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else _ZERO


@dataclass
class AlgoOrder:
    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    position_side: str
    order_type: str  # STOP_MARKET / TAKE_PROFIT_MARKET / STOP / TAKE_PROFIT
    quantity: Decimal  # 0 with closePosition
    trigger_price: Decimal
    price: Decimal  # limit price of STOP / TAKE_PROFIT, else 0
    time_in_force: str
    reduce_only: bool
    close_position: bool
    working_type: str
    price_protect: bool
    create_ms: int
    update_ms: int
    status: str = "NEW"
    actual_order_id: int | None = None
    actual_price: Decimal = _ZERO
    trigger_ms: int = 0

    @property
    def is_open(self) -> bool:
        return self.status == "NEW"


@dataclass(frozen=True)
class Trade:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    position_side: str
    price: Decimal
    qty: Decimal
    realized_pnl: Decimal  # gross, before fees
    commission: Decimal
    maker: bool
    time_ms: int

    @property
    def quote_qty(self) -> Decimal:
        return self.price * self.qty


@dataclass
class Account:
    """One futures account behind one API key. Read it through the server's inspection
    methods; change it through requests or the server's test controls."""

    api_key: str
    secret: str = field(repr=False)
    wallet_balance: Decimal
    can_trade: bool
    can_withdraw: bool
    hedge_mode: bool
    created_ms: int
    update_ms: int
    leverage: dict[str, int] = field(default_factory=dict)
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    algo_orders: dict[int, AlgoOrder] = field(default_factory=dict)
    order_ids_by_client: dict[str, int] = field(default_factory=dict)
    algo_ids_by_client: dict[str, int] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)


class RecordedRequest(NamedTuple):
    method: str
    path: str
    params: dict[str, str]  # query string and form body together, signature included
    at: float  # when it arrived (time.monotonic())


@dataclass
class _Fault:
    kind: Literal["fail", "delay", "stall"]
    method: str
    path: str
    remaining: int
    status: int = 0
    body: Any = None
    retry_after: int | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class _Margins:
    """An account's cross-margin figures at the current marks."""

    wallet: Decimal
    unrealized: Decimal
    position_initial: Decimal
    open_order_initial: Decimal
    maintenance: Decimal

    @property
    def margin_balance(self) -> Decimal:
        return self.wallet + self.unrealized

    @property
    def initial(self) -> Decimal:
        return self.position_initial + self.open_order_initial

    @property
    def available(self) -> Decimal:
        return self.margin_balance - self.initial


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Route:
    handler: Callable[[Account, dict[str, str]], Any]
    trading: bool  # a TRADE endpoint: refused to keys without futures trading permission


class _Handler(KeepAliveHandler):
    server: OwnedHttpServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        owner: BinanceFuturesServer = self.server.owner
        reply = owner.dispatch(method, parts.path, parts.query, body, self.headers.get)
        data = json.dumps(reply.body, separators=(",", ":")).encode()
        self.reply(reply.status, data, headers=reply.headers)


# --------------------------------------------------------------------------- the server
class BinanceFuturesServer(BackgroundHttpServer):
    """Binance USDⓈ-M futures REST (public and signed) on a free loopback port."""

    def __init__(
        self,
        markets: Iterable[FuturesMarket] | None = None,
        *,
        taker_fee: Decimal = DEFAULT_TAKER_FEE,
        maker_fee: Decimal = DEFAULT_MAKER_FEE,
        slippage: Decimal = _ZERO,
        reuse_client_ids: Literal["never", "after_close"] = "never",
    ) -> None:
        super().__init__(_Handler)
        market_list = paper_futures_markets() if markets is None else list(markets)
        # exchangeInfo, ticker/24hr and ping are answered by the public server's logic; its
        # own listener is closed at once, requests reach it through this server.
        self._market_data = BinancePublicServer(market_list)
        self._market_data.stop()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._markets = {market.symbol: market for market in market_list}
        self._prices: dict[str, Decimal] = {}
        self._accounts: dict[str, Account] = {}
        self._faults: list[_Fault] = []
        self._requests: list[RecordedRequest] = []
        self._clock_offset_ms = 0
        self.taker_fee, self.maker_fee, self.slippage = taker_fee, maker_fee, slippage
        self.reuse_client_ids = reuse_client_ids
        self._order_ids = itertools.count(8_389_765_500_000_000_001)
        self._algo_ids = itertools.count(1_000_000_001)
        self._trade_ids = itertools.count(5_000_000_001)
        self._routes: dict[tuple[str, str], _Route] = {
            ("POST", ORDER): _Route(self._new_order, trading=True),
            ("GET", ORDER): _Route(self._query_order, trading=False),
            ("DELETE", ORDER): _Route(self._cancel_order, trading=True),
            ("GET", OPEN_ORDER): _Route(self._query_open_order, trading=False),
            ("GET", OPEN_ORDERS): _Route(self._open_orders, trading=False),
            ("GET", ALL_ORDERS): _Route(self._all_orders, trading=False),
            ("POST", ALGO_ORDER): _Route(self._new_algo_order, trading=True),
            ("GET", ALGO_ORDER): _Route(self._query_algo_order, trading=False),
            ("DELETE", ALGO_ORDER): _Route(self._cancel_algo_order, trading=True),
            ("GET", OPEN_ALGO_ORDERS): _Route(self._open_algo_orders, trading=False),
            ("GET", USER_TRADES): _Route(self._user_trades, trading=False),
            ("GET", POSITION_RISK_V2): _Route(self._position_risk_v2, trading=False),
            ("GET", POSITION_RISK_V3): _Route(self._position_risk_v3, trading=False),
            ("GET", ACCOUNT_V2): _Route(self._account_v2, trading=False),
            ("GET", ACCOUNT_V3): _Route(self._account_v3, trading=False),
            ("GET", LEVERAGE_BRACKET): _Route(self._leverage_bracket, trading=False),
            ("GET", SYMBOL_CONFIG): _Route(self._symbol_config, trading=False),
            ("POST", LEVERAGE): _Route(self._set_leverage, trading=True),
            ("GET", POSITION_MODE): _Route(self._position_mode, trading=False),
            ("POST", POSITION_MODE): _Route(self._set_position_mode, trading=True),
            ("GET", API_RESTRICTIONS): _Route(self._api_restrictions, trading=False),
        }

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        self._stopping.set()  # ends delays and stalls so their threads finish
        super().stop()

    # ------------------------------------------------------------------ where it is
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_urls(self) -> dict[str, str]:
        """Every section of ccxt's `binanceusdm.urls['api']`, pointed here."""
        return {name: self.url + prefix for name, prefix in CCXT_API_PATHS.items()}

    # ------------------------------------------------------------------ accounts
    def add_account(
        self,
        api_key: str,
        secret: str,
        *,
        balance: Decimal = Decimal("10000"),
        can_withdraw: bool = False,
        can_trade: bool = True,
        hedge_mode: bool = False,
    ) -> Account:
        """A USDT futures account with `balance` in its wallet. `can_trade=False` is a key
        without futures trading permission: it reads, but TRADE endpoints answer -2015."""
        now = self.now_ms()
        account = Account(
            api_key=api_key,
            secret=secret,
            wallet_balance=balance,
            can_trade=can_trade,
            can_withdraw=can_withdraw,
            hedge_mode=hedge_mode,
            created_ms=now,
            update_ms=now,
        )
        with self._lock:
            self._accounts[api_key] = account
        return account

    # ------------------------------------------------------------------ market controls
    def set_price(self, symbol: str, price: Decimal) -> None:
        """Move the mark/last price; resting LIMIT and conditional orders it crosses execute
        before this returns."""
        with self._lock:
            self._market(symbol)
            self._prices[symbol] = price
            self._market_data.set_price(symbol, price)
            self._match(symbol)

    def price(self, symbol: str) -> Decimal:
        with self._lock:
            return self._prices.get(symbol) or base_price(symbol)

    def list_market(self, market: FuturesMarket) -> None:
        with self._lock:
            self._markets[market.symbol] = market
            self._market_data.list_market(market)

    def delist(self, symbol: str) -> None:
        with self._lock:
            self._markets.pop(symbol, None)
            self._market_data.delist(symbol)

    def set_clock_offset(self, milliseconds: int) -> None:
        """Skew the server clock: requests signed with the real time then fall outside the
        recvWindow (positive offset) or are ahead of the server (negative offset)."""
        with self._lock:
            self._clock_offset_ms = milliseconds

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self._clock_offset_ms

    # ------------------------------------------------------------------ faults
    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        body: Any = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` `method path` requests with `status` and Binance's body for
        it (429/418: -1003, 5xx: -1001) without acting on them; `retry_after` (seconds) adds
        the `Retry-After` header Binance sends with 429/418."""
        if body is None:
            body = BANNED if status == 418 else TOO_MANY_REQUESTS if status == 429 else None
            body = INTERNAL_ERROR if body is None else body
        self._add_fault(_Fault("fail", method, path, times, status, body, retry_after))

    def accept_then_stall(self, method: str, path: str, seconds: float, times: int = 1) -> None:
        """Act on the next `times` `method path` requests (an order IS placed), then hold the
        answer `seconds`, so a client with a shorter timeout gives up not knowing."""
        self._add_fault(_Fault("stall", method, path, times, seconds=seconds))

    def delay(self, method: str, path: str, seconds: float, times: int = 1) -> None:
        """Wait `seconds` before acting on the next `times` `method path` requests."""
        self._add_fault(_Fault("delay", method, path, times, seconds=seconds))

    def clear_faults(self) -> None:
        """Forget the faults not used up yet."""
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        fault.method = fault.method.upper()
        with self._lock:
            self._faults.append(fault)

    # ------------------------------------------------------------------ inspection
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (faulted ones too), oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def orders(self, api_key: str) -> list[Order]:
        """Copies of the account's orders (conditional ones excluded), oldest first."""
        with self._lock:
            return [copy.copy(o) for o in self._accounts[api_key].orders.values()]

    def algo_orders(self, api_key: str) -> list[AlgoOrder]:
        with self._lock:
            return [copy.copy(o) for o in self._accounts[api_key].algo_orders.values()]

    def positions(self, api_key: str) -> list[Position]:
        """Copies of the account's open (non-zero) positions."""
        with self._lock:
            positions = self._accounts[api_key].positions.values()
            return [copy.copy(p) for p in positions if p.amount]

    def trades(self, api_key: str) -> list[Trade]:
        with self._lock:
            return list(self._accounts[api_key].trades)

    def balance(self, api_key: str) -> Decimal:
        """The USDT wallet balance: deposits + realised PnL − fees (no unrealised PnL)."""
        with self._lock:
            return self._accounts[api_key].wallet_balance

    def available_balance(self, api_key: str) -> Decimal:
        with self._lock:
            return self._margins(self._accounts[api_key]).available

    # ------------------------------------------------------------------ HTTP entry point
    def dispatch(
        self, method: str, path: str, query: str, body: str, header: Callable[[str], str | None]
    ) -> _Reply:
        params = dict(parse_qsl(body, keep_blank_values=True))
        params |= dict(parse_qsl(query, keep_blank_values=True))  # the query string wins
        with self._lock:
            self._requests.append(RecordedRequest(method, path, dict(params), time.monotonic()))
            delay, failure, stall = (self._take_fault(kind, method, path) for kind in _KINDS)
        if delay is not None:
            self._stopping.wait(delay.seconds)
        if failure is not None:
            headers = (
                {} if failure.retry_after is None else {"Retry-After": str(failure.retry_after)}
            )
            return _Reply(failure.status, failure.body, headers)
        reply = self._answer(method, path, query, body, params, header)
        if stall is not None:
            self._stopping.wait(stall.seconds)
        return reply

    def _take_fault(self, kind: str, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.kind == kind and fault.method == method and fault.path == path:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _answer(
        self,
        method: str,
        path: str,
        query: str,
        body: str,
        params: dict[str, str],
        header: Callable[[str], str | None],
    ) -> _Reply:
        weight = {"X-MBX-USED-WEIGHT-1M": str(len(self._requests))}
        if method == "GET" and path == SERVER_TIME:
            return _Reply(200, {"serverTime": self.now_ms()}, weight)
        if method == "GET" and path in (EXCHANGE_INFO, TICKER_24HR, PING):
            status, payload, _ = self._market_data.handle(path, params)
            return _Reply(status, payload, weight)
        route = self._routes.get((method, path))
        if route is None:
            return _Reply(404, {"code": -1, "msg": f"no such endpoint {method} {path}"}, weight)
        try:
            with self._lock:
                account = self._authenticate(query, body, params, header)
                if route.trading and not account.can_trade:
                    raise _invalid_key()
                return _Reply(200, route.handler(account, params), weight)
        except BinanceError as error:
            return _Reply(error.status, error.body, weight)

    def _authenticate(
        self, query: str, body: str, params: dict[str, str], header: Callable[[str], str | None]
    ) -> Account:
        api_key = header("X-MBX-APIKEY")
        if not api_key:
            raise BinanceError(-2014, "API-key format invalid.", 401)
        account = self._accounts.get(api_key)
        if account is None:
            raise _invalid_key()
        # Binance signs the query string followed directly by the body, without the
        # signature parameter itself.
        signed = _without_signature(query) + _without_signature(body)
        expected = hmac.new(account.secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, params.get("signature", "")):
            raise BinanceError(-1022, "Signature for this request is not valid.")
        timestamp = _int_param(params, "timestamp")
        recv_window = int(params.get("recvWindow") or DEFAULT_RECV_WINDOW_MS)
        now = self.now_ms()
        if timestamp > now + 1000:
            raise BinanceError(
                -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - timestamp > recv_window:
            raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")
        return account

    # ------------------------------------------------------------------ orders
    def _new_order(self, account: Account, p: dict[str, str]) -> dict[str, Any]:
        market = self._market_param(p)
        side = _side(p)
        order_type = _required(p, "type").upper()
        if order_type in _CONDITIONAL_TYPES:
            raise BinanceError(
                -4120,
                "Order type not supported for this endpoint. Please use the Algo Order API"
                " endpoints instead.",
            )
        if order_type not in ("MARKET", "LIMIT"):
            raise BinanceError(-1116, "Invalid orderType.")
        position_side = self._position_side(account, p)
        reduce_only = self._reduce_only(account, p)
        qty = _quantity(market, p)
        price = _ZERO
        time_in_force = "GTC"
        if order_type == "LIMIT":
            price = _price(market, p, "price")
            time_in_force = _required(p, "timeInForce").upper()
            if time_in_force not in _TIME_IN_FORCE:
                raise BinanceError(-1115, "Invalid timeInForce.")
        client_id = self._client_order_id(account, p.get("newClientOrderId"))
        reference = price if order_type == "LIMIT" else self._fill_price(market, side)
        closing = self._closable(account, market.symbol, position_side, side)
        reducing = reduce_only or (account.hedge_mode and closing > 0)
        if reduce_only and closing == 0:
            raise BinanceError(-2022, "ReduceOnly Order is rejected.")
        if account.hedge_mode and _closes(position_side, side) and qty > closing:
            raise BinanceError(-2022, "ReduceOnly Order is rejected.")
        if not reducing and qty * reference < market.min_notional:
            raise _min_notional(market)
        self._check_margin(account, market.symbol, qty - min(qty, closing), reference)
        marketable = order_type == "MARKET" or _crosses(side, price, self.price(market.symbol))
        if time_in_force == "GTX" and marketable:
            raise BinanceError(
                -5022,
                "Due to the order could not be executed as maker, the Post Only order will be"
                " rejected.",
            )
        now = self.now_ms()
        order = Order(
            order_id=next(self._order_ids),
            client_order_id=client_id,
            symbol=market.symbol,
            side=side,
            position_side=position_side,
            type=order_type,
            orig_type=order_type,
            orig_qty=qty,
            price=price,
            time_in_force=time_in_force,
            reduce_only=reduce_only,
            close_position=False,
            time_ms=now,
            update_ms=now,
        )
        self._register(account, order)
        acknowledged = self._order_json(order, new=True)
        self._work(account, order, marketable)
        if p.get("newOrderRespType", "ACK").upper() == "ACK":
            return acknowledged
        return self._order_json(order, new=True)

    def _register(self, account: Account, order: Order) -> None:
        account.orders[order.order_id] = order
        account.order_ids_by_client[order.client_order_id] = order.order_id

    def _work(self, account: Account, order: Order, marketable: bool) -> None:
        """Execute a just-placed order: fill what crosses, rest or expire the rest."""
        if marketable:
            market = self._market(order.symbol)
            price = self._fill_price(market, order.side)
            if order.type == "LIMIT":
                # A marketable limit never fills beyond its price.
                better = min if order.side == "BUY" else max
                price = better(price, order.price)
            self._fill(account, order, price, maker=False)
        if order.is_open and (order.type == "MARKET" or order.time_in_force in ("IOC", "FOK")):
            self._finish(order, "EXPIRED")

    def _fill(self, account: Account, order: Order, price: Decimal, *, maker: bool) -> None:
        """Fill the rest of `order` at `price` (a reduce-only order only up to its position)."""
        qty = order.orig_qty - order.executed_qty
        if order.reduce_only or order.close_position:
            qty = min(qty, self._closable(account, order.symbol, order.position_side, order.side))
        if qty <= 0:
            self._finish(order, "EXPIRED")
            return
        position = self._position(account, order.symbol, order.position_side)
        signed = qty if order.side == "BUY" else -qty
        realized = _ZERO
        if position.amount == 0 or (position.amount > 0) == (signed > 0):
            total = abs(position.amount) + qty
            position.entry_price = (
                abs(position.amount) * position.entry_price + qty * price
            ) / total
        else:
            closed = min(qty, abs(position.amount))
            direction = 1 if position.amount > 0 else -1
            realized = closed * (price - position.entry_price) * direction
            if qty > abs(position.amount):
                position.entry_price = price  # flipped: the new side opened at this price
        position.amount += signed
        if position.amount == 0:
            position.entry_price = _ZERO
        now = self.now_ms()
        position.update_ms = now
        fee_rate = self.maker_fee if maker else self.taker_fee
        commission = (qty * price * fee_rate).quantize(_MONEY, ROUND_HALF_UP)
        realized = realized.quantize(_MONEY, ROUND_HALF_UP)
        account.wallet_balance += realized - commission
        account.update_ms = now
        account.trades.append(
            Trade(
                trade_id=next(self._trade_ids),
                order_id=order.order_id,
                symbol=order.symbol,
                side=order.side,
                position_side=order.position_side,
                price=price,
                qty=qty,
                realized_pnl=realized,
                commission=commission,
                maker=maker,
                time_ms=now,
            )
        )
        order.executed_qty += qty
        order.cum_quote += qty * price
        order.update_ms = now
        if order.executed_qty >= order.orig_qty:
            self._finish(order, "FILLED")
        elif order.reduce_only or order.close_position:
            self._finish(order, "EXPIRED")  # the position was smaller than the order
        else:
            order.status = "PARTIALLY_FILLED"
        self._position_changed(account, order.symbol, order.position_side)

    def _finish(self, order: Order, status: str) -> None:
        order.status = status
        order.update_ms = self.now_ms()
        if order.algo_id is None:
            return
        for account in self._accounts.values():
            algo = account.algo_orders.get(order.algo_id)
            if algo is not None:
                algo.status = "FINISHED"
                algo.actual_price = order.avg_price
                algo.update_ms = order.update_ms

    def _position_changed(self, account: Account, symbol: str, position_side: str) -> None:
        """Binance drops reduce-only orders that no longer reduce once a position closes or
        flips, and conditional GTE_GTC orders once it is closed."""
        position = self._position(account, symbol, position_side)
        for order in list(account.orders.values()):
            if (
                order.is_open
                and order.reduce_only
                and order.symbol == symbol
                and order.position_side == position_side
                and self._closable(account, symbol, position_side, order.side) == 0
            ):
                self._finish(order, "EXPIRED")
        if position.amount == 0:
            for algo in account.algo_orders.values():
                if (
                    algo.is_open
                    and algo.symbol == symbol
                    and algo.position_side == position_side
                    and algo.time_in_force == "GTE_GTC"
                ):
                    algo.status, algo.update_ms = "EXPIRED", self.now_ms()

    def _query_order(self, account: Account, p: dict[str, str]) -> dict[str, Any]:
        return self._order_json(self._find_order(account, p, _order_does_not_exist))

    def _query_open_order(self, account: Account, p: dict[str, str]) -> dict[str, Any]:
        order = self._find_order(account, p, _order_does_not_exist)
        if not order.is_open:
            raise _order_does_not_exist()
        return self._order_json(order)

    def _cancel_order(self, account: Account, p: dict[str, str]) -> dict[str, Any]:
        order = self._find_order(account, p, _unknown_order)
        if not order.is_open:
            raise _unknown_order()
        self._finish(order, "CANCELED")
        return self._order_json(order)

    def _find_order(
        self, account: Account, p: dict[str, str], missing: Callable[[], BinanceError]
    ) -> Order:
        market = self._market_param(p)
        if "orderId" in p:
            order = account.orders.get(_int_param(p, "orderId"))
        elif "origClientOrderId" in p:
            order_id = account.order_ids_by_client.get(p["origClientOrderId"])
            order = None if order_id is None else account.orders.get(order_id)
        else:
            raise BinanceError(-1102, "Either orderId or origClientOrderId must be sent.")
        if order is None or order.symbol != market.symbol:
            raise missing()
        return order

    def _open_orders(self, account: Account, p: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._market_param(p).symbol if "symbol" in p else None
        return [
            self._order_json(o)
            for o in account.orders.values()
            if o.is_open and symbol in (None, o.symbol)
        ]

    def _all_orders(self, account: Account, p: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._market_param(p).symbol
        from_id = _int_param(p, "orderId") if "orderId" in p else 0
        limit = min(int(p.get("limit") or 500), 1000)
        orders = [
            o for o in account.orders.values() if o.symbol == symbol and o.order_id >= from_id
        ]
        if "startTime" in p:
            orders = [o for o in orders if o.time_ms >= _int_param(p, "startTime")]
        if "endTime" in p:
            orders = [o for o in orders if o.time_ms <= _int_param(p, "endTime")]
        return [self._order_json(o) for o in orders[-limit:]]

    # ------------------------------------------------------------------ conditional orders
    def _new_algo_order(self, account: Account, p: dict[str, str]) -> dict[str, Any]:
        if _required(p, "algoType").upper() != "CONDITIONAL":
            raise BinanceError(-1130, "Data sent for parameter 'algoType' is not valid.")
        market = self._market_param(p)
        side = _side(p)
        order_type = _required(p, "type").upper()
        if order_type not in _ALGO_TYPES:
            raise BinanceError(-1116, "Invalid orderType.")
        position_side = self._position_side(account, p)
        reduce_only = self._reduce_only(account, p)
        close_position = p.get("closePosition", "false").lower() == "true"
        qty = _ZERO if close_position and "quantity" not in p else _quantity(market, p)
        trigger = _price(market, p, "triggerPrice")
        price = _price(market, p, "price") if order_type in ("STOP", "TAKE_PROFIT") else _ZERO
        client_id = p.get("clientAlgoId") or _generated_id()
        if not _CLIENT_ID.match(client_id):
            raise BinanceError(-4015, "Client order id is not valid.")
        if client_id in account.algo_ids_by_client:
            raise BinanceError(-20132, "The client algo id is duplicated.")
        if _triggered(order_type, side, trigger, self.price(market.symbol)):
            raise BinanceError(-2021, "Order would immediately trigger.")
        reducing = reduce_only or close_position or _closes(position_side, side)
        if not reducing and qty * trigger < market.min_notional:
            raise _min_notional(market)
        now = self.now_ms()
        algo = AlgoOrder(
            algo_id=next(self._algo_ids),
            client_algo_id=client_id,
            symbol=market.symbol,
            side=side,
            position_side=position_side,
            order_type=order_type,
            quantity=qty,
            trigger_price=trigger,
            price=price,
            time_in_force=p.get("timeInForce", "GTC").upper(),
            reduce_only=reduce_only,
            close_position=close_position,
            working_type=p.get("workingType", "CONTRACT_PRICE").upper(),
            price_protect=p.get("priceProtect", "false").lower() == "true",
            create_ms=now,
            update_ms=now,
        )
        account.algo_orders[algo.algo_id] = algo
        account.algo_ids_by_client[client_id] = algo.algo_id
        return self._algo_json(algo, new=True)

    def _query_algo_order(self, account: Account, p: dict[str, str]) -> dict[str, Any]:
        return self._algo_json(self._find_algo(account, p, _order_does_not_exist))

    def _cancel_algo_order(self, account: Account, p: dict[str, str]) -> dict[str, Any]:
        algo = self._find_algo(account, p, _unknown_order)
        if not algo.is_open:
            raise _unknown_order()
        algo.status, algo.update_ms = "CANCELED", self.now_ms()
        return {
            "algoId": algo.algo_id,
            "clientAlgoId": algo.client_algo_id,
            "code": "200",
            "msg": "success",
        }

    def _find_algo(
        self, account: Account, p: dict[str, str], missing: Callable[[], BinanceError]
    ) -> AlgoOrder:
        if "algoId" in p:
            algo = account.algo_orders.get(_int_param(p, "algoId"))
        elif "clientAlgoId" in p:
            algo_id = account.algo_ids_by_client.get(p["clientAlgoId"])
            algo = None if algo_id is None else account.algo_orders.get(algo_id)
        else:
            raise BinanceError(-1102, "Either algoId or clientAlgoId must be sent.")
        if algo is None:
            raise missing()
        return algo

    def _open_algo_orders(self, account: Account, p: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._market_param(p).symbol if "symbol" in p else None
        return [
            self._algo_json(a)
            for a in account.algo_orders.values()
            if a.is_open and symbol in (None, a.symbol)
        ]

    def _match(self, symbol: str) -> None:
        """Execute what the current price crosses, until nothing more does (a fill can expire
        or enable other orders)."""
        price = self.price(symbol)
        progressed = True
        while progressed:
            progressed = False
            for account in self._accounts.values():
                for order in list(account.orders.values()):
                    if (
                        order.is_open
                        and order.symbol == symbol
                        and order.type == "LIMIT"
                        and _crosses(order.side, order.price, price)
                    ):
                        self._fill(account, order, order.price, maker=True)
                        progressed = True
                for algo in list(account.algo_orders.values()):
                    if (
                        algo.is_open
                        and algo.symbol == symbol
                        and _triggered(algo.order_type, algo.side, algo.trigger_price, price)
                    ):
                        self._trigger(account, algo)
                        progressed = True

    def _trigger(self, account: Account, algo: AlgoOrder) -> None:
        """The conditional order places its real order in the matching engine."""
        now = self.now_ms()
        algo.status, algo.trigger_ms, algo.update_ms = "TRIGGERED", now, now
        qty = algo.quantity
        if algo.close_position:
            qty = self._closable(account, algo.symbol, algo.position_side, algo.side)
        limit = algo.order_type in ("STOP", "TAKE_PROFIT")
        client_id = algo.client_algo_id
        if client_id in account.order_ids_by_client:
            client_id = _generated_id()
        order = Order(
            order_id=next(self._order_ids),
            client_order_id=client_id,
            symbol=algo.symbol,
            side=algo.side,
            position_side=algo.position_side,
            type="LIMIT" if limit else "MARKET",
            orig_type=algo.order_type,
            orig_qty=qty,
            price=algo.price,
            time_in_force=algo.time_in_force if limit else "GTC",
            reduce_only=algo.reduce_only,
            close_position=algo.close_position,
            time_ms=now,
            update_ms=now,
            stop_price=algo.trigger_price,
            algo_id=algo.algo_id,
        )
        self._register(account, order)
        algo.actual_order_id = order.order_id
        reducing = algo.reduce_only or algo.close_position
        if qty == 0 or (
            reducing and self._closable(account, algo.symbol, algo.position_side, algo.side) == 0
        ):
            self._finish(order, "EXPIRED")  # nothing left to reduce
            return
        opening = qty - min(
            qty, self._closable(account, algo.symbol, algo.position_side, algo.side)
        )
        try:
            self._check_margin(account, algo.symbol, opening, self.price(algo.symbol))
        except BinanceError:
            self._finish(order, "REJECTED")
            algo.status = "REJECTED"
            return
        marketable = not limit or _crosses(order.side, order.price, self.price(order.symbol))
        self._work(account, order, marketable)

    # ------------------------------------------------------------------ trades, positions
    def _user_trades(self, account: Account, p: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._market_param(p).symbol
        trades = [t for t in account.trades if t.symbol == symbol]
        if "orderId" in p:
            order_id = _int_param(p, "orderId")
            trades = [t for t in trades if t.order_id == order_id]
        if "startTime" in p:
            trades = [t for t in trades if t.time_ms >= _int_param(p, "startTime")]
        if "endTime" in p:
            trades = [t for t in trades if t.time_ms <= _int_param(p, "endTime")]
        limit = min(int(p.get("limit") or 500), 1000)
        if "fromId" in p:
            trades = [t for t in trades if t.trade_id >= _int_param(p, "fromId")][:limit]
        else:
            trades = trades[-limit:]
        return [self._trade_json(t) for t in trades]

    def _position_risk_v3(self, account: Account, p: dict[str, str]) -> list[dict[str, Any]]:
        # v3 lists only the symbols with a position or an open order.
        symbol = self._market_param(p).symbol if "symbol" in p else None
        with_orders = {o.symbol for o in account.orders.values() if o.is_open}
        return [
            self._position_json(account, position, version=3)
            for position in self._all_positions(account)
            if symbol in (None, position.symbol)
            and (position.amount or position.symbol in with_orders)
        ]

    def _position_risk_v2(self, account: Account, p: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._market_param(p).symbol if "symbol" in p else None
        return [
            self._position_json(account, position, version=2)
            for position in self._all_positions(account)
            if symbol in (None, position.symbol)
        ]

    def _all_positions(self, account: Account) -> list[Position]:
        """One position per listed symbol and side of the account's mode, zero ones included."""
        sides = ("LONG", "SHORT") if account.hedge_mode else ("BOTH",)
        return [self._position(account, s, side) for s in self._markets for side in sides]

    def _account_v3(self, account: Account, p: dict[str, str]) -> dict[str, Any]:
        margins = self._margins(account)
        return {
            **self._account_totals(margins),
            "assets": [self._asset_json(account, margins)],
            "positions": [
                self._account_position_json(account, pos)
                for pos in self._all_positions(account)
                if pos.amount
            ],
        }

    def _account_v2(self, account: Account, p: dict[str, str]) -> dict[str, Any]:
        margins = self._margins(account)
        return {
            "feeTier": 0,
            "feeBurn": False,
            "canTrade": account.can_trade,
            "canDeposit": True,
            "canWithdraw": account.can_withdraw,
            "updateTime": 0,
            "multiAssetsMargin": False,
            "tradeGroupId": -1,
            **self._account_totals(margins),
            "assets": [self._asset_json(account, margins) | {"marginAvailable": True}],
            "positions": [
                self._account_position_json(account, pos) | self._v2_position_extras(account, pos)
                for pos in self._all_positions(account)
            ],
        }

    # ------------------------------------------------------------------ settings
    def _leverage_bracket(self, account: Account, p: dict[str, str]) -> Any:
        def entry(market: FuturesMarket) -> dict[str, Any]:
            max_leverage = _max_leverage(market.symbol)
            return {
                "symbol": market.symbol,
                "notionalCoef": 1.0,
                "brackets": [
                    {
                        "bracket": 1,
                        "initialLeverage": max_leverage,
                        "notionalCap": int(MAX_NOTIONAL),
                        "notionalFloor": 0,
                        "maintMarginRatio": float(_maint_margin_rate(market.symbol)),
                        "cum": 0.0,
                    }
                ],
            }

        if "symbol" in p:
            return entry(self._market_param(p))
        return [entry(market) for market in self._markets.values()]

    def _symbol_config(self, account: Account, p: dict[str, str]) -> list[dict[str, Any]]:
        markets = [self._market_param(p)] if "symbol" in p else list(self._markets.values())
        return [
            {
                "symbol": market.symbol,
                "marginType": "CROSSED",
                "isAutoAddMargin": "false",
                "leverage": self._leverage(account, market.symbol),
                "maxNotionalValue": str(MAX_NOTIONAL),
            }
            for market in markets
        ]

    def _set_leverage(self, account: Account, p: dict[str, str]) -> dict[str, Any]:
        market = self._market_param(p)
        raw = _required(p, "leverage")
        if not raw.isdigit() or not 1 <= int(raw) <= _max_leverage(market.symbol):
            raise BinanceError(-4028, f"Leverage {raw} is not valid")
        account.leverage[market.symbol] = int(raw)
        return {
            "leverage": int(raw),
            "maxNotionalValue": str(MAX_NOTIONAL),
            "symbol": market.symbol,
        }

    def _position_mode(self, account: Account, p: dict[str, str]) -> dict[str, Any]:
        return {"dualSidePosition": account.hedge_mode}

    def _set_position_mode(self, account: Account, p: dict[str, str]) -> dict[str, Any]:
        raw = _required(p, "dualSidePosition").lower()
        if raw not in ("true", "false"):
            raise BinanceError(-1130, "Data sent for parameter 'dualSidePosition' is not valid.")
        hedged = raw == "true"
        if hedged == account.hedge_mode:
            raise BinanceError(-4059, "No need to change position side.")
        if any(o.is_open for o in account.orders.values()) or any(
            a.is_open for a in account.algo_orders.values()
        ):
            raise BinanceError(
                -4067, "Position side cannot be changed if there exists open orders."
            )
        if any(pos.amount for pos in account.positions.values()):
            raise BinanceError(-4068, "Position side cannot be changed if there exists position.")
        account.hedge_mode = hedged
        return {"code": 200, "msg": "success"}

    def _api_restrictions(self, account: Account, p: dict[str, str]) -> dict[str, Any]:
        return {
            "ipRestrict": False,
            "createTime": account.created_ms,
            "enableReading": True,
            "enableWithdrawals": account.can_withdraw,
            "enableInternalTransfer": False,
            "enableMargin": False,
            "enableFutures": account.can_trade,
            "permitsUniversalTransfer": False,
            "enableVanillaOptions": False,
            "enableFixApiTrade": False,
            "enableFixReadOnly": False,
            "enableSpotAndMarginTrading": False,
            "enablePortfolioMarginTrading": False,
        }

    # ------------------------------------------------------------------ rules
    def _market(self, symbol: str) -> FuturesMarket:
        market = self._markets.get(symbol)
        if market is None:
            raise BinanceError(-1121, "Invalid symbol.")
        return market

    def _market_param(self, p: dict[str, str]) -> FuturesMarket:
        return self._market(_required(p, "symbol"))

    def _position_side(self, account: Account, p: dict[str, str]) -> str:
        position_side = p.get("positionSide", "BOTH").upper()
        expected = ("LONG", "SHORT") if account.hedge_mode else ("BOTH",)
        if position_side not in expected:
            raise BinanceError(-4061, "Order's position side does not match user's setting.")
        return position_side

    def _reduce_only(self, account: Account, p: dict[str, str]) -> bool:
        if "reduceOnly" not in p:
            return False
        if account.hedge_mode:
            raise BinanceError(-1106, "Parameter 'reduceOnly' sent when not required.")
        return p["reduceOnly"].lower() == "true"

    def _client_order_id(self, account: Account, requested: str | None) -> str:
        if not requested:
            return _generated_id()
        if not _CLIENT_ID.match(requested):
            raise BinanceError(-4015, "Client order id is not valid.")
        previous = account.order_ids_by_client.get(requested)
        if previous is not None and (
            self.reuse_client_ids == "never" or account.orders[previous].is_open
        ):
            raise BinanceError(-4116, "ClientOrderId is duplicated.")
        return requested

    def _position(self, account: Account, symbol: str, position_side: str) -> Position:
        key = (symbol, position_side)
        if key not in account.positions:
            account.positions[key] = Position(symbol, position_side)
        return account.positions[key]

    def _closable(self, account: Account, symbol: str, position_side: str, side: str) -> Decimal:
        """How much of the position an order on `side` can close (0 when it would open)."""
        amount = self._position(account, symbol, position_side).amount
        if (side == "BUY" and amount < 0) or (side == "SELL" and amount > 0):
            return abs(amount)
        return _ZERO

    def _fill_price(self, market: FuturesMarket, side: str) -> Decimal:
        price = self.price(market.symbol)
        moved = price * (1 + self.slippage) if side == "BUY" else price * (1 - self.slippage)
        return moved.quantize(market.tick_size, ROUND_HALF_UP)

    def _leverage(self, account: Account, symbol: str) -> int:
        return account.leverage.get(symbol, min(DEFAULT_LEVERAGE, _max_leverage(symbol)))

    def _check_margin(
        self, account: Account, symbol: str, opening: Decimal, price: Decimal
    ) -> None:
        """Opening `opening` at `price` needs its initial margin plus the taker fee free."""
        if opening <= 0:
            return
        notional = opening * price
        needed = notional / self._leverage(account, symbol) + notional * self.taker_fee
        if needed > self._margins(account).available:
            raise BinanceError(-2019, "Margin is insufficient.")

    def _margins(self, account: Account) -> _Margins:
        unrealized = position_im = order_im = maintenance = _ZERO
        for position in account.positions.values():
            if position.amount:
                mark = self.price(position.symbol)
                notional = abs(position.amount) * mark
                unrealized += position.amount * (mark - position.entry_price)
                position_im += notional / self._leverage(account, position.symbol)
                maintenance += notional * _maint_margin_rate(position.symbol)
        for order in account.orders.values():
            if order.is_open and not order.reduce_only and order.type == "LIMIT":
                remaining = order.orig_qty - order.executed_qty
                order_im += remaining * order.price / self._leverage(account, order.symbol)
        return _Margins(account.wallet_balance, unrealized, position_im, order_im, maintenance)

    def _liquidation_price(self, account: Account, position: Position) -> Decimal:
        """Cross margin, one bracket: the mark price at which the margin balance equals the
        maintenance margin, the account's other positions held at their current marks."""
        if not position.amount:
            return _ZERO
        margins = self._margins(account)
        mark = self.price(position.symbol)
        rate = _maint_margin_rate(position.symbol)
        own_unrealized = position.amount * (mark - position.entry_price)
        others_unrealized = margins.unrealized - own_unrealized
        others_maintenance = margins.maintenance - abs(position.amount) * mark * rate
        numerator = (
            position.amount * position.entry_price
            - margins.wallet
            - others_unrealized
            + others_maintenance
        )
        price = numerator / (position.amount - abs(position.amount) * rate)
        return max(price, _ZERO)

    # ------------------------------------------------------------------ JSON shapes
    def _order_json(self, order: Order, *, new: bool = False) -> dict[str, Any]:
        market = self._market(order.symbol)
        body: dict[str, Any] = {
            "orderId": order.order_id,
            "symbol": order.symbol,
            "status": order.status,
            "clientOrderId": order.client_order_id,
            "price": _fixed(order.price, market.tick_size),
            "avgPrice": _fixed(order.avg_price, market.tick_size),
            "origQty": _fixed(order.orig_qty, market.step_size),
            "executedQty": _fixed(order.executed_qty, market.step_size),
            "cumQuote": _plain(order.cum_quote),
            "timeInForce": order.time_in_force,
            "type": order.type,
            "reduceOnly": order.reduce_only,
            "closePosition": order.close_position,
            "side": order.side,
            "positionSide": order.position_side,
            "stopPrice": _fixed(order.stop_price, market.tick_size),
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": order.orig_type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "updateTime": order.update_ms,
        }
        if new:
            body["cumQty"] = body["executedQty"]
        else:
            body["time"] = order.time_ms
        return body

    def _algo_json(self, algo: AlgoOrder, *, new: bool = False) -> dict[str, Any]:
        market = self._market(algo.symbol)
        body: dict[str, Any] = {
            "algoId": algo.algo_id,
            "clientAlgoId": algo.client_algo_id,
            "algoType": "CONDITIONAL",
            "orderType": algo.order_type,
            "symbol": algo.symbol,
            "side": algo.side,
            "positionSide": algo.position_side,
            "timeInForce": algo.time_in_force,
            "quantity": _fixed(algo.quantity, market.step_size),
            "algoStatus": algo.status,
            "triggerPrice": _fixed(algo.trigger_price, market.tick_size),
            "price": _fixed(algo.price, market.tick_size),
            "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": algo.working_type,
            "priceMatch": "NONE",
            "closePosition": algo.close_position,
            "priceProtect": algo.price_protect,
            "reduceOnly": algo.reduce_only,
            "createTime": algo.create_ms,
            "updateTime": algo.update_ms,
            "triggerTime": algo.trigger_ms,
            "goodTillDate": 0,
        }
        if not new:
            actual = "" if algo.actual_order_id is None else str(algo.actual_order_id)
            body |= {
                "actualOrderId": actual,
                "actualPrice": _fixed(algo.actual_price, market.tick_size),
                "tpTriggerPrice": "0.000",
                "tpPrice": "0.000",
                "slTriggerPrice": "0.000",
                "slPrice": "0.000",
                "tpOrderType": "",
            }
        return body

    def _trade_json(self, trade: Trade) -> dict[str, Any]:
        market = self._market(trade.symbol)
        return {
            "buyer": trade.side == "BUY",
            "commission": _money(trade.commission),
            "commissionAsset": market.quote,
            "id": trade.trade_id,
            "maker": trade.maker,
            "orderId": trade.order_id,
            "price": _fixed(trade.price, market.tick_size),
            "qty": _fixed(trade.qty, market.step_size),
            "quoteQty": _plain(trade.quote_qty),
            "realizedPnl": _money(trade.realized_pnl),
            "side": trade.side,
            "positionSide": trade.position_side,
            "symbol": trade.symbol,
            "time": trade.time_ms,
        }

    def _position_json(self, account: Account, position: Position, version: int) -> dict[str, Any]:
        market = self._market(position.symbol)
        mark = self.price(position.symbol)
        notional = position.amount * mark
        leverage = self._leverage(account, position.symbol)
        initial = abs(notional) / leverage
        body: dict[str, Any] = {
            "symbol": position.symbol,
            "positionSide": position.position_side,
            "positionAmt": _fixed(position.amount, market.step_size),
            "entryPrice": _plain(_round8(position.entry_price)),
            "breakEvenPrice": _plain(_round8(self._break_even(position))),
            "markPrice": _money(mark),
            "unRealizedProfit": _money(position.amount * (mark - position.entry_price)),
            "liquidationPrice": _plain(_round8(self._liquidation_price(account, position))),
            "isolatedMargin": "0",
            "notional": _money(notional),
            "isolatedWallet": "0",
            "updateTime": position.update_ms,
        }
        if version == 3:
            body |= {
                "marginAsset": market.quote,
                "initialMargin": _money(initial),
                "maintMargin": _money(abs(notional) * _maint_margin_rate(position.symbol)),
                "positionInitialMargin": _money(initial),
                "openOrderInitialMargin": "0",
                "adl": 0,
                "bidNotional": "0",
                "askNotional": "0",
            }
        else:
            body |= {
                "leverage": str(leverage),
                "maxNotionalValue": str(MAX_NOTIONAL),
                "marginType": "cross",
                "isAutoAddMargin": "false",
                "isolated": False,
                "adlQuantile": 0,
            }
        return body

    def _break_even(self, position: Position) -> Decimal:
        """The price that pays back the opening and the closing taker fee."""
        if not position.amount:
            return _ZERO
        fee = self.taker_fee
        if position.amount > 0:
            return position.entry_price * (1 + fee) / (1 - fee)
        return position.entry_price * (1 - fee) / (1 + fee)

    def _account_totals(self, m: _Margins) -> dict[str, Any]:
        return {
            "totalInitialMargin": _money(m.initial),
            "totalMaintMargin": _money(m.maintenance),
            "totalWalletBalance": _money(m.wallet),
            "totalUnrealizedProfit": _money(m.unrealized),
            "totalMarginBalance": _money(m.margin_balance),
            "totalPositionInitialMargin": _money(m.position_initial),
            "totalOpenOrderInitialMargin": _money(m.open_order_initial),
            "totalCrossWalletBalance": _money(m.wallet),
            "totalCrossUnPnl": _money(m.unrealized),
            "availableBalance": _money(m.available),
            "maxWithdrawAmount": _money(max(_ZERO, min(m.available, m.wallet))),
        }

    def _asset_json(self, account: Account, m: _Margins) -> dict[str, Any]:
        return {
            "asset": "USDT",
            "walletBalance": _money(m.wallet),
            "unrealizedProfit": _money(m.unrealized),
            "marginBalance": _money(m.margin_balance),
            "maintMargin": _money(m.maintenance),
            "initialMargin": _money(m.initial),
            "positionInitialMargin": _money(m.position_initial),
            "openOrderInitialMargin": _money(m.open_order_initial),
            "crossWalletBalance": _money(m.wallet),
            "crossUnPnl": _money(m.unrealized),
            "availableBalance": _money(m.available),
            "maxWithdrawAmount": _money(max(_ZERO, min(m.available, m.wallet))),
            # ccxt skips assets whose updateTime is 0, as Binance's untouched ones are.
            "updateTime": account.update_ms,
        }

    def _account_position_json(self, account: Account, position: Position) -> dict[str, Any]:
        market = self._market(position.symbol)
        mark = self.price(position.symbol)
        notional = position.amount * mark
        initial = abs(notional) / self._leverage(account, position.symbol)
        return {
            "symbol": position.symbol,
            "positionSide": position.position_side,
            "positionAmt": _fixed(position.amount, market.step_size),
            "unrealizedProfit": _money(position.amount * (mark - position.entry_price)),
            "isolatedMargin": "0",
            "notional": _money(notional),
            "isolatedWallet": "0",
            "initialMargin": _money(initial),
            "maintMargin": _money(abs(notional) * _maint_margin_rate(position.symbol)),
            "updateTime": position.update_ms,
        }

    def _v2_position_extras(self, account: Account, position: Position) -> dict[str, Any]:
        return {
            "leverage": str(self._leverage(account, position.symbol)),
            "entryPrice": _plain(_round8(position.entry_price)),
            "breakEvenPrice": _plain(_round8(self._break_even(position))),
            "maxNotional": str(MAX_NOTIONAL),
            "isolated": False,
            "positionInitialMargin": "0",
            "openOrderInitialMargin": "0",
            "bidNotional": "0",
            "askNotional": "0",
        }


_KINDS = ("delay", "fail", "stall")


# --------------------------------------------------------------------------- helpers
def _without_signature(raw: str) -> str:
    return "&".join(part for part in raw.split("&") if part and not part.startswith("signature="))


def _required(p: dict[str, str], name: str) -> str:
    value = p.get(name)
    if not value:
        raise _mandatory(name)
    return value


def _int_param(p: dict[str, str], name: str) -> int:
    value = _required(p, name)
    try:
        return int(value)
    except ValueError:
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        ) from None


def _decimal_param(p: dict[str, str], name: str) -> Decimal:
    value = _required(p, name)
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}';"
            " legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        )
    return number


def _side(p: dict[str, str]) -> str:
    side = _required(p, "side").upper()
    if side not in ("BUY", "SELL"):
        raise BinanceError(-1117, "Invalid side.")
    return side


def _on_step(value: Decimal, step: Decimal, not_on_step: BinanceError) -> None:
    if _places(value) > _places(step):
        raise BinanceError(-1111, "Precision is over the maximum defined for this asset.")
    if value % step:
        raise not_on_step


def _quantity(market: FuturesMarket, p: dict[str, str]) -> Decimal:
    qty = _decimal_param(p, "quantity")
    if qty <= 0:
        raise BinanceError(-4003, "Quantity less than or equal to zero.")
    _on_step(qty, market.step_size, BinanceError(-4023, "Quantity not increased by step size."))
    return qty


def _price(market: FuturesMarket, p: dict[str, str], name: str) -> Decimal:
    price = _decimal_param(p, name)
    if price <= 0:
        raise BinanceError(-4001, "Price less than 0.")
    _on_step(price, market.tick_size, BinanceError(-4014, "Price not increased by tick size."))
    return price


def _min_notional(market: FuturesMarket) -> BinanceError:
    return BinanceError(
        -4164,
        f"Order's notional must be no smaller than {_plain(market.min_notional)}"
        " (unless you choose reduce only).",
    )


def _closes(position_side: str, side: str) -> bool:
    """In hedge mode, whether `side` closes the `position_side` position."""
    return (position_side, side) in (("LONG", "SELL"), ("SHORT", "BUY"))


def _crosses(side: str, limit: Decimal, price: Decimal) -> bool:
    """Whether a limit order on `side` at `limit` is executable at `price`."""
    return price <= limit if side == "BUY" else price >= limit


def _triggered(order_type: str, side: str, trigger: Decimal, price: Decimal) -> bool:
    """A stop buys on a rise and sells on a fall through its trigger; a take-profit the
    other way round."""
    rising = order_type.startswith("STOP") == (side == "BUY")
    return price >= trigger if rising else price <= trigger


def _generated_id() -> str:
    return uuid.uuid4().hex[:22]


def _max_leverage(symbol: str) -> int:
    market = PAPER_MARKETS.get(symbol)
    return DEFAULT_LEVERAGE if market is None else market.max_leverage


def _maint_margin_rate(symbol: str) -> Decimal:
    return 1 / Decimal(2 * _max_leverage(symbol))


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int), value
    return max(0, -exponent)


def _fixed(value: Decimal, step: Decimal) -> str:
    """`value` with the decimals of `step` (more when it has them, e.g. an average price)."""
    places = max(_places(step), _places(value))
    return f"{value.quantize(Decimal(1).scaleb(-places)):f}"


def _money(value: Decimal) -> str:
    return f"{value.quantize(_MONEY, ROUND_HALF_UP):f}"


def _round8(value: Decimal) -> Decimal:
    return value.quantize(_MONEY, ROUND_HALF_UP)


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"


# --------------------------------------------------------------------------- the client
def make_client(server: BinanceFuturesServer, api_key: str, secret: str, **overrides: Any) -> Any:
    """ccxt's async `binanceusdm` configured as the exchange adapter configures it, pointed at
    `server`. `overrides` replace top-level config entries (e.g. `timeout=1000`); an
    `options=` dict is merged into the default options. Close it with `await client.close()`."""
    import ccxt.async_support as ccxt_async

    options: dict[str, Any] = {
        "fetchMarkets": {"types": ["linear"]},
        "fetchCurrencies": False,
        "adjustForTimeDifference": False,
        "warnOnFetchOpenOrdersWithoutSymbol": False,
    }
    options |= overrides.pop("options", {})
    config: dict[str, Any] = {
        "apiKey": api_key,
        "secret": secret,
        "enableRateLimit": False,
        "timeout": 3000,
        "options": options,
    }
    client = ccxt_async.binanceusdm(config | overrides)
    client.urls["api"] = server.api_urls
    return client


def use_linear_error_map(client: Any) -> Any:
    """Make `client` raise, against this server, the exception classes it raises against
    fapi.binance.com.

    ccxt picks its USDⓈ-M-only error table (-2019 → InsufficientFunds, -2022 / -4116 / -4164 →
    InvalidOrder, -2021 → OrderImmediatelyFillable, ...) by the request URL's host
    (`https://fapi.binance.com/`); for `http://127.0.0.1` it applies only the table shared by
    all markets, and those codes become a bare ExchangeError. This copies the USDⓈ-M table
    over the shared one, which is what the USDⓈ-M host gets (its table is consulted first)."""
    linear = client.exceptions["linear"]
    for kind in ("exact", "broad"):
        client.exceptions[kind] = client.exceptions[kind] | linear.get(kind, {})
    return client
