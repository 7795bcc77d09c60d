"""Pre-trade risk checks: may this entry be opened under the user's risk settings?

`check_entry` runs eight checks against `user_risk_settings` and the account's state, always
all of them, so that the user sees everything that is wrong at once; the first failure in the
fixed order of `CHECKS` is the one named in `failed_check` / `reason`.

Only ENTRIES are checked. Exits are always allowed and never come here: a `long_exit` of an
open long, a stop or take-profit, and the closing leg of a reversal (long → short) reduce risk,
and entry rules such as "one position per symbol" or "max open positions" would otherwise trap
the user in the very position they are trying to leave (plan errata item 5). For a reversal,
the executor closes first and checks the new leg here with `open_positions` as they will be
after the close (the reversed position already excluded).

Boundaries (a value exactly at the limit):
- position size, leverage and portfolio exposure are maxima the user may reach: `≤` passes;
- open positions and daily trades are counts the user may reach but not exceed, so the entry
  that would make them exceed fails: `count < max` passes (max 5 → a 6th position fails);
- the daily loss limit is reached AT the limit: `loss % < max` passes, `loss % == max` fails.

Exposure is notional (quantity × entry price), not margin: leverage changes how much collateral
the exchange holds, not how much the account gains or loses when the price moves, so a 10×
position of 10,000 USDT exposes the account exactly as much as an unleveraged one.

Pure and exact: no I/O, `Decimal` only (floats are refused), limits compared by exact
cross-multiplication rather than through rounded percentages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import NamedTuple, Protocol

__all__ = [
    "CHECKS",
    "EntryRequest",
    "OpenPosition",
    "RiskContext",
    "RiskDecision",
    "RiskLimits",
    "RiskSettingsRow",
    "check_entry",
    "daily_loss_limit_reached",
]

_SIDES = ("long", "short")
_HUNDRED = Decimal(100)
_CENT = Decimal("0.01")
# Products and sums of NUMERIC(20, 8) values have at most about 40 significant digits: with 60,
# every comparison below is exact and no display rounding can overflow the precision.
_CONTEXT = Context(prec=60)


class RiskSettingsRow(Protocol):
    """Anything carrying the `user_risk_settings` columns, e.g. the `UserRiskSettings` model."""

    @property
    def max_position_size_usd(self) -> Decimal: ...
    @property
    def max_leverage(self) -> int: ...
    @property
    def max_open_positions(self) -> int: ...
    @property
    def max_daily_trades(self) -> int: ...
    @property
    def max_daily_loss_percent(self) -> Decimal: ...
    @property
    def max_portfolio_exposure_percent(self) -> Decimal: ...
    @property
    def default_risk_per_trade_percent(self) -> Decimal: ...
    @property
    def require_stop_loss(self) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class RiskLimits:
    """The user's risk settings (`user_risk_settings`), detached from the database session."""

    max_position_size_usd: Decimal
    max_leverage: int
    max_open_positions: int
    max_daily_trades: int
    max_daily_loss_percent: Decimal
    max_portfolio_exposure_percent: Decimal
    default_risk_per_trade_percent: Decimal
    require_stop_loss: bool

    def __post_init__(self) -> None:
        for name in (
            "max_position_size_usd",
            "max_daily_loss_percent",
            "max_portfolio_exposure_percent",
            "default_risk_per_trade_percent",
        ):
            _require_decimal(name, getattr(self, name))
        for name in ("max_leverage", "max_open_positions", "max_daily_trades"):
            _require_int(name, getattr(self, name))
        if not isinstance(self.require_stop_loss, bool):
            raise TypeError("require_stop_loss must be a bool")

    @classmethod
    def from_row(cls, row: RiskSettingsRow) -> RiskLimits:
        return cls(
            max_position_size_usd=row.max_position_size_usd,
            max_leverage=row.max_leverage,
            max_open_positions=row.max_open_positions,
            max_daily_trades=row.max_daily_trades,
            max_daily_loss_percent=row.max_daily_loss_percent,
            max_portfolio_exposure_percent=row.max_portfolio_exposure_percent,
            default_risk_per_trade_percent=row.default_risk_per_trade_percent,
            require_stop_loss=row.require_stop_loss,
        )


