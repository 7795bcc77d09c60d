"""Where the paper exchange gets its prices.

- `SyntheticPriceFeed`: offline and deterministic. The price of a symbol at a given second is
  a pure function of (seed, symbol, second): a base price moved by smooth pseudo-random noise
  at several time scales (days down to one second), so it wanders like a market, stays
  within ±5 % of the base and never needs a network. Two processes with the same seed agree.
- `ManualPriceFeed`: prices a caller sets; tests and demos use it to walk the market through
  a stop or a take-profit.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Protocol

from app.exchanges.errors import PriceUnavailable
from app.exchanges.symbols import canonical_symbol, paper_market


class PriceFeed(Protocol):
    async def price(self, symbol: str) -> Decimal:
        """The current price of a canonical symbol; PriceUnavailable when there is none."""
        ...


# Rough prices of the paper markets; any other symbol gets a base derived from its name.
BASE_PRICES: dict[str, Decimal] = {
    "BTCUSDT": Decimal("65000"),
    "ETHUSDT": Decimal("3500"),
    "SOLUSDT": Decimal("150"),
    "BNBUSDT": Decimal("600"),
    "XRPUSDT": Decimal("0.6"),
    "DOGEUSDT": Decimal("0.15"),
    "ADAUSDT": Decimal("0.45"),
    "AVAXUSDT": Decimal("35"),
    "LINKUSDT": Decimal("15"),
    "DOTUSDT": Decimal("7"),
    "LTCUSDT": Decimal("80"),
    "TRXUSDT": Decimal("0.12"),
    "NEARUSDT": Decimal("5"),
    "1000PEPEUSDT": Decimal("0.01"),
}

# The price never strays further than this fraction from its base.
MAX_DEVIATION = Decimal("0.05")
# (period in seconds, weight): slow swings dominate, the one-second layer is tick noise.
_LAYERS: tuple[tuple[int, int], ...] = (
    (86_400, 35),
    (14_400, 25),
    (3_600, 15),
    (900, 10),
    (120, 7),
    (20, 5),
    (1, 3),
)
_TOTAL_WEIGHT = sum(weight for _, weight in _LAYERS)
_SIGNIFICANT_DIGITS = 6  # precision of symbols that are not paper markets


def _unit_hash(*parts: object) -> Decimal:
    """A deterministic value in [-1, 1) from `parts` (the same on every machine and run)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return Decimal(int.from_bytes(digest, "big")) / Decimal(2**63) - 1


def _layer(seed: int, symbol: str, period: int, second: int) -> Decimal:
    """Noise of one time scale: random values at multiples of `period`, joined smoothly."""
    knot, offset = divmod(second, period)
    start = _unit_hash(seed, symbol, period, knot)
    if offset == 0:
        return start
    end = _unit_hash(seed, symbol, period, knot + 1)
    f = Decimal(offset) / Decimal(period)
    smooth = f * f * (3 - 2 * f)
    return start + (end - start) * smooth


def base_price(symbol: str) -> Decimal:
    """The price a symbol's synthetic walk is centred on."""
    known = BASE_PRICES.get(symbol)
    if known is not None:
        return known
    # Somewhere between 0.001 and 10,000, fixed per symbol, four significant digits.
    mantissa = (_unit_hash("base", symbol) + 1) * Decimal("4.5") + 1  # [1, 10)
    exponent = int((_unit_hash("exponent", symbol) + 1) * 4) - 3  # -3 .. 4
    return (mantissa * Decimal(10) ** exponent).quantize(
        Decimal(10) ** (exponent - 3), rounding=ROUND_HALF_EVEN
    )


def _round_price(symbol: str, price: Decimal) -> Decimal:
    market = paper_market(symbol)
    if market is not None:
        return price.quantize(market.price_step, rounding=ROUND_HALF_EVEN)
    exponent = price.adjusted() - (_SIGNIFICANT_DIGITS - 1)
    return price.quantize(Decimal(10) ** exponent, rounding=ROUND_HALF_EVEN)


@functools.lru_cache(maxsize=4096)
def synthetic_price(seed: int, symbol: str, second: int) -> Decimal:
    """The synthetic price of `symbol` during `second` (Unix time) for `seed`. A pure function,
    so it is computed once per symbol and second (every order of that second reuses it)."""
    noise = sum(
        (weight * _layer(seed, symbol, period, second) for period, weight in _LAYERS),
        start=Decimal(0),
    )
    deviation = MAX_DEVIATION * noise / _TOTAL_WEIGHT
    return _round_price(symbol, base_price(symbol) * (1 + deviation))


def _is_canonical(symbol: str) -> bool:
    try:
        return canonical_symbol(symbol) == symbol
    except ValueError:
        return False


def _not_canonical(symbol: str) -> str:
    return f"{symbol!r} is not a canonical symbol such as 'BTCUSDT'"


class SyntheticPriceFeed:
    """Deterministic offline prices; see the module docstring."""

    def __init__(self, seed: int = 0, *, clock: Callable[[], float] = time.time) -> None:
        self.seed = seed
        self._clock = clock

    async def price(self, symbol: str) -> Decimal:
        if not _is_canonical(symbol):
            raise PriceUnavailable(_not_canonical(symbol))
        return synthetic_price(self.seed, symbol, int(self._clock()))


class ManualPriceFeed:
    """Prices set by hand with `set()`; asking for a symbol never set is an error."""

    def __init__(self, prices: Mapping[str, Decimal] | None = None) -> None:
        self._prices: dict[str, Decimal] = {}
        for symbol, price in (prices or {}).items():
            self.set(symbol, price)

    def set(self, symbol: str, price: Decimal) -> None:
        if not isinstance(price, Decimal):
            raise TypeError(f"price must be a Decimal, got {type(price).__name__}")
        if not price.is_finite() or price <= 0:
            raise ValueError(f"price of {symbol} must be positive, got {price}")
        if not _is_canonical(symbol):
            raise ValueError(_not_canonical(symbol))
        self._prices[symbol] = price

    async def price(self, symbol: str) -> Decimal:
        try:
            return self._prices[symbol]
        except KeyError:
            known = ", ".join(sorted(self._prices)) or "none"
            raise PriceUnavailable(
                f"no price has been set for {symbol} (prices are set for: {known})"
            ) from None
