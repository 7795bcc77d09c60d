"""Position sizing: how large an entry is, before the risk manager decides whether it may open.

TradingView alerts usually carry no size (plan errata item 4), so the executor sizes every
entry here, in this order of precedence:

1. `qty` from the alert: that many units of the base asset;
2. `notional_usd` from the alert: that many USDT worth at the expected entry price;
3. risk: `risk_percent` (the alert's, else the user's `default_risk_per_trade_percent`) of
   equity is what the trade may lose if the stop is hit, so quantity = risk ÷ |entry − stop|.

Whatever the method, the notional is capped at `max_position_size_usd` and the quantity is
rounded DOWN to the market's amount step (rounding up would spend more than the risk budget
or the cap). A result below the exchange's minimum amount or notional is refused here with
the numbers, instead of being sent and rejected by the exchange (MIN_NOTIONAL).

Pure and exact: no I/O, `Decimal` only (a float is refused at construction), and every
quotient that decides the quantity is computed by exact integer division, so the rounding
never depends on the precision of an intermediate result.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Literal

__all__ = ["Sizing", "SizingError", "SizingErrorCode", "SizingRequest", "size_position"]

SizingErrorCode = Literal["no_stop_loss", "below_minimum", "invalid_stop", "no_equity"]
SizingMethod = Literal["qty", "notional", "risk"]

# Wide enough that no product or integer quotient below is ever rounded.
_CONTEXT = Context(prec=60, rounding=ROUND_FLOOR)
# For the one inexact, informational quotient (`requested_quantity`): 28 significant digits,
# never above the exact value.
_REPORT_CONTEXT = Context(prec=28, rounding=ROUND_FLOOR)
_MESSAGE_CONTEXT = Context(prec=6, rounding=ROUND_FLOOR)  # digits worth showing a person
_CENT = Decimal("0.01")
_HUNDRED = Decimal(100)


class SizingError(Exception):
    """The entry cannot be sized; `reason` is shown to the user, `code` is stable."""

    def __init__(self, code: SizingErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code: SizingErrorCode = code
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class SizingRequest:
    """Everything sizing needs: the account, the alert's overrides, the user's settings and
    the market's limits. At most one of `qty`, `notional_usd`, `risk_percent` is set (when
    several are, the first of that order wins)."""

    equity: Decimal  # account equity, USDT
    side: str  # "long" | "short": which side of the entry a valid stop is on
    entry_price: Decimal  # expected fill price, USDT per unit
    stop_loss: Decimal | None
    qty: Decimal | None  # alert override: units of the base asset
    notional_usd: Decimal | None  # alert override: USDT
    risk_percent: Decimal | None  # alert override: % of equity at risk
    default_risk_percent: Decimal  # user setting default_risk_per_trade_percent
    max_position_size_usd: Decimal  # user setting
    leverage: int
    amount_step: Decimal  # market precision of the amount, e.g. 0.001
    min_amount: Decimal  # market minimum amount (0: none)
    min_notional: Decimal  # market minimum cost in USDT (0: none)
    base_asset: str = ""  # for messages only ("0.0004 BTC")

    def __post_init__(self) -> None:
        # Contract violations (the webhook schema and the market data guarantee these), not
        # user errors: a float here would already have lost exactness upstream.
        if self.side not in ("long", "short"):
            raise ValueError(f"side must be 'long' or 'short', not {self.side!r}")
        _require_decimal("equity", self.equity)
        _require_decimal("entry_price", self.entry_price, positive=True)
        _require_decimal("default_risk_percent", self.default_risk_percent, percent=True)
        _require_decimal("max_position_size_usd", self.max_position_size_usd, positive=True)
        _require_decimal("amount_step", self.amount_step, positive=True)
        _require_decimal("min_amount", self.min_amount, non_negative=True)
        _require_decimal("min_notional", self.min_notional, non_negative=True)
        if self.stop_loss is not None:
            _require_decimal("stop_loss", self.stop_loss)
        if self.qty is not None:
            _require_decimal("qty", self.qty, positive=True)
        if self.notional_usd is not None:
            _require_decimal("notional_usd", self.notional_usd, positive=True)
        if self.risk_percent is not None:
            _require_decimal("risk_percent", self.risk_percent, percent=True)
        if isinstance(self.leverage, bool) or not isinstance(self.leverage, int):
            raise TypeError(f"leverage must be an int, not {type(self.leverage).__name__}")
        if self.leverage < 1:
            raise ValueError(f"leverage must be at least 1, not {self.leverage}")


@dataclass(frozen=True)
class Sizing:
    """The size to order. `quantity` is a multiple of the amount step, `notional` is
    quantity × entry price, `risk_amount` what the stop would lose (fees excluded; None
    without a stop), `capped` whether `max_position_size_usd` reduced it, and
    `requested_quantity` the size before the cap and the rounding."""

    quantity: Decimal
    notional: Decimal
    method: SizingMethod
    risk_amount: Decimal | None
    capped: bool
    requested_quantity: Decimal


def size_position(req: SizingRequest) -> Sizing:
    """Size one entry, or raise `SizingError` saying why it cannot be opened."""
    with localcontext(_CONTEXT):
        if req.stop_loss is not None:
            _check_stop_side(req, req.stop_loss)
        method, numerator, denominator = _requested(req)
        # The target quantity is numerator ÷ denominator; keeping it a fraction lets the cap
        # test and the rounding below be exact.
        requested_quantity = _REPORT_CONTEXT.divide(numerator, denominator)
        capped = numerator * req.entry_price > req.max_position_size_usd * denominator
        if capped:
            numerator, denominator = req.max_position_size_usd, req.entry_price
        # Round down to the step: floor(quantity ÷ step) steps, by exact integer division.
        steps = numerator // (denominator * req.amount_step)
        quantity = steps * req.amount_step
        notional = quantity * req.entry_price
        _check_minimums(req, numerator, denominator, quantity, notional)
        risk_amount = (
            None if req.stop_loss is None else quantity * abs(req.entry_price - req.stop_loss)
        )
    return Sizing(
        quantity=quantity,
        notional=notional,
        method=method,
        risk_amount=risk_amount,
        capped=capped,
        requested_quantity=requested_quantity,
    )


def _requested(req: SizingRequest) -> tuple[SizingMethod, Decimal, Decimal]:
    """The method and the requested quantity as an exact fraction (numerator, denominator)."""
    if req.qty is not None:
        return "qty", req.qty, Decimal(1)
    if req.notional_usd is not None:
        return "notional", req.notional_usd, req.entry_price
    if req.stop_loss is None:
        raise SizingError(
            "no_stop_loss", "no stop_loss to size from: send stop_loss, qty or notional_usd"
        )
    if req.equity <= 0:
        raise SizingError(
            "no_equity",
            f"account equity is {_usd(req.equity)} USDT: there is nothing to risk a "
            "percentage of (send qty or notional_usd, or fund the account)",
        )
    percent = req.risk_percent if req.risk_percent is not None else req.default_risk_percent
    risk_budget = req.equity * percent / _HUNDRED  # exact: a division by 100
    # Leverage plays no part: it sets how much margin the exchange holds, not how much the
    # position loses when the stop is hit (quantity × stop distance). Multiplying the size
    # by the leverage would multiply the loss at the stop by it too.
    return "risk", risk_budget, abs(req.entry_price - req.stop_loss)


def _check_stop_side(req: SizingRequest, stop: Decimal) -> None:
    """A long's stop is below the entry, a short's above; equal (zero distance) is invalid."""
    if stop <= 0:
        raise SizingError("invalid_stop", f"stop_loss {_price(stop)} is not a positive price")
    if req.side == "long" and stop >= req.entry_price:
        where = "equal to" if stop == req.entry_price else "above"
        raise SizingError(
            "invalid_stop",
            f"stop_loss {_price(stop)} is {where} the entry price {_price(req.entry_price)}: "
            "a long's stop must be below the entry",
        )
    if req.side == "short" and stop <= req.entry_price:
        where = "equal to" if stop == req.entry_price else "below"
        raise SizingError(
            "invalid_stop",
            f"stop_loss {_price(stop)} is {where} the entry price {_price(req.entry_price)}: "
            "a short's stop must be above the entry",
        )


def _check_minimums(
    req: SizingRequest,
    numerator: Decimal,
    denominator: Decimal,
    quantity: Decimal,
    notional: Decimal,
) -> None:
    asset = f" {req.base_asset}" if req.base_asset else ""
    if quantity == 0:
        unrounded = _MESSAGE_CONTEXT.divide(numerator, denominator)  # after the cap
        raise SizingError(
            "below_minimum",
            f"position of {_plain(unrounded)}{asset} rounds down to 0 at the exchange's "
            f"amount step of {_plain(req.amount_step)}{asset}",
        )
    if quantity < req.min_amount or notional < req.min_notional:
        raise SizingError(
            "below_minimum",
            f"position of {_plain(quantity)}{asset} ({_usd(notional, ROUND_FLOOR)} USDT) is "
            f"below the exchange minimum of {_plain(req.min_amount)}{asset} / "
            f"{_plain(req.min_notional)} USDT",
        )


def _require_decimal(
    name: str,
    value: object,
    *,
    positive: bool = False,
    non_negative: bool = False,
    percent: bool = False,
) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite number, not {value}")
    if (positive or percent) and value <= 0:
        raise ValueError(f"{name} must be positive, not {value}")
    if non_negative and value < 0:
        raise ValueError(f"{name} must not be negative, not {value}")
    if percent and value > _HUNDRED:
        raise ValueError(f"{name} must be at most 100, not {value}")


def _usd(value: Decimal, rounding: str = ROUND_HALF_EVEN) -> str:
    """An amount of USDT for people: 1,250.00. A message saying "below" rounds down, so
    that 4.999 never reads as 5.00."""
    return f"{value.quantize(_CENT, rounding=rounding):,f}"


def _price(value: Decimal) -> str:
    """A price exactly as given, with thousands separators and no exponent: 64,000.5."""
    return f"{value:,f}"


def _plain(value: Decimal) -> str:
    """A quantity without trailing zeros or exponent: 0.0004, 5, 100."""
    return format(value.normalize(), "f")