@dataclass(frozen=True)
class OpenPosition:
    """A position open on the account the entry goes to; `quantity` is unsigned."""

    symbol: str
    side: str  # "long" | "short"
    quantity: Decimal
    entry_price: Decimal

    def __post_init__(self) -> None:
        _require_side(self.side)
        _require_decimal("quantity", self.quantity)
        _require_decimal("entry_price", self.entry_price)
        if self.quantity < 0:
            raise ValueError(f"quantity must not be negative, not {self.quantity}")

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.entry_price


@dataclass(frozen=True)
class RiskContext:
    """The account as the entry would find it.

    `equity` is the account's equity in USDT now; `realized_pnl_today` the realized PnL since
    00:00 UTC (negative: a loss), so equity at the start of the day is `equity −
    realized_pnl_today`. `open_positions` are those of the same exchange account (symbols
    in the same unified form as the entry's), after any flip-close; `trades_today` the
    entries made since 00:00 UTC, not counting this one.
    """

    equity: Decimal
    open_positions: tuple[OpenPosition, ...]
    trades_today: int
    realized_pnl_today: Decimal

    def __post_init__(self) -> None:
        _require_decimal("equity", self.equity)
        _require_decimal("realized_pnl_today", self.realized_pnl_today)
        _require_int("trades_today", self.trades_today)
        if not isinstance(self.open_positions, tuple):
            raise TypeError("open_positions must be a tuple")


@dataclass(frozen=True)
class EntryRequest:
    """The entry to check, already sized (`quantity` unsigned, `entry_price` expected fill)."""

    symbol: str
    side: str  # "long" | "short"
    quantity: Decimal
    entry_price: Decimal
    leverage: int
    stop_loss: Decimal | None

    def __post_init__(self) -> None:
        _require_side(self.side)
        _require_decimal("quantity", self.quantity)
        _require_decimal("entry_price", self.entry_price)
        _require_int("leverage", self.leverage)
        if self.stop_loss is not None:
            _require_decimal("stop_loss", self.stop_loss)

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.entry_price


@dataclass(frozen=True)
class RiskDecision:
    """The verdict. `checks` has every check's result in the order of `CHECKS`; `reasons`
    a sentence for each failed one; `failed_check`/`reason` the first failure; `details` the
    numbers compared, as strings, for the execution log."""

    passed: bool
    failed_check: str | None
    reason: str | None
    checks: dict[str, bool]
    details: dict[str, str]
    reasons: dict[str, str] = field(default_factory=dict)


class _Result(NamedTuple):
    passed: bool
    reason: str | None = None


_Check = Callable[[EntryRequest, RiskLimits, RiskContext], _Result]


def check_entry(req: EntryRequest, limits: RiskLimits, ctx: RiskContext) -> RiskDecision:
    """Run every check on an entry; it may be sent only if `passed`."""
    checks: dict[str, bool] = {}
    reasons: dict[str, str] = {}
    with localcontext(_CONTEXT):
        for name, check in _CHECKS:
            result = check(req, limits, ctx)
            checks[name] = result.passed
            if not result.passed:
                assert result.reason is not None
                reasons[name] = result.reason
        details = _details(req, limits, ctx)
    first = next(iter(reasons), None)
    return RiskDecision(
        passed=first is None,
        failed_check=first,
        reason=None if first is None else reasons[first],
        checks=checks,
        details=details,
        reasons=reasons,
    )


