"""A local stand-in for Bybit's v5 REST API: USDT linear perpetuals on a unified trading
account, close enough on the wire that ccxt's real `bybit` client (4.5.90) works against it
unchanged — markets, tickers, orders (market, limit, conditional, position TP/SL), fills with
fees, positions, closed PnL, wallet balance, leverage, position mode and key permissions.

What ccxt calls, read from its source:
- `load_markets()`: `GET /v5/asset/coin/query-info` (private; ccxt fetches currencies whenever
  it has keys — its `fetchCurrencies` option is Binance's and Bybit's code ignores it), then
  `GET /v5/market/instruments-info?category=linear` twice (the second with
  `status=PreLaunch`, answered with an empty list). `options.fetchMarkets.types=['linear']`
  keeps it away from spot, inverse and option markets.
- Before a create, a fetch_order or a balance ccxt asks `GET /v5/user/query-api` and
  `GET /v5/account/info` whether the account is unified (it is: `uta=1`).
- Orders: `POST /v5/order/create` (answers only `orderId`/`orderLinkId`), `POST
  /v5/order/cancel`, `GET /v5/order/realtime` (open orders; by `orderId`/`orderLinkId` also
  the recent closed ones, as Bybit's "Get Open & Closed Orders"), `GET /v5/order/history`.
  ccxt sends `stopLossPrice`/`takeProfitPrice` as a conditional reduce-only market order
  (`triggerPrice`, `triggerDirection` 1 = rises to, 2 = falls to), both at once through
  `POST /v5/position/trading-stop`, attached `stopLoss`/`takeProfit` as fields of the create.
- `GET /v5/execution/list`, `GET /v5/position/closed-pnl`, `GET /v5/position/list`,
  `GET /v5/account/wallet-balance`, `POST /v5/position/set-leverage`,
  `POST /v5/position/switch-mode`; public `GET /v5/market/time` and `GET /v5/market/tickers`.

The trading model: an order fills at once and whole at the last price (market orders, and
limit orders that cross it, as taker; slippage optional), or rests until `set_price` crosses
it (limit orders fill at their price as maker; conditional orders trigger and then execute as
market orders: Untriggered → Triggered → Filled). Fees are charged to the wallet at each fill,
price PnL when a position is reduced; a reduce-only order is capped at the position and is
deactivated when the position is gone or flips. Not modelled: partial fills, an order book,
funding, liquidation, risk limits, per-symbol position modes, pagination cursors.

Every private request is verified as Bybit does (`X-BAPI-*` headers, HMAC-SHA256 over
timestamp + key + recv window + query string or JSON body) and errors carry Bybit's retCodes.
Tests can inject faults per HTTP method + path (error answers with no effect, answers stalled
after the request took effect, requests delayed before they take effect) and skew the clock.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import ccxt.async_support as ccxt_async

from app.exchanges.base import MarketInfo
from app.exchanges.price_feed import base_price
from app.exchanges.symbols import PAPER_MARKETS
from tests.support.http_server import BackgroundHttpServer, KeepAliveHandler, OwnedHttpServer

MARKET_TIME = "/v5/market/time"
INSTRUMENTS_INFO = "/v5/market/instruments-info"
TICKERS = "/v5/market/tickers"
QUERY_API = "/v5/user/query-api"
ACCOUNT_INFO = "/v5/account/info"
COIN_INFO = "/v5/asset/coin/query-info"
WALLET_BALANCE = "/v5/account/wallet-balance"
ORDER_CREATE = "/v5/order/create"
ORDER_CANCEL = "/v5/order/cancel"
ORDER_REALTIME = "/v5/order/realtime"
ORDER_HISTORY = "/v5/order/history"
EXECUTION_LIST = "/v5/execution/list"
POSITION_LIST = "/v5/position/list"
CLOSED_PNL = "/v5/position/closed-pnl"
SET_LEVERAGE = "/v5/position/set-leverage"
SWITCH_MODE = "/v5/position/switch-mode"
TRADING_STOP = "/v5/position/trading-stop"

SETTLE_COIN = "USDT"
DEFAULT_TAKER_FEE_RATE = Decimal("0.00055")  # Bybit's non-VIP rates for perpetuals
DEFAULT_MAKER_FEE_RATE = Decimal("0.0002")
DEFAULT_LEVERAGE = Decimal(10)  # what a new Bybit account has on every symbol
MAINTENANCE_MARGIN_RATE = Decimal("0.005")  # the first risk tier of the large markets
MARKET_PRICE_BAND = Decimal("0.03")  # a market order shows this worst acceptable price
RECENT_CLOSED_ORDERS = 500  # how many closed orders /v5/order/realtime keeps per account
_EIGHT_PLACES = Decimal("0.00000001")
_LAUNCH_MS = 1_585_526_400_000  # BTCUSDT's launchTime
_ZERO = Decimal(0)

OPEN_STATUSES = frozenset({"New", "PartiallyFilled", "Untriggered", "Triggered"})
_FULL_TPSL_TYPES = frozenset({"TakeProfit", "StopLoss"})

# Bybit's retCodes and messages, as its API sends them.
INVALID_KEY = (10003, "API key is invalid.")
PERMISSION_DENIED = (10005, "Permission denied, please check your API key permissions.")
TOO_MANY_VISITS = (10006, "Too many visits!")
ORDER_NOT_EXISTS = (110001, "order not exists or too late to cancel")
NOT_ENOUGH_BALANCE = (110007, "ab not enough for new order")
REDUCE_ONLY_RULE = (110017, "Reduce-only rule not satisfied")
REDUCE_ONLY_ZERO = (110017, "current position is zero, cannot fix reduce-only order qty")
POSITION_EXISTS = (110024, "You have an existing position, so position mode cannot be switched")
MODE_NOT_MODIFIED = (110025, "Position mode is not modified")
OPEN_ORDERS_EXIST = (110028, "Open orders exist, so you cannot change position mode")
LEVERAGE_NOT_MODIFIED = (110043, "Set leverage not modified")
DUPLICATE_LINK_ID = (110072, "OrderLinkedID is duplicate")
IDX_MODE_MISMATCH = (10001, "position idx not match position mode")
QTY_BELOW_MIN = (10001, "The number of contracts exceeds minimum limit allowed")


class BybitApiError(Exception):
    """A request Bybit refuses: answered with HTTP 200 and this retCode/retMsg."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message

    @classmethod
    def of(cls, known: tuple[int, str]) -> BybitApiError:
        return cls(*known)


# --------------------------------------------------------------------------- state


@dataclass
class Order:
    """One order as Bybit keeps it; `qty` of a reduce-only order shrinks to the position."""

    seq: int
    order_id: str
    order_link_id: str
    symbol: str
    side: str  # Buy | Sell
    order_type: str  # Market | Limit
    qty: Decimal
    price: Decimal  # the limit price; for a market order the worst price it accepts
    time_in_force: str  # GTC | IOC | FOK | PostOnly
    position_idx: int
    reduce_only: bool
    close_on_trigger: bool
    status: str
    created_ms: int
    updated_ms: int
    last_price_on_created: Decimal
    trigger_price: Decimal | None = None
    trigger_direction: int = 0  # 1: triggers when the price rises to it, 2: falls to it
    stop_order_type: str = ""  # Stop | TakeProfit | StopLoss | PartialTakeProfit | ...
    tpsl_mode: str = ""  # Full | Partial for position TP/SL
    take_profit: Decimal | None = None  # attached to an opening order
    stop_loss: Decimal | None = None
    create_type: str = "CreateByUser"
    cancel_type: str = "UNKNOWN"
    reject_reason: str = "EC_NoError"
    cum_exec_qty: Decimal = _ZERO
    cum_exec_value: Decimal = _ZERO
    cum_exec_fee: Decimal = _ZERO

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def is_conditional(self) -> bool:
        return self.trigger_price is not None

    @property
    def leaves_qty(self) -> Decimal:
        return self.qty - self.cum_exec_qty if self.is_open else _ZERO

    @property
    def avg_price(self) -> Decimal | None:
        if self.cum_exec_qty == 0:
            return None
        return (self.cum_exec_value / self.cum_exec_qty).quantize(_EIGHT_PLACES)


@dataclass
class Position:
    """One side of a symbol (positionIdx 0 in one-way mode, 1 long / 2 short in hedge mode)."""

    symbol: str
    position_idx: int
    leverage: Decimal
    side: str = ""  # Buy (long) | Sell (short) | "" (flat)
    size: Decimal = _ZERO
    avg_price: Decimal = _ZERO
    # Opening fees of the part still open: a close charges its share of them in closed PnL.
    open_fee: Decimal = _ZERO
    cur_realised_pnl: Decimal = _ZERO
    cum_realised_pnl: Decimal = _ZERO
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    created_ms: int = 0
    updated_ms: int = 0
    seq: int = 0


@dataclass(frozen=True)
class Execution:
    exec_id: str
    seq: int
    symbol: str
    order_id: str
    order_link_id: str
    side: str
    order_type: str
    stop_order_type: str
    create_type: str
    order_price: Decimal
    order_qty: Decimal
    leaves_qty: Decimal
    exec_price: Decimal
    exec_qty: Decimal
    exec_fee: Decimal
    fee_rate: Decimal
    is_maker: bool
    closed_size: Decimal
    mark_price: Decimal
    exec_time_ms: int

    @property
    def exec_value(self) -> Decimal:
        return self.exec_price * self.exec_qty