def daily_loss_limit_reached(limits: RiskLimits, ctx: RiskContext) -> bool:
    """Whether today's realized loss has reached `max_daily_loss_percent` of the equity at
    the start of the day. Without a realized loss it has not."""
    with localcontext(_CONTEXT):
        loss = _loss_today(ctx)
        if loss == 0:
            return False
        start = _start_of_day_equity(ctx)
        if start <= 0:  # the account had nothing at the start of the day: nothing left to lose
            return True
        return loss * _HUNDRED >= limits.max_daily_loss_percent * start


# --------------------------------------------------------------------------- the checks


def _position_size(req: EntryRequest, limits: RiskLimits, ctx: RiskContext) -> _Result:
    if req.notional <= limits.max_position_size_usd:
        return _Result(True)
    return _Result(
        False,
        f"position {_usd(req.notional, ROUND_CEILING)} USDT exceeds your maximum of "
        f"{_usd(limits.max_position_size_usd)} USDT",
    )


def _leverage(req: EntryRequest, limits: RiskLimits, ctx: RiskContext) -> _Result:
    if req.leverage <= limits.max_leverage:
        return _Result(True)
    return _Result(
        False, f"leverage {req.leverage}x exceeds your maximum of {limits.max_leverage}x"
    )


def _open_positions(req: EntryRequest, limits: RiskLimits, ctx: RiskContext) -> _Result:
    count = len(ctx.open_positions)
    if count < limits.max_open_positions:
        return _Result(True)
    return _Result(
        False,
        f"you already have {_count(count, 'open position')}, your maximum is "
        f"{limits.max_open_positions}",
    )


def _daily_trades(req: EntryRequest, limits: RiskLimits, ctx: RiskContext) -> _Result:
    if ctx.trades_today < limits.max_daily_trades:
        return _Result(True)
    return _Result(
        False,
        f"you have already made {_count(ctx.trades_today, 'trade')} today, your daily "
        f"maximum is {limits.max_daily_trades}",
    )


def _daily_loss(req: EntryRequest, limits: RiskLimits, ctx: RiskContext) -> _Result:
    if ctx.equity <= 0:
        return _Result(False, _no_equity(ctx))
    if not daily_loss_limit_reached(limits, ctx):
        return _Result(True)
    loss, start = _loss_today(ctx), _start_of_day_equity(ctx)
    return _Result(
        False,
        f"today's realized loss of {_usd(loss)} USDT is {_percent(loss, start)}% of your "
        f"equity at the start of the day ({_usd(start)} USDT), which reaches your daily "
        f"loss limit of {_cents(limits.max_daily_loss_percent)}%",
    )


def _portfolio_exposure(req: EntryRequest, limits: RiskLimits, ctx: RiskContext) -> _Result:
    if ctx.equity <= 0:
        return _Result(False, _no_equity(ctx))
    total = _exposure(req, ctx)
    if total * _HUNDRED <= limits.max_portfolio_exposure_percent * ctx.equity:
        return _Result(True)
    return _Result(
        False,
        f"your open positions and this one would total {_usd(total, ROUND_CEILING)} USDT, "
        f"{_percent(total, ctx.equity, ROUND_CEILING)}% of your equity of "
        f"{_usd(ctx.equity)} USDT, above your maximum exposure of "
        f"{_cents(limits.max_portfolio_exposure_percent)}%",
    )


def _stop_loss(req: EntryRequest, limits: RiskLimits, ctx: RiskContext) -> _Result:
    if req.stop_loss is not None or not limits.require_stop_loss:
        return _Result(True)
    return _Result(
        False,
        "your risk settings require a stop loss and this alert has none: add stop_loss to "
        "the alert message",
    )


def _duplicate_position(req: EntryRequest, limits: RiskLimits, ctx: RiskContext) -> _Result:
    for position in ctx.open_positions:
        if position.symbol == req.symbol and position.side == req.side:
            return _Result(False, f"you already have an open {req.side} position in {req.symbol}")
    return _Result(True)


_CHECKS: tuple[tuple[str, _Check], ...] = (
    ("position_size", _position_size),
    ("leverage", _leverage),
    ("open_positions", _open_positions),
    ("daily_trades", _daily_trades),
    ("daily_loss", _daily_loss),
    ("portfolio_exposure", _portfolio_exposure),
    ("stop_loss", _stop_loss),
    ("duplicate_position", _duplicate_position),
)
CHECKS: tuple[str, ...] = tuple(name for name, _ in _CHECKS)


# --------------------------------------------------------------------------- helpers


def _loss_today(ctx: RiskContext) -> Decimal:
    """Today's realized loss as a non-negative amount (0 when the day is flat or up)."""
    return -ctx.realized_pnl_today if ctx.realized_pnl_today < 0 else Decimal(0)


def _start_of_day_equity(ctx: RiskContext) -> Decimal:
    return ctx.equity - ctx.realized_pnl_today


def _exposure(req: EntryRequest, ctx: RiskContext) -> Decimal:
    """Open notionals plus this entry's; notional, not margin (see the module docstring)."""
    return sum((p.notional for p in ctx.open_positions), req.notional)


def _details(req: EntryRequest, limits: RiskLimits, ctx: RiskContext) -> dict[str, str]:
    """The numbers every check compared, exact, as strings (JSON for the execution log)."""
    details = {
        "notional": _exact(req.notional),
        "max_position_size_usd": _exact(limits.max_position_size_usd),
        "leverage": str(req.leverage),
        "max_leverage": str(limits.max_leverage),
        "open_positions": str(len(ctx.open_positions)),
        "max_open_positions": str(limits.max_open_positions),
        "trades_today": str(ctx.trades_today),
        "max_daily_trades": str(limits.max_daily_trades),
        "equity": _exact(ctx.equity),
        "realized_pnl_today": _exact(ctx.realized_pnl_today),
        "start_of_day_equity": _exact(_start_of_day_equity(ctx)),
        "max_daily_loss_percent": _exact(limits.max_daily_loss_percent),
        "exposure_usd": _exact(_exposure(req, ctx)),
        "max_portfolio_exposure_percent": _exact(limits.max_portfolio_exposure_percent),
        "stop_loss": "none" if req.stop_loss is None else _exact(req.stop_loss),
        "require_stop_loss": "true" if limits.require_stop_loss else "false",
    }
    start = _start_of_day_equity(ctx)
    if start > 0:
        details["daily_loss_percent"] = _percent(_loss_today(ctx), start)
    if ctx.equity > 0:
        details["exposure_percent"] = _percent(_exposure(req, ctx), ctx.equity)
    return details


def _no_equity(ctx: RiskContext) -> str:
    return f"your account equity is {_usd(ctx.equity)} USDT: no new position can be opened"


def _percent(part: Decimal, whole: Decimal, rounding: str = ROUND_HALF_EVEN) -> str:
    """part ÷ whole as a percentage with two decimals (display only: checks compare exactly)."""
    return _exact((part * _HUNDRED / whole).quantize(_CENT, rounding=rounding))


def _usd(value: Decimal, rounding: str = ROUND_HALF_EVEN) -> str:
    """An amount for people, 1,250.00. A message saying "exceeds" rounds up, so that
    1,000.004 never reads as 1,000.00."""
    return f"{value.quantize(_CENT, rounding=rounding):,f}"


def _cents(value: Decimal) -> str:
    """A limit from the settings (NUMERIC(5, 2)) as written there: 10.00."""
    return _exact(value.quantize(_CENT))


def _exact(value: Decimal) -> str:
    """The exact value without exponent notation: 1000.00, 0.00001234."""
    return format(value, "f")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _require_decimal(name: str, value: object) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite number, not {value}")


def _require_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")


def _require_side(side: str) -> None:
    if side not in _SIDES:
        raise ValueError(f"side must be 'long' or 'short', not {side!r}")