@dataclass(frozen=True)
class ClosedPnl:
    """One closing fill, as /v5/position/closed-pnl reports it: `closed_pnl` is the price PnL
    minus the opening fee of the closed quantity and the closing fee."""

    seq: int
    symbol: str
    order_id: str
    side: str  # the closing order's side
    order_type: str
    order_price: Decimal
    qty: Decimal  # the closing order's quantity
    leverage: Decimal
    closed_size: Decimal
    avg_entry_price: Decimal
    avg_exit_price: Decimal
    open_fee: Decimal
    close_fee: Decimal
    closed_pnl: Decimal
    created_ms: int


@dataclass(frozen=True)
class WalletBalance:
    """The USDT coin of the unified account."""

    wallet_balance: Decimal  # deposits − fees + realised price PnL
    unrealised_pnl: Decimal
    equity: Decimal
    position_im: Decimal
    order_im: Decimal
    position_mm: Decimal
    available_balance: Decimal  # equity − initial margin: what new orders can use
    available_to_withdraw: Decimal
    cum_realised_pnl: Decimal


@dataclass
class Account:
    """A Bybit user with one API key and a unified account holding USDT."""

    api_key: str
    secret: str = field(repr=False)
    wallet_balance: Decimal
    can_withdraw: bool
    can_trade: bool
    read_only: bool
    hedge_mode: bool
    user_id: int
    created_ms: int
    orders: dict[str, Order] = field(default_factory=dict)  # by orderId, oldest first
    positions: dict[tuple[str, int], Position] = field(default_factory=dict)
    leverage: dict[str, Decimal] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    closed_pnl: list[ClosedPnl] = field(default_factory=list)
    cum_realised_pnl: Decimal = _ZERO


class RecordedRequest(NamedTuple):
    method: str
    path: str
    params: dict[str, Any]  # the query (GET) or the JSON body (POST)
    at: float  # when it arrived (time.monotonic())


# --------------------------------------------------------------------------- transport


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    method: str
    path: str
    remaining: int
    status: int = 200
    body: dict[str, Any] | str | None = None
    retry_after: int | None = None
    seconds: float = 0.0


Handler = Callable[[Account | None, dict[str, Any]], dict[str, Any]]


class _Route(NamedTuple):
    handler: Handler
    private: bool
    writes: bool  # needs a key allowed to trade


class _RequestHandler(KeepAliveHandler):
    server: OwnedHttpServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply: _Reply = self.server.owner.handle(self.command, self.path, headers, body)
        self.reply(reply.status, reply.body, content_type=reply.content_type,
                   headers=reply.headers)  # fmt: skip


# --------------------------------------------------------------------------- the server


class BybitV5Server(BackgroundHttpServer):
    """Bybit v5 for USDT linear perpetuals on a free loopback port."""

    def __init__(
        self,
        *,
        markets: Iterable[MarketInfo] | None = None,
        taker_fee_rate: Decimal = DEFAULT_TAKER_FEE_RATE,
        maker_fee_rate: Decimal = DEFAULT_MAKER_FEE_RATE,
        slippage: Decimal = _ZERO,
    ) -> None:
        super().__init__(_RequestHandler)
        # One re-entrant lock guards all state: a fill inside set_price() may deactivate
        # orders, which goes through the same helpers the request handlers use.
        self._lock = threading.RLock()
        self.taker_fee_rate = taker_fee_rate
        self.maker_fee_rate = maker_fee_rate
        self.slippage = slippage  # fraction a market fill moves against the taker
        self._markets = {
            m.symbol: m for m in (PAPER_MARKETS.values() if markets is None else markets)
        }
        self._prices = {s: _to_tick(base_price(s), m.price_step) for s, m in self._markets.items()}
        self._accounts: dict[str, Account] = {}
        self._seq = itertools.count(1)
        self._skew_ms = 0
        self._requests: list[RecordedRequest] = []
        self._failures: list[_Fault] = []
        self._stalls: list[_Fault] = []
        self._delays: list[_Fault] = []
        self._released = threading.Event()
        self._routes: dict[tuple[str, str], _Route] = {
            ("GET", MARKET_TIME): _Route(self._market_time, private=False, writes=False),
            ("GET", INSTRUMENTS_INFO): _Route(self._instruments, private=False, writes=False),
            ("GET", TICKERS): _Route(self._tickers, private=False, writes=False),
            ("GET", QUERY_API): _Route(self._query_api, private=True, writes=False),
            ("GET", ACCOUNT_INFO): _Route(self._account_info, private=True, writes=False),
            ("GET", COIN_INFO): _Route(self._coin_info, private=True, writes=False),
            ("GET", WALLET_BALANCE): _Route(self._wallet_balance, private=True, writes=False),
            ("GET", ORDER_REALTIME): _Route(self._order_realtime, private=True, writes=False),
            ("GET", ORDER_HISTORY): _Route(self._order_history, private=True, writes=False),
            ("GET", EXECUTION_LIST): _Route(self._execution_list, private=True, writes=False),
            ("GET", POSITION_LIST): _Route(self._position_list, private=True, writes=False),
            ("GET", CLOSED_PNL): _Route(self._closed_pnl, private=True, writes=False),
            ("POST", ORDER_CREATE): _Route(self._order_create, private=True, writes=True),
            ("POST", ORDER_CANCEL): _Route(self._order_cancel, private=True, writes=True),
            ("POST", SET_LEVERAGE): _Route(self._set_leverage, private=True, writes=True),
            ("POST", SWITCH_MODE): _Route(self._switch_mode, private=True, writes=True),
            ("POST", TRADING_STOP): _Route(self._trading_stop, private=True, writes=True),
        }

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        self._released.set()  # let stalled and delayed requests finish so their threads end
        super().stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_urls(self) -> dict[str, str]:
        """Every section of ccxt bybit's `urls['api']`, pointed here."""
        return {name: self.url for name in ("spot", "futures", "v2", "public", "private")}

    # ------------------------------------------------------------------ what the test sets
    def add_account(
        self,
        api_key: str,
        secret: str,
        *,
        balance: Decimal = Decimal("10000"),
        can_withdraw: bool = False,
        can_trade: bool = True,
        read_only: bool = False,
        hedge_mode: bool = False,
    ) -> Account:
        """A unified account holding `balance` USDT whose key is `api_key`/`secret`."""
        with self._lock:
            account = Account(
                api_key=api_key,
                secret=secret,
                wallet_balance=balance,
                can_withdraw=can_withdraw,
                can_trade=can_trade,
                read_only=read_only,
                hedge_mode=hedge_mode,
                user_id=100_000_000 + len(self._accounts) + 1,
                created_ms=self.now_ms(),
            )
            self._accounts[api_key] = account
            return account

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Move the last and mark price; crossed conditional and limit orders execute now."""
        with self._lock:
            market = self._market(symbol)
            self._prices[symbol] = _to_tick(price, market.price_step)
            self._trigger_conditionals(symbol)
            self._fill_crossed_limits(symbol)

    def price(self, symbol: str) -> Decimal:
        with self._lock:
            return self._prices[symbol]

    def set_clock_skew(self, milliseconds: int) -> None:
        """Run the server's clock this far ahead (or behind, when negative) of the host's."""
        with self._lock:
            self._skew_ms = milliseconds

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self._skew_ms

    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        body: dict[str, Any] | str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests to `method path` with an error; they have no
        effect. Status 200 answers Bybit's rate limit (retCode 10006 with its
        X-Bapi-Limit-* headers; `retry_after` seconds until the reset), 403 the gateway's IP
        limit ("access too frequent"), 5xx a gateway error page. `body` replaces the body (a
        dict is sent as JSON); `retry_after` adds `Retry-After` to non-200 answers."""
        with self._lock:
            self._failures.append(
                _Fault(
                    method.upper(), path, times, status=status, body=body, retry_after=retry_after
                )
            )

    def accept_then_stall(self, method: str, path: str, seconds: float, times: int = 1) -> None:
        """Carry out the next `times` requests to `method path`, then hold the answer for
        `seconds`: a client with a shorter timeout gives up on a request that took effect."""
        with self._lock:
            self._stalls.append(_Fault(method.upper(), path, times, seconds=seconds))

    def delay(self, method: str, path: str, seconds: float, times: int = 1) -> None:
        """Hold the next `times` requests to `method path` for `seconds` before carrying them
        out: until then they have no effect, afterwards they do even if the client gave up."""
        with self._lock:
            self._delays.append(_Fault(method.upper(), path, times, seconds=seconds))

    def clear_faults(self) -> None:
        """Forget the faults not used up yet."""
        with self._lock:
            self._failures.clear()
            self._stalls.clear()
            self._delays.clear()

    # ------------------------------------------------------------------ what the test reads
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, oldest first, failed ones included."""
        with self._lock:
            return list(self._requests)

    def account(self, api_key: str) -> Account:
        with self._lock:
            return self._accounts[api_key]

    def orders(self, api_key: str) -> list[Order]:
        """Copies of the account's orders, oldest first."""
        with self._lock:
            return [replace(o) for o in self._accounts[api_key].orders.values()]

    def positions(self, api_key: str) -> list[Position]:
        """Copies of the account's non-empty positions."""
        with self._lock:
            return [replace(p) for p in self._accounts[api_key].positions.values() if p.size]

    def balance(self, api_key: str) -> WalletBalance:
        with self._lock:
            return self._wallet(self._accounts[api_key])

    def executions(self, api_key: str) -> list[Execution]:
        with self._lock:
            return list(self._accounts[api_key].executions)

    def closed_pnl(self, api_key: str) -> list[ClosedPnl]:
        with self._lock:
            return list(self._accounts[api_key].closed_pnl)

    # ------------------------------------------------------------------ transport
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Reply:
        parts = urlsplit(target)
        path, raw_query = parts.path, parts.query
        body_text = body.decode("utf-8", errors="replace")
        params, bad_body = self._params(method, raw_query, body_text)
        with self._lock:
            self._requests.append(RecordedRequest(method, path, dict(params), time.monotonic()))
            delay = _take(self._delays, method, path)
            failure = _take(self._failures, method, path)
            stall = _take(self._stalls, method, path)
        if delay is not None:
            self._released.wait(delay.seconds)
        if failure is not None:
            return self._failure_reply(failure)
        if bad_body:
            reply = self._envelope(10001, "Request parameter error.", {})
        else:
            reply = self._dispatch(method, path, raw_query, headers, body_text, params)
        if stall is not None:
            self._released.wait(stall.seconds)
        return reply

    @staticmethod
    def _params(method: str, raw_query: str, body_text: str) -> tuple[dict[str, Any], bool]:
        if method != "POST":
            return dict(parse_qsl(raw_query, keep_blank_values=True)), False
        if not body_text.strip():
            return {}, False
        try:
            parsed = json.loads(body_text, parse_float=Decimal)
        except ValueError:
            return {}, True
        return (parsed, False) if isinstance(parsed, dict) else ({}, True)

    def _dispatch(
        self,
        method: str,
        path: str,
        raw_query: str,
        headers: dict[str, str],
        body_text: str,
        params: dict[str, Any],
    ) -> _Reply:
        route = self._routes.get((method, path))
        if route is None:
            return _Reply(404, b"404 page not found", "text/plain; charset=utf-8")
        extra: dict[str, str] = {}
        try:
            with self._lock:
                account = None
                if route.private:
                    payload = body_text if method == "POST" else raw_query
                    account = self._authenticate(headers, payload)
                    extra = self._limit_headers(remaining=9)
                    if route.writes and (account.read_only or not account.can_trade):
                        raise BybitApiError.of(PERMISSION_DENIED)
                result = route.handler(account, params)
        except BybitApiError as error:
            return self._envelope(error.code, error.message, {}, extra)
        except Exception as error:  # a bug here must reach the test, not hang the client
            return self._envelope(10016, f"Internal server error: {error!r}", {}, extra)
        return self._envelope(0, "OK", result, extra)

    def _envelope(
        self, code: int, message: str, result: dict[str, Any], headers: dict[str, str] | None = None
    ) -> _Reply:
        body = {"retCode": code, "retMsg": message, "result": result, "retExtInfo": {}}
        body["time"] = self.now_ms()
        return _Reply(200, _json(body), headers=headers or {})

    def _limit_headers(self, *, remaining: int, reset_in_ms: int = 1000) -> dict[str, str]:
        return {
            "X-Bapi-Limit": "10",
            "X-Bapi-Limit-Status": str(remaining),
            "X-Bapi-Limit-Reset-Timestamp": str(self.now_ms() + reset_in_ms),
        }

    def _failure_reply(self, failure: _Fault) -> _Reply:
        headers: dict[str, str] = {}
        if failure.status == 200:
            reset_ms = (failure.retry_after or 1) * 1000
            headers = self._limit_headers(remaining=0, reset_in_ms=reset_ms)
            if failure.body is None:
                return self._envelope(*TOO_MANY_VISITS, {}, headers)
        elif failure.retry_after is not None:
            headers["Retry-After"] = str(failure.retry_after)
        if isinstance(failure.body, dict):
            return _Reply(failure.status, _json(failure.body), headers=headers)
        if isinstance(failure.body, str):
            return _Reply(failure.status, failure.body.encode(), "text/plain", headers)
        if failure.status == 403:
            # The gateway's IP limit answers a bare page, not a JSON retCode.
            return _Reply(403, b"access too frequent", "text/plain", headers)
        page = f"<html><body><h1>{failure.status} Gateway Error</h1></body></html>"
        return _Reply(failure.status, page.encode(), "text/html", headers)

    def _authenticate(self, headers: dict[str, str], payload: str) -> Account:
        key = headers.get("x-bapi-api-key", "")
        stamp = headers.get("x-bapi-timestamp", "")
        sign = headers.get("x-bapi-sign", "")
        recv_window = headers.get("x-bapi-recv-window", "5000")
        if not key or not stamp or not sign:
            raise BybitApiError(
                10001,
                f"empty value: apiTimestamp[{stamp}] apiKey[{key}] apiSignature[{sign}]:"
                " openapi sign params error!",
            )
        account = self._accounts.get(key)
        if account is None:
            raise BybitApiError.of(INVALID_KEY)
        now = self.now_ms()
        try:
            stamp_ms, window_ms = int(stamp), int(recv_window)
        except ValueError:
            stamp_ms, window_ms = 0, 5000
        # Bybit's rule: server_time - recv_window <= timestamp < server_time + 1000.
        if not now - window_ms <= stamp_ms < now + 1000:
            raise BybitApiError(
                10002,
                "invalid request, please check your server timestamp or recv_window param."
                f" req_timestamp[{stamp}],server_timestamp[{now}],recv_window[{recv_window}]",
            )
        origin = stamp + key + recv_window + payload
        expected = hmac.new(account.secret.encode(), origin.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sign):
            raise BybitApiError(10004, f"error sign! origin_string[{origin}]")
        return account

    # ------------------------------------------------------------------ public endpoints
    def _market_time(self, _: Account | None, __: dict[str, Any]) -> dict[str, Any]:
        now = self.now_ms()
        return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}

    def _instruments(self, _: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        category = _category(params, allow_any=True)
        listed: list[dict[str, Any]] = []
        if category == "linear" and params.get("status", "Trading") == "Trading":
            symbol = params.get("symbol")
            listed = [
                _instrument(m) for m in self._markets.values() if symbol in (None, "", m.symbol)
            ]
        return {"category": category, "list": listed, "nextPageCursor": ""}

    def _tickers(self, _: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        category = _category(params, allow_any=True)
        symbol = params.get("symbol")
        if category != "linear":
            return {"category": category, "list": []}
        if symbol and symbol not in self._markets:
            raise BybitApiError(10001, "Not supported symbols")
        names = [symbol] if symbol else list(self._markets)
        return {"category": category, "list": [self._ticker(name) for name in names]}

    def _ticker(self, symbol: str) -> dict[str, Any]:
        price = _fmt(self._prices[symbol])
        return {
            "symbol": symbol,
            "lastPrice": price,
            "indexPrice": price,
            "markPrice": price,
            "prevPrice24h": price,
            "price24hPcnt": "0",
            "highPrice24h": price,
            "lowPrice24h": price,
            "prevPrice1h": price,
            "openInterest": "1000",
            "openInterestValue": _fmt(self._prices[symbol] * 1000),
            "turnover24h": _fmt(self._prices[symbol] * 1000),
            "volume24h": "1000",
            "fundingRate": "0.0001",
            "nextFundingTime": str((self.now_ms() // 28_800_000 + 1) * 28_800_000),
            "predictedDeliveryPrice": "",
            "basisRate": "",
            "deliveryFeeRate": "",
            "deliveryTime": "0",
            "ask1Size": "10",
            "bid1Price": price,
            "ask1Price": price,
            "bid1Size": "10",
            "basis": "",
            "preOpenPrice": "",
            "preQty": "",
            "curPreListingPhase": "",
        }

    # ------------------------------------------------------------------ account endpoints
    def _query_api(self, account: Account | None, _: dict[str, Any]) -> dict[str, Any]:
        assert account is not None
        trade = ["Order", "Position"] if account.can_trade else []
        wallet = ["AccountTransfer", "SubMemberTransfer"]
        if account.can_withdraw:
            wallet.append("Withdraw")
        created = _iso(account.created_ms)
        return {
            "id": str(account.user_id * 10),
            "note": "jadetrade",
            "apiKey": account.api_key,
            "readOnly": 1 if account.read_only else 0,
            "secret": "",
            "permissions": {
                "ContractTrade": trade,
                "Spot": ["SpotTrade"] if account.can_trade else [],
                "Wallet": wallet,
                "Options": ["OptionsTrade"] if account.can_trade else [],
                "Derivatives": [],
                "CopyTrading": [],
                "BlockTrade": [],
                "Exchange": [],
                "NFT": [],
                "Affiliate": [],
                "Earn": [],
            },
            "ips": ["*"],
            "type": 1,
            "deadlineDay": 90,
            "expiredAt": _iso(account.created_ms + 90 * 86_400_000),
            "createdAt": created,
            "unified": 0,
            "uta": 1,
            "userID": account.user_id,
            "inviterID": 0,
            "vipLevel": "No VIP",
            "mktMakerLevel": "0",
            "affiliateID": 0,
            "rsaPublicKey": "",
            "isMaster": True,
            "parentUid": "0",
            "kycLevel": "LEVEL_DEFAULT",
            "kycRegion": "",
        }

    def _account_info(self, account: Account | None, _: dict[str, Any]) -> dict[str, Any]:
        assert account is not None
        return {
            "marginMode": "REGULAR_MARGIN",
            "updatedTime": str(account.created_ms),
            "unifiedMarginStatus": 6,  # unified trading account 2.0 pro
            "dcpStatus": "OFF",
            "timeWindow": 10,
            "smpGroup": 0,
            "isMasterTrader": False,
            "spotHedgingStatus": "OFF",
        }

    def _coin_info(self, _: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        coins = sorted({SETTLE_COIN} | {m.base for m in self._markets.values()})
        wanted = params.get("coin")
        rows = [_coin_row(coin) for coin in coins if wanted in (None, "", coin)]
        return {"rows": rows}

    def _wallet_balance(self, account: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        assert account is not None
        if params.get("accountType") != "UNIFIED":
            raise BybitApiError(10001, "accountType only support UNIFIED.")
        wallet = self._wallet(account)
        coins = []
        if params.get("coin") in (None, "", SETTLE_COIN):
            coins.append(_coin_balance(wallet))
        im_rate = _ratio(wallet.position_im + wallet.order_im, wallet.equity)
        mm_rate = _ratio(wallet.position_mm, wallet.equity)
        return {
            "list": [
                {
                    "accountType": "UNIFIED",
                    "accountIMRate": im_rate,
                    "accountMMRate": mm_rate,
                    "accountIMRateByMp": im_rate,
                    "accountMMRateByMp": mm_rate,
                    "accountLTV": "0",
                    "totalEquity": _fmt(wallet.equity),
                    "totalWalletBalance": _fmt(wallet.wallet_balance),
                    "totalMarginBalance": _fmt(wallet.equity),
                    "totalAvailableBalance": _fmt(wallet.available_balance),
                    "totalPerpUPL": _fmt(wallet.unrealised_pnl),
                    "totalInitialMargin": _fmt(wallet.position_im + wallet.order_im),
                    "totalInitialMarginByMp": _fmt(wallet.position_im + wallet.order_im),
                    "totalMaintenanceMargin": _fmt(wallet.position_mm),
                    "totalMaintenanceMarginByMp": _fmt(wallet.position_mm),
                    "coin": coins,
                }
            ]
        }

    def _wallet(self, account: Account) -> WalletBalance:
        upnl = position_im = position_mm = order_im = _ZERO
        for pos in account.positions.values():
            if pos.size:
                mark = self._prices[pos.symbol]
                upnl += _upnl(pos, mark)
                position_im += _position_im(pos)
                position_mm += (pos.size * mark * MAINTENANCE_MARGIN_RATE).quantize(_EIGHT_PLACES)
        for order in account.orders.values():
            order_im += self._order_im(account, order)
        equity = account.wallet_balance + upnl
        locked = position_im + order_im
        return WalletBalance(
            wallet_balance=account.wallet_balance,
            unrealised_pnl=upnl,
            equity=equity,
            position_im=position_im,
            order_im=order_im,
            position_mm=position_mm,
            available_balance=max(equity - locked, _ZERO),
            available_to_withdraw=max(account.wallet_balance - locked + min(upnl, _ZERO), _ZERO),
            cum_realised_pnl=account.cum_realised_pnl,
        )

    def _order_im(self, account: Account, order: Order) -> Decimal:
        """Margin a resting limit order that opens exposure holds."""
        if order.order_type != "Limit" or order.is_conditional or not order.is_open:
            return _ZERO
        if order.reduce_only or self._is_closing(account, order.side, order.position_idx):
            return _ZERO
        leverage = self._leverage(account, order.symbol)
        return (order.leaves_qty * order.price / leverage).quantize(_EIGHT_PLACES)

    # ------------------------------------------------------------------ order endpoints
    def _order_create(self, account: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        assert account is not None
        _category(params)
        market = self._market_param(params)
        symbol = market.symbol
        side = str(params.get("side") or "")
        if side not in ("Buy", "Sell"):
            raise BybitApiError(10001, "params error: side invalid")
        order_type = str(params.get("orderType") or "")
        if order_type not in ("Market", "Limit"):
            raise BybitApiError(10001, "params error: orderType invalid")
        qty = _decimal(params.get("qty"), "qty")
        if qty is None or qty <= 0:
            raise BybitApiError(10001, "params error: qty invalid")
        if qty < market.min_amount:
            raise BybitApiError.of(QTY_BELOW_MIN)
        if qty % market.amount_step:
            raise BybitApiError(10001, "params error: qty err")
        link_id = str(params.get("orderLinkId") or "")
        if link_id and any(o.order_link_id == link_id for o in account.orders.values()):
            raise BybitApiError.of(DUPLICATE_LINK_ID)
        position_idx = self._position_idx_param(account, params)
        reduce_only = _flag(params.get("reduceOnly"))
        last = self._prices[symbol]
        limit_price = _decimal(params.get("price"), "price")
        if order_type == "Limit":
            if limit_price is None or limit_price <= 0:
                raise BybitApiError(10001, "params error: price invalid")
            _check_tick(limit_price, market, "price")
        time_in_force = str(
            params.get("timeInForce") or ("IOC" if order_type == "Market" else "GTC")
        )
        if time_in_force not in ("GTC", "IOC", "FOK", "PostOnly"):
            raise BybitApiError(10001, "params error: timeInForce invalid")
        trigger_price = _decimal(params.get("triggerPrice"), "triggerPrice")
        trigger_direction = 0
        if trigger_price is not None:
            _check_tick(trigger_price, market, "triggerPrice")
            trigger_direction = _int(params.get("triggerDirection"), "triggerDirection", 0)
            _check_trigger(trigger_direction, trigger_price, last)
        reference = limit_price if order_type == "Limit" and limit_price else trigger_price or last
        take_profit = _decimal(params.get("takeProfit"), "takeProfit") or None
        stop_loss = _decimal(params.get("stopLoss"), "stopLoss") or None
        for value in (take_profit, stop_loss):
            if value is not None:
                _check_tick(value, market, "tp/sl price")
        _check_attached(side, reference, take_profit, stop_loss)
        closing = reduce_only or self._is_closing(account, side, position_idx)
        if closing:
            self._check_reduce(account, symbol, side, position_idx)
        elif qty * reference < market.min_notional:
            raise BybitApiError(
                110094, f"Order does not meet minimum order value {_fmt(market.min_notional)}USDT"
            )
        if trigger_price is None and not closing:
            self._check_margin(account, market, side, position_idx, qty, reference)
        now = self.now_ms()
        order = Order(
            seq=next(self._seq),
            order_id=str(uuid.uuid4()),
            order_link_id=link_id,
            symbol=symbol,
            side=side,
            order_type=order_type,
            qty=qty,
            price=limit_price if limit_price is not None and order_type == "Limit" else _ZERO,
            time_in_force=time_in_force,
            position_idx=position_idx,
            reduce_only=reduce_only,
            close_on_trigger=_flag(params.get("closeOnTrigger")),
            status="Untriggered" if trigger_price is not None else "New",
            created_ms=now,
            updated_ms=now,
            last_price_on_created=last,
            trigger_price=trigger_price,
            trigger_direction=trigger_direction,
            stop_order_type="Stop" if trigger_price is not None else "",
            tpsl_mode="Full" if take_profit or stop_loss else "",
            take_profit=take_profit,
            stop_loss=stop_loss,
        )
        account.orders[order.order_id] = order
        if trigger_price is None:
            self._work(account, order)
        return {"orderId": order.order_id, "orderLinkId": order.order_link_id}

    def _order_cancel(self, account: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        assert account is not None
        _category(params)
        market = self._market_param(params)
        order_id = str(params.get("orderId") or "")
        link_id = str(params.get("orderLinkId") or "")
        if not order_id and not link_id:
            raise BybitApiError(10001, "params error: OrderId or orderLinkId is required")
        order = next(
            (
                o
                for o in account.orders.values()
                if (o.order_id == order_id if order_id else o.order_link_id == link_id)
            ),
            None,
        )
        if order is None or order.symbol != market.symbol or not order.is_open:
            raise BybitApiError.of(ORDER_NOT_EXISTS)
        self._close_order(account, order, "CancelByUser")
        return {"orderId": order.order_id, "orderLinkId": order.order_link_id}

    def _order_realtime(self, account: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        assert account is not None
        _category(params)
        by_id = bool(params.get("orderId") or params.get("orderLinkId"))
        if not by_id:
            self._require_scope(params)
        newest_first = sorted(account.orders.values(), key=lambda o: o.seq, reverse=True)
        recently_closed = sorted(
            (o for o in newest_first if not o.is_open), key=lambda o: o.updated_ms, reverse=True
        )[:RECENT_CLOSED_ORDERS]
        kept = {o.order_id for o in recently_closed}
        if by_id:
            # Bybit ignores openOnly for a look-up by id: open or recently closed.
            candidates = [o for o in newest_first if o.is_open or o.order_id in kept]
        elif _int(params.get("openOnly"), "openOnly", 0) == 0:
            candidates = [o for o in newest_first if o.is_open]
        else:
            candidates = [o for o in newest_first if o.order_id in kept]
        found = self._filter_orders(candidates, params)
        limit = _limit(params, default=20, maximum=50)
        return {
            "category": "linear",
            "list": [self._order_wire(o) for o in found[:limit]],
            "nextPageCursor": "",
        }

    def _order_history(self, account: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        assert account is not None
        _category(params)
        newest_first = sorted(account.orders.values(), key=lambda o: o.seq, reverse=True)
        found = self._filter_orders(newest_first, params)
        status = params.get("orderStatus")
        if status:
            found = [o for o in found if o.status == status]
        start, end = params.get("startTime"), params.get("endTime")
        if start:
            found = [o for o in found if o.created_ms >= _int(start, "startTime", 0)]
        if end:
            found = [o for o in found if o.created_ms <= _int(end, "endTime", 0)]
        limit = _limit(params, default=20, maximum=50)
        return {
            "category": "linear",
            "list": [self._order_wire(o) for o in found[:limit]],
            "nextPageCursor": "",
        }

    def _filter_orders(self, orders: list[Order], params: dict[str, Any]) -> list[Order]:
        order_id, link_id = params.get("orderId"), params.get("orderLinkId")
        # Bybit's priority when several are given: orderId > orderLinkId > symbol > baseCoin.
        if order_id:
            orders = [o for o in orders if o.order_id == order_id]
        elif link_id:
            orders = [o for o in orders if o.order_link_id == link_id]
        symbol, base = params.get("symbol"), params.get("baseCoin")
        if symbol:
            orders = [o for o in orders if o.symbol == symbol]
        if base:
            orders = [o for o in orders if self._markets[o.symbol].base == base]
        kind = params.get("orderFilter")
        if kind == "Order":
            orders = [o for o in orders if not o.is_conditional]
        elif kind == "StopOrder":
            orders = [o for o in orders if o.is_conditional]
        elif kind:
            orders = []  # tpslOrder, OcoOrder, BidirectionalTpslOrder: spot only
        return orders

    def _execution_list(self, account: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        assert account is not None
        _category(params)
        found = sorted(account.executions, key=lambda e: e.seq, reverse=True)
        for name, attribute in (
            ("symbol", "symbol"),
            ("orderId", "order_id"),
            ("orderLinkId", "order_link_id"),
        ):
            wanted = params.get(name)
            if wanted:
                found = [e for e in found if getattr(e, attribute) == wanted]
        if params.get("execType") not in (None, "", "Trade"):
            found = []  # only trades happen here: no funding, no settlement, no liquidation
        start, end = params.get("startTime"), params.get("endTime")
        if start:
            found = [e for e in found if e.exec_time_ms >= _int(start, "startTime", 0)]
        if end:
            found = [e for e in found if e.exec_time_ms <= _int(end, "endTime", 0)]
        limit = _limit(params, default=50, maximum=100)
        return {
            "category": "linear",
            "list": [_execution_wire(e) for e in found[:limit]],
            "nextPageCursor": "",
        }

    # ------------------------------------------------------------------ position endpoints
    def _position_list(self, account: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        assert account is not None
        _category(params)
        symbol = params.get("symbol")
        if symbol:
            market = self._market_param(params)
            indexes = (1, 2) if account.hedge_mode else (0,)
            found = [self._position(account, market.symbol, idx) for idx in indexes]
        else:
            self._require_scope(params)
            base = params.get("baseCoin")
            # Without a symbol Bybit lists only the positions that are open.
            found = [
                p
                for p in sorted(account.positions.values(), key=lambda p: p.seq)
                if p.size and base in (None, "", self._markets[p.symbol].base)
            ]
        limit = _limit(params, default=20, maximum=200)
        return {
            "category": "linear",
            "list": [self._position_wire(p) for p in found[:limit]],
            "nextPageCursor": "",
        }

    def _closed_pnl(self, account: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        assert account is not None
        _category(params)
        found = sorted(account.closed_pnl, key=lambda c: c.seq, reverse=True)
        symbol = params.get("symbol")
        if symbol:
            found = [c for c in found if c.symbol == symbol]
        start, end = params.get("startTime"), params.get("endTime")
        if start:
            found = [c for c in found if c.created_ms >= _int(start, "startTime", 0)]
        if end:
            found = [c for c in found if c.created_ms <= _int(end, "endTime", 0)]
        limit = _limit(params, default=50, maximum=100)
        return {
            "category": "linear",
            "list": [_closed_pnl_wire(c) for c in found[:limit]],
            "nextPageCursor": "",
        }

    def _set_leverage(self, account: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        assert account is not None
        _category(params)
        market = self._market_param(params)
        buy = _decimal(params.get("buyLeverage"), "buyLeverage")
        sell = _decimal(params.get("sellLeverage"), "sellLeverage")
        if buy is None or sell is None:
            raise BybitApiError(10001, "params error: buyLeverage or sellLeverage invalid")
        if buy != sell:
            raise BybitApiError(10001, "params error: buy leverage must be equal to sell leverage")
        if buy < 1 or buy % Decimal("0.01"):
            raise BybitApiError(10001, "params error: leverage invalid")
        if buy > market.max_leverage:
            raise BybitApiError(
                110013,
                f"cannot set leverage [{_fmt(buy)}] gt maxLeverage [{market.max_leverage}]"
                " by risk limit",
            )
        if buy == self._leverage(account, market.symbol):
            raise BybitApiError.of(LEVERAGE_NOT_MODIFIED)
        account.leverage[market.symbol] = buy
        for (symbol, _), pos in account.positions.items():
            if symbol == market.symbol:
                pos.leverage = buy
                pos.updated_ms = self.now_ms()
        return {}

    def _switch_mode(self, account: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        assert account is not None
        _category(params)
        if not params.get("symbol") and params.get("coin") != SETTLE_COIN:
            raise BybitApiError(10001, "params error: symbol or coin is required")
        if params.get("symbol"):
            self._market_param(params)
        mode = _int(params.get("mode"), "mode", -1)
        if mode not in (0, 3):
            raise BybitApiError(10001, "params error: mode invalid")
        hedge = mode == 3
        if hedge == account.hedge_mode:
            raise BybitApiError.of(MODE_NOT_MODIFIED)
        # The mode here is the account's, whether the request names a symbol or the coin.
        if any(p.size for p in account.positions.values()):
            raise BybitApiError.of(POSITION_EXISTS)
        if any(o.is_open for o in account.orders.values()):
            raise BybitApiError.of(OPEN_ORDERS_EXIST)
        account.hedge_mode = hedge
        account.positions.clear()  # all flat: the other mode's rows start afresh
        return {}

    def _trading_stop(self, account: Account | None, params: dict[str, Any]) -> dict[str, Any]:
        assert account is not None
        _category(params)
        market = self._market_param(params)
        idx = _int(params.get("positionIdx"), "positionIdx", 0)
        if (idx != 0) != account.hedge_mode or idx not in (0, 1, 2):
            raise BybitApiError.of(IDX_MODE_MISMATCH)
        pos = self._position(account, market.symbol, idx)
        if not pos.size:
            raise BybitApiError(10001, "can not set tp/sl/ts for zero position")
        mode = str(params.get("tpslMode") or "Full")
        if mode not in ("Full", "Partial"):
            raise BybitApiError(10001, "params error: tpslMode invalid")
        if (
            params.get("tpOrderType", "Market") != "Market"
            or params.get("slOrderType", "Market") != "Market"
        ):
            raise BybitApiError(10001, "params error: only Market tp/sl orders are supported")
        last = self._prices[market.symbol]
        legs: list[tuple[str, Decimal, Decimal | None]] = []
        for kind, price_key, size_key in (
            ("TakeProfit", "takeProfit", "tpSize"),
            ("StopLoss", "stopLoss", "slSize"),
        ):
            price = _decimal(params.get(price_key), price_key)
            if price is None:
                continue
            if price:
                _check_tick(price, market, price_key)
                _check_attached(
                    pos.side,
                    last,
                    price if kind == "TakeProfit" else None,
                    price if kind == "StopLoss" else None,
                )
            size = _decimal(params.get(size_key), size_key) if mode == "Partial" else None
            if (
                mode == "Partial"
                and price
                and (size is None or size <= 0 or size % market.amount_step)
            ):
                raise BybitApiError(10001, f"params error: {size_key} invalid")
            legs.append((kind, price, size))
        for kind, price, size in legs:
            if mode == "Full":
                self._set_full_tpsl(account, pos, kind, price or None)
            elif price:
                assert size is not None
                self._add_tpsl_order(account, pos, "Partial" + kind, price, min(size, pos.size))
        return {}

    # ------------------------------------------------------------------ order mechanics
    def _work(self, account: Account, order: Order) -> None:
        """Execute a new or just-triggered order as far as the current price allows."""
        last = self._prices[order.symbol]
        if self._reducing(account, order):
            reducible = self._reducible(account, order)
            if reducible == 0:
                self._close_order(account, order, "CancelByReduceOnly")
                return
            # Bybit fixes a reduce-only quantity to the position it reduces.
            order.qty = min(order.qty, order.cum_exec_qty + reducible)
        qty = order.qty - order.cum_exec_qty
        if order.order_type == "Market":
            order.price = self._protection_price(order.symbol, order.side, last)
            self._fill(
                account,
                order,
                qty,
                self._market_fill_price(order.symbol, order.side, last),
                maker=False,
            )
            return
        crosses = order.price >= last if order.side == "Buy" else order.price <= last
        if crosses:
            if order.time_in_force == "PostOnly":
                order.status, order.reject_reason = "Cancelled", "EC_PostOnlyWillTakeLiquidity"
                order.cancel_type = "CancelByUser"
                order.updated_ms = self.now_ms()
                return
            self._fill(account, order, qty, last, maker=False)  # a taker gets the better price
            return
        if order.time_in_force in ("IOC", "FOK"):
            order.status, order.reject_reason = "Cancelled", "EC_NoImmediateQtyToFill"
            order.updated_ms = self.now_ms()
            return
        order.status = "New"

    def _trigger_conditionals(self, symbol: str) -> None:
        last = self._prices[symbol]
        due = sorted(
            (
                (order, account)
                for account in self._accounts.values()
                for order in account.orders.values()
                if order.symbol == symbol
                and order.status == "Untriggered"
                and _crossed(order, last)
            ),
            key=lambda pair: pair[0].seq,
        )
        for order, account in due:
            if order.status != "Untriggered":
                continue  # deactivated by an earlier fill in this loop
            order.status = "Triggered"
            order.updated_ms = self.now_ms()
            if not self._reducing(account, order):
                market = self._markets[symbol]
                try:
                    self._check_margin(
                        account, market, order.side, order.position_idx, order.qty, last
                    )
                except BybitApiError:
                    order.status, order.reject_reason = "Rejected", "EC_InsufficientMargin"
                    continue
            if order.tpsl_mode == "Full":
                order.qty = self._reducible(account, order)  # a full TP/SL closes everything
            self._work(account, order)

    def _fill_crossed_limits(self, symbol: str) -> None:
        last = self._prices[symbol]
        due = sorted(
            (
                (order, account)
                for account in self._accounts.values()
                for order in account.orders.values()
                if order.symbol == symbol
                and order.order_type == "Limit"
                and order.status in ("New", "PartiallyFilled")
                and (order.price >= last if order.side == "Buy" else order.price <= last)
            ),
            key=lambda pair: pair[0].seq,
        )
        for order, account in due:
            if order.status not in ("New", "PartiallyFilled"):
                continue
            if self._reducing(account, order):
                reducible = self._reducible(account, order)
                if reducible == 0:
                    self._close_order(account, order, "CancelByReduceOnly")
                    continue
                order.qty = min(order.qty, order.cum_exec_qty + reducible)
            self._fill(account, order, order.qty - order.cum_exec_qty, order.price, maker=True)

    def _fill(
        self, account: Account, order: Order, qty: Decimal, price: Decimal, *, maker: bool
    ) -> None:
        """One execution: the fee leaves the wallet, a reduced position's price PnL enters it."""
        now = self.now_ms()
        rate = self.maker_fee_rate if maker else self.taker_fee_rate
        fee = (qty * price * rate).quantize(_EIGHT_PLACES, ROUND_HALF_UP)
        pos = self._position(account, order.symbol, self._idx_of(account, order))
        sign = _sign(pos.side)
        close_qty = min(qty, pos.size) if sign == -_sign(order.side) else _ZERO
        open_qty = qty - close_qty
        close_fee = (fee * close_qty / qty).quantize(_EIGHT_PLACES, ROUND_HALF_UP)
        price_pnl = _ZERO
        account.wallet_balance -= fee
        if close_qty:
            entry = pos.avg_price
            price_pnl = (price - entry) * close_qty * sign
            open_fee = (pos.open_fee * close_qty / pos.size).quantize(_EIGHT_PLACES, ROUND_HALF_UP)
            pos.open_fee -= open_fee
            pos.size -= close_qty
            account.wallet_balance += price_pnl
            account.closed_pnl.append(
                ClosedPnl(
                    seq=next(self._seq),
                    symbol=order.symbol,
                    order_id=order.order_id,
                    side=order.side,
                    order_type=order.order_type,
                    order_price=order.price,
                    qty=order.qty,
                    leverage=pos.leverage,
                    closed_size=close_qty,
                    avg_entry_price=entry,
                    avg_exit_price=price,
                    open_fee=open_fee,
                    close_fee=close_fee,
                    closed_pnl=price_pnl - open_fee - close_fee,
                    created_ms=now,
                )
            )
            if pos.size == 0:
                pos.side, pos.avg_price, pos.open_fee = "", _ZERO, _ZERO
        if open_qty:
            if pos.size == 0:
                pos.side, pos.avg_price, pos.created_ms = order.side, price, now
                pos.cur_realised_pnl = _ZERO
            else:
                total = pos.avg_price * pos.size + price * open_qty
                pos.avg_price = (total / (pos.size + open_qty)).quantize(_EIGHT_PLACES)
            pos.size += open_qty
            pos.open_fee += fee - close_fee
        realised = price_pnl - fee
        pos.cur_realised_pnl = _ZERO if pos.size == 0 else pos.cur_realised_pnl + realised
        pos.cum_realised_pnl += realised
        pos.updated_ms = now
        account.cum_realised_pnl += realised
        order.cum_exec_qty += qty
        order.cum_exec_value += qty * price
        order.cum_exec_fee += fee
        order.status = "Filled" if order.cum_exec_qty >= order.qty else "PartiallyFilled"
        order.updated_ms = now
        account.executions.append(
            Execution(
                exec_id=str(uuid.uuid4()),
                seq=next(self._seq),
                symbol=order.symbol,
                order_id=order.order_id,
                order_link_id=order.order_link_id,
                side=order.side,
                order_type=order.order_type,
                stop_order_type=order.stop_order_type,
                create_type=order.create_type,
                order_price=order.price,
                order_qty=order.qty,
                leaves_qty=order.leaves_qty,
                exec_price=price,
                exec_qty=qty,
                exec_fee=fee,
                fee_rate=rate,
                is_maker=maker,
                closed_size=close_qty,
                mark_price=self._prices[order.symbol],
                exec_time_ms=now,
            )
        )
        if open_qty and (order.take_profit or order.stop_loss):
            # Attached TP/SL become the position's (full) take profit and stop loss.
            if order.take_profit:
                self._set_full_tpsl(account, pos, "TakeProfit", order.take_profit)
            if order.stop_loss:
                self._set_full_tpsl(account, pos, "StopLoss", order.stop_loss)
        self._after_position_change(account, pos)

    def _after_position_change(self, account: Account, pos: Position) -> None:
        """Reduce-only orders that can no longer reduce (position gone or flipped) are
        deactivated, as Bybit does; full TP/SL follow the position's size."""
        for order in list(account.orders.values()):
            if not order.is_open or order.symbol != pos.symbol:
                continue
            if self._idx_of(account, order) != pos.position_idx or not self._reducing(
                account, order
            ):
                continue
            if pos.size == 0 or pos.side == order.side:
                self._close_order(account, order, "CancelByReduceOnly")
            elif order.tpsl_mode == "Full" and order.stop_order_type in _FULL_TPSL_TYPES:
                order.qty = pos.size
        if pos.size == 0:
            pos.take_profit = pos.stop_loss = None

    def _close_order(self, account: Account, order: Order, cancel_type: str) -> None:
        """Cancel an open order: a conditional one not yet triggered is Deactivated."""
        full_tpsl = order.stop_order_type in _FULL_TPSL_TYPES
        order.status = "Deactivated" if order.status == "Untriggered" else "Cancelled"
        order.cancel_type = (
            "CancelByTpSlTsClear" if full_tpsl and cancel_type != "CancelByUser" else cancel_type
        )
        order.updated_ms = self.now_ms()
        if full_tpsl:
            pos = self._position(account, order.symbol, self._idx_of(account, order))
            if order.stop_order_type == "TakeProfit" and pos.take_profit == order.trigger_price:
                pos.take_profit = None
            if order.stop_order_type == "StopLoss" and pos.stop_loss == order.trigger_price:
                pos.stop_loss = None

    def _set_full_tpsl(
        self, account: Account, pos: Position, kind: str, price: Decimal | None
    ) -> None:
        """Replace the position's full take profit or stop loss (None removes it)."""
        for order in list(account.orders.values()):
            if (
                order.is_open
                and order.symbol == pos.symbol
                and self._idx_of(account, order) == pos.position_idx
                and order.stop_order_type == kind
            ):
                self._close_order(account, order, "CancelByUser")
        if kind == "TakeProfit":
            pos.take_profit = price
        else:
            pos.stop_loss = price
        if price is not None:
            self._add_tpsl_order(account, pos, kind, price, pos.size)

    def _add_tpsl_order(
        self, account: Account, pos: Position, kind: str, price: Decimal, qty: Decimal
    ) -> None:
        long = pos.side == "Buy"
        take_profit = kind.endswith("TakeProfit")
        # A long's take profit triggers on a rise and its stop on a fall; a short's the reverse.
        direction = 1 if take_profit == long else 2
        now = self.now_ms()
        order = Order(
            seq=next(self._seq),
            order_id=str(uuid.uuid4()),
            order_link_id="",
            symbol=pos.symbol,
            side="Sell" if long else "Buy",
            order_type="Market",
            qty=qty,
            price=_ZERO,
            time_in_force="IOC",
            position_idx=pos.position_idx,
            reduce_only=True,
            close_on_trigger=True,
            status="Untriggered",
            created_ms=now,
            updated_ms=now,
            last_price_on_created=self._prices[pos.symbol],
            trigger_price=price,
            trigger_direction=direction,
            stop_order_type=kind,
            tpsl_mode="Partial" if kind.startswith("Partial") else "Full",
            create_type="CreateBy" + kind,
        )
        account.orders[order.order_id] = order

    # ------------------------------------------------------------------ checks
    def _check_margin(
        self,
        account: Account,
        market: MarketInfo,
        side: str,
        position_idx: int,
        qty: Decimal,
        price: Decimal,
    ) -> None:
        """The part of an order that opens exposure needs its initial margin plus the fee."""
        idx = position_idx if account.hedge_mode else 0
        pos = self._position(account, market.symbol, idx)
        reducible = pos.size if _sign(pos.side) == -_sign(side) else _ZERO
        opening = max(qty - reducible, _ZERO)
        if not opening:
            return
        leverage = self._leverage(account, market.symbol)
        needed = opening * price / leverage + opening * price * self.taker_fee_rate
        if needed > self._wallet(account).available_balance:
            raise BybitApiError.of(NOT_ENOUGH_BALANCE)

    def _check_reduce(self, account: Account, symbol: str, side: str, position_idx: int) -> None:
        pos = self._position(account, symbol, position_idx if account.hedge_mode else 0)
        if pos.size == 0:
            raise BybitApiError.of(REDUCE_ONLY_ZERO)
        if pos.side == side:
            raise BybitApiError.of(REDUCE_ONLY_RULE)

    def _position_idx_param(self, account: Account, params: dict[str, Any]) -> int:
        idx = _int(params.get("positionIdx"), "positionIdx", 0)
        if idx not in (0, 1, 2) or (idx != 0) != account.hedge_mode:
            raise BybitApiError.of(IDX_MODE_MISMATCH)
        return idx

    def _require_scope(self, params: dict[str, Any]) -> None:
        if not (params.get("symbol") or params.get("settleCoin") or params.get("baseCoin")):
            raise BybitApiError(
                10001,
                "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin",
            )
        settle = params.get("settleCoin")
        if settle and settle != SETTLE_COIN:
            raise BybitApiError(10001, "params error: settleCoin invalid")

    # ------------------------------------------------------------------ helpers over state
    def _market(self, symbol: str) -> MarketInfo:
        market = self._markets.get(symbol)
        if market is None:
            raise KeyError(f"no market {symbol!r} is listed")
        return market

    def _market_param(self, params: dict[str, Any]) -> MarketInfo:
        market = self._markets.get(str(params.get("symbol") or ""))
        if market is None:
            raise BybitApiError(10001, "params error: symbol invalid")
        return market

    def _leverage(self, account: Account, symbol: str) -> Decimal:
        market = self._markets[symbol]
        return account.leverage.get(symbol, min(DEFAULT_LEVERAGE, Decimal(market.max_leverage)))

    def _position(self, account: Account, symbol: str, idx: int) -> Position:
        pos = account.positions.get((symbol, idx))
        if pos is None:
            pos = Position(
                symbol=symbol,
                position_idx=idx,
                leverage=self._leverage(account, symbol),
                seq=next(self._seq),
            )
            account.positions[(symbol, idx)] = pos
        return pos

    def _idx_of(self, account: Account, order: Order) -> int:
        return order.position_idx if account.hedge_mode else 0

    def _is_closing(self, account: Account, side: str, position_idx: int) -> bool:
        """In hedge mode a sell on the long side (1) or a buy on the short side (2) closes."""
        if not account.hedge_mode:
            return False
        return (position_idx == 1 and side == "Sell") or (position_idx == 2 and side == "Buy")

    def _reducing(self, account: Account, order: Order) -> bool:
        return order.reduce_only or self._is_closing(account, order.side, order.position_idx)

    def _reducible(self, account: Account, order: Order) -> Decimal:
        pos = self._position(account, order.symbol, self._idx_of(account, order))
        return pos.size if _sign(pos.side) == -_sign(order.side) else _ZERO

    def _protection_price(self, symbol: str, side: str, last: Decimal) -> Decimal:
        step = self._markets[symbol].price_step
        if side == "Buy":
            return _to_step(last * (1 + MARKET_PRICE_BAND), step, ROUND_CEILING)
        return _to_step(last * (1 - MARKET_PRICE_BAND), step, ROUND_FLOOR)

    def _market_fill_price(self, symbol: str, side: str, last: Decimal) -> Decimal:
        step = self._markets[symbol].price_step
        if side == "Buy":
            return _to_step(last * (1 + self.slippage), step, ROUND_CEILING)
        return _to_step(last * (1 - self.slippage), step, ROUND_FLOOR)

    # ------------------------------------------------------------------ wire shapes
    def _order_wire(self, order: Order) -> dict[str, Any]:
        avg = order.avg_price
        fee_detail = {SETTLE_COIN: _fmt(order.cum_exec_fee)} if order.cum_exec_fee else {}
        return {
            "orderId": order.order_id,
            "orderLinkId": order.order_link_id,
            "blockTradeId": "",
            "symbol": order.symbol,
            "price": _fmt(order.price),
            "qty": _fmt(order.qty),
            "side": order.side,
            "isLeverage": "",
            "positionIdx": order.position_idx,
            "orderStatus": order.status,
            "createType": order.create_type,
            "cancelType": order.cancel_type,
            "rejectReason": order.reject_reason,
            "avgPrice": _fmt(avg) if avg is not None else ("0" if order.is_open else ""),
            "leavesQty": _fmt(order.leaves_qty),
            "leavesValue": _fmt(order.leaves_qty * order.price),
            "cumExecQty": _fmt(order.cum_exec_qty),
            "cumExecValue": _fmt(order.cum_exec_value),
            "cumExecFee": _fmt(order.cum_exec_fee),
            "cumFeeDetail": fee_detail,
            "timeInForce": order.time_in_force,
            "orderType": order.order_type,
            "stopOrderType": order.stop_order_type,
            "orderIv": "",
            "marketUnit": "",
            "triggerPrice": _fmt(order.trigger_price) if order.trigger_price is not None else "",
            "takeProfit": _fmt(order.take_profit) if order.take_profit else "",
            "stopLoss": _fmt(order.stop_loss) if order.stop_loss else "",
            "tpslMode": order.tpsl_mode,
            "ocoTriggerBy": "",
            "tpLimitPrice": "",
            "slLimitPrice": "",
            "tpTriggerBy": "LastPrice" if order.take_profit else "",
            "slTriggerBy": "LastPrice" if order.stop_loss else "",
            "triggerDirection": order.trigger_direction,
            "triggerBy": "LastPrice" if order.is_conditional else "",
            "lastPriceOnCreated": _fmt(order.last_price_on_created),
            "basePrice": _fmt(order.last_price_on_created) if order.is_conditional else "",
            "reduceOnly": order.reduce_only,
            "closeOnTrigger": order.close_on_trigger,
            "placeType": "",
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "slippageToleranceType": "UNKNOWN",
            "slippageTolerance": "0",
            "createdTime": str(order.created_ms),
            "updatedTime": str(order.updated_ms),
            "extraFees": "",
        }

    def _position_wire(self, pos: Position) -> dict[str, Any]:
        mark = self._prices[pos.symbol]
        open_ = pos.size > 0
        value = pos.size * pos.avg_price
        liq = bust = ""
        if open_:
            step = self._markets[pos.symbol].price_step
            inverse_lev = 1 / pos.leverage
            # An isolated-style estimate: entry ± 1/leverage, less the maintenance margin.
            if pos.side == "Buy":
                liq = _fmt(
                    _to_step(
                        pos.avg_price * (1 - inverse_lev + MAINTENANCE_MARGIN_RATE),
                        step,
                        ROUND_CEILING,
                    )
                )
                bust = _fmt(_to_step(pos.avg_price * (1 - inverse_lev), step, ROUND_CEILING))
            else:
                liq = _fmt(
                    _to_step(
                        pos.avg_price * (1 + inverse_lev - MAINTENANCE_MARGIN_RATE),
                        step,
                        ROUND_FLOOR,
                    )
                )
                bust = _fmt(_to_step(pos.avg_price * (1 + inverse_lev), step, ROUND_FLOOR))
        im = _position_im(pos)
        return {
            "positionIdx": pos.position_idx,
            "riskId": 1,
            "riskLimitValue": "2000000",
            "symbol": pos.symbol,
            "side": pos.side,
            "size": _fmt(pos.size),
            "avgPrice": _fmt(pos.avg_price),
            "positionValue": _fmt(value) if open_ else "",
            "tradeMode": 0,
            "autoAddMargin": 0,
            "positionStatus": "Normal",
            "leverage": _fmt(pos.leverage),
            "markPrice": _fmt(mark),
            "liqPrice": liq,
            "bustPrice": bust,
            "positionIM": _fmt(im),
            "positionIMByMp": _fmt(im),
            "positionMM": _fmt((pos.size * mark * MAINTENANCE_MARGIN_RATE).quantize(_EIGHT_PLACES)),
            "positionMMByMp": _fmt(
                (pos.size * mark * MAINTENANCE_MARGIN_RATE).quantize(_EIGHT_PLACES)
            ),
            "positionBalance": _fmt(im),
            "takeProfit": _fmt(pos.take_profit) if pos.take_profit else "0",
            "stopLoss": _fmt(pos.stop_loss) if pos.stop_loss else "0",
            "trailingStop": "0",
            "sessionAvgPrice": "",
            "delta": "",
            "gamma": "",
            "vega": "",
            "theta": "",
            "unrealisedPnl": _fmt(_upnl(pos, mark)),
            "curRealisedPnl": _fmt(pos.cur_realised_pnl),
            "cumRealisedPnl": _fmt(pos.cum_realised_pnl),
            "adlRankIndicator": 2 if open_ else 0,
            "createdTime": str(pos.created_ms or self.now_ms()),
            "updatedTime": str(pos.updated_ms or self.now_ms()),
            "seq": pos.seq,
            "isReduceOnly": False,
            "mmrSysUpdatedTime": "",
            "leverageSysUpdatedTime": "",
            "tpslMode": "Full",
            "breakEvenPrice": "",
        }


# --------------------------------------------------------------------------- pure helpers


def make_client(server: BybitV5Server, api_key: str, secret: str, **options: Any) -> Any:
    """ccxt's async `bybit` configured as the engine's adapter configures it, pointed at
    `server`. `options` go into ccxt's `options` (`timeout`, `enableRateLimit` and `verbose`
    into the client's top-level config instead). The caller closes it."""
    top_level: dict[str, Any] = {
        key: options.pop(key) for key in ("timeout", "enableRateLimit", "verbose") if key in options
    }
    config: dict[str, Any] = {
        "apiKey": api_key,
        "secret": secret,
        "enableRateLimit": False,
        "timeout": 3000,
        "options": {
            "defaultType": "swap",
            "defaultSubType": "linear",
            "fetchMarkets": {"types": ["linear"]},
            "fetchCurrencies": False,
            "adjustForTimeDifference": False,
            **options,
        },
        **top_level,
    }
    client = ccxt_async.bybit(config)
    client.urls["api"] = server.api_urls
    return client


def _take(faults: list[_Fault], method: str, path: str) -> _Fault | None:
    for fault in faults:
        if fault.method == method and fault.path == path:
            fault.remaining -= 1
            if fault.remaining <= 0:
                faults.remove(fault)
            return fault
    return None


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _fmt(value: Decimal) -> str:
    """A decimal as Bybit writes it: plain notation, no trailing zeros ("0.001", "65000")."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _ratio(part: Decimal, whole: Decimal) -> str:
    return _fmt((part / whole).quantize(Decimal("0.0001"))) if whole > 0 else "0"


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    return ((value / step).to_integral_value(rounding=rounding) * step).normalize()


def _to_tick(value: Decimal, step: Decimal) -> Decimal:
    return _to_step(value, step, ROUND_HALF_UP)


def _sign(side: str) -> int:
    return 1 if side == "Buy" else -1 if side == "Sell" else 0


def _upnl(pos: Position, mark: Decimal) -> Decimal:
    return (mark - pos.avg_price) * pos.size * _sign(pos.side)


def _position_im(pos: Position) -> Decimal:
    return (pos.size * pos.avg_price / pos.leverage).quantize(_EIGHT_PLACES)


def _crossed(order: Order, last: Decimal) -> bool:
    assert order.trigger_price is not None
    if order.trigger_direction == 1:
        return last >= order.trigger_price
    return last <= order.trigger_price


def _decimal(value: Any, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BybitApiError(10001, f"params error: {name} invalid")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise BybitApiError(10001, f"params error: {name} invalid") from None
    if not number.is_finite():
        raise BybitApiError(10001, f"params error: {name} invalid")
    return number


def _int(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(str(value))
    except ValueError:
        raise BybitApiError(10001, f"params error: {name} invalid") from None


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _limit(params: dict[str, Any], *, default: int, maximum: int) -> int:
    limit = _int(params.get("limit"), "limit", default)
    if not 1 <= limit <= maximum:
        raise BybitApiError(10001, "params error: limit invalid")
    return limit


def _category(params: dict[str, Any], *, allow_any: bool = False) -> str:
    category = str(params.get("category") or "")
    known = ("linear", "inverse", "spot", "option")
    if category == "linear" or (allow_any and category in known):
        return category
    raise BybitApiError(10001, "Illegal category")


def _check_tick(price: Decimal, market: MarketInfo, name: str) -> None:
    if price <= 0 or price % market.price_step:
        raise BybitApiError(10001, f"params error: {name} invalid")


def _check_trigger(direction: int, trigger: Decimal, last: Decimal) -> None:
    if direction not in (1, 2):
        raise BybitApiError(10001, "params error: triggerDirection invalid")
    if direction == 1 and trigger <= last:
        raise BybitApiError(
            110092, f"expect Rising, but trigger_price[{_fmt(trigger)}] <= current[{_fmt(last)}]"
        )
    if direction == 2 and trigger >= last:
        raise BybitApiError(
            110093, f"expect Falling, but trigger_price[{_fmt(trigger)}] >= current[{_fmt(last)}]"
        )


def _check_attached(
    side: str, base: Decimal, take_profit: Decimal | None, stop_loss: Decimal | None
) -> None:
    """A long's take profit lies above the price and its stop below; a short's the reverse."""
    position = "Buy" if side == "Buy" else "Sell"
    long = side == "Buy"
    if take_profit is not None and (take_profit <= base if long else take_profit >= base):
        word = "higher" if long else "lower"
        raise BybitApiError(
            10001,
            f"TakeProfit:{_fmt(take_profit)} set for {position} position should {word} than"
            f" base_price:{_fmt(base)}??LastPrice",
        )
    if stop_loss is not None and (stop_loss >= base if long else stop_loss <= base):
        word = "lower" if long else "higher"
        raise BybitApiError(
            10001,
            f"StopLoss:{_fmt(stop_loss)} set for {position} position should {word} than"
            f" base_price:{_fmt(base)}??LastPrice",
        )


def _instrument(market: MarketInfo) -> dict[str, Any]:
    tick, step = market.price_step, market.amount_step
    max_qty = (step * 10_000_000).normalize()
    return {
        "symbol": market.symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": market.base,
        "quoteCoin": market.quote,
        "launchTime": str(_LAUNCH_MS),
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": str(max(0, -_exponent(tick))),
        "leverageFilter": {
            "minLeverage": "1",
            "maxLeverage": f"{market.max_leverage}.00",
            "leverageStep": "0.01",
        },
        "priceFilter": {
            "minPrice": _fmt(tick),
            "maxPrice": _fmt(tick * 2_000_000_000),
            "tickSize": _fmt(tick),
        },
        "lotSizeFilter": {
            "maxOrderQty": _fmt(max_qty),
            "minOrderQty": _fmt(market.min_amount),
            "qtyStep": _fmt(step),
            "postOnlyMaxOrderQty": _fmt(max_qty),
            "maxMktOrderQty": _fmt(max_qty / 10),
            "minNotionalValue": _fmt(market.min_notional),
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoin": SETTLE_COIN,
        "copyTrading": "both",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
        "isPreListing": False,
        "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "displayName": "",
    }


def _exponent(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int), value
    return exponent


def _coin_row(coin: str) -> dict[str, Any]:
    chain = "ETH" if coin == SETTLE_COIN else coin
    return {
        "name": coin,
        "coin": coin,
        "remainAmount": "1000000",
        "chains": [
            {
                "chainType": chain,
                "confirmation": "6",
                "withdrawFee": "1",
                "depositMin": "0",
                "withdrawMin": "1",
                "chain": chain,
                "chainDeposit": "1",
                "chainWithdraw": "1",
                "minAccuracy": "8",
                "withdrawPercentageFee": "0",
                "contractAddress": "",
            }
        ],
    }


def _coin_balance(wallet: WalletBalance) -> dict[str, Any]:
    return {
        "coin": SETTLE_COIN,
        "equity": _fmt(wallet.equity),
        "usdValue": _fmt(wallet.equity),
        "walletBalance": _fmt(wallet.wallet_balance),
        "locked": "0",
        "spotHedgingQty": "0",
        "borrowAmount": "0",
        "availableToBorrow": "",
        "availableToWithdraw": _fmt(wallet.available_to_withdraw),
        "accruedInterest": "0",
        "totalOrderIM": _fmt(wallet.order_im),
        "totalPositionIM": _fmt(wallet.position_im),
        "totalPositionMM": _fmt(wallet.position_mm),
        "unrealisedPnl": _fmt(wallet.unrealised_pnl),
        "cumRealisedPnl": _fmt(wallet.cum_realised_pnl),
        "bonus": "0",
        "marginCollateral": True,
        "collateralSwitch": True,
        "spotBorrow": "0",
    }


def _execution_wire(execution: Execution) -> dict[str, Any]:
    return {
        "symbol": execution.symbol,
        "orderId": execution.order_id,
        "orderLinkId": execution.order_link_id,
        "side": execution.side,
        "orderPrice": _fmt(execution.order_price),
        "orderQty": _fmt(execution.order_qty),
        "leavesQty": _fmt(execution.leaves_qty),
        "createType": execution.create_type,
        "orderType": execution.order_type,
        "stopOrderType": execution.stop_order_type,
        "execFee": _fmt(execution.exec_fee),
        "feeCurrency": SETTLE_COIN,
        "execId": execution.exec_id,
        "execPrice": _fmt(execution.exec_price),
        "execQty": _fmt(execution.exec_qty),
        "execType": "Trade",
        "execValue": _fmt(execution.exec_value),
        "execTime": str(execution.exec_time_ms),
        "isMaker": execution.is_maker,
        "feeRate": _fmt(execution.fee_rate),
        "tradeIv": "",
        "markIv": "",
        "markPrice": _fmt(execution.mark_price),
        "indexPrice": _fmt(execution.mark_price),
        "underlyingPrice": "",
        "blockTradeId": "",
        "closedSize": _fmt(execution.closed_size),
        "seq": execution.seq,
        "extraFees": "",
    }


def _closed_pnl_wire(record: ClosedPnl) -> dict[str, Any]:
    return {
        "symbol": record.symbol,
        "orderType": record.order_type,
        "leverage": _fmt(record.leverage),
        "updatedTime": str(record.created_ms),
        "side": record.side,
        "orderId": record.order_id,
        "closedPnl": _fmt(record.closed_pnl),
        "openFee": _fmt(record.open_fee),
        "closeFee": _fmt(record.close_fee),
        "avgEntryPrice": _fmt(record.avg_entry_price),
        "qty": _fmt(record.qty),
        "cumEntryValue": _fmt(record.avg_entry_price * record.closed_size),
        "createdTime": str(record.created_ms),
        "orderPrice": _fmt(record.order_price),
        "closedSize": _fmt(record.closed_size),
        "avgExitPrice": _fmt(record.avg_exit_price),
        "execType": "Trade",
        "fillCount": "1",
        "cumExitValue": _fmt(record.avg_exit_price * record.closed_size),
    }
