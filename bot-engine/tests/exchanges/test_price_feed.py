"""Price feeds: the synthetic feed is a deterministic, bounded walk; the manual feed returns
what it was given and refuses what it was not."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from app.exchanges.errors import PriceUnavailable
from app.exchanges.price_feed import (
    MAX_DEVIATION,
    ManualPriceFeed,
    SyntheticPriceFeed,
    base_price,
)
from app.exchanges.symbols import PAPER_MARKETS

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_synthetic_price_is_a_function_of_seed_symbol_and_second() -> None:
    early, late = (
        SyntheticPriceFeed(seed=7, clock=Clock(T0 + 0.01)),
        SyntheticPriceFeed(seed=7, clock=Clock(T0 + 0.99)),
    )
    for symbol in PAPER_MARKETS:
        assert await early.price(symbol) == await late.price(symbol)

    other_seed = SyntheticPriceFeed(seed=8, clock=Clock(T0))
    assert await other_seed.price("BTCUSDT") != await early.price("BTCUSDT")


async def test_synthetic_price_moves_from_second_to_second() -> None:
    clock = Clock(T0)
    feed = SyntheticPriceFeed(seed=0, clock=clock)
    seen = []
    for second in range(10):
        clock.now = T0 + second
        seen.append(await feed.price("BTCUSDT"))

    assert len(set(seen)) >= 8
    # Moves like a market, not like a lottery: a second rarely moves BTC more than 0.5 %.
    steps = [abs(b - a) / a for a, b in itertools.pairwise(seen)]
    assert max(steps) < Decimal("0.005")


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT", "1000PEPEUSDT"])
async def test_synthetic_price_stays_near_its_base_and_on_the_tick(symbol: str) -> None:
    clock = Clock(T0)
    feed = SyntheticPriceFeed(seed=3, clock=clock)
    base, tick = base_price(symbol), PAPER_MARKETS[symbol].price_step
    # Sixty days, sampled at an odd interval so every time scale of the walk is crossed.
    for sample in range(1500):
        clock.now = T0 + sample * 3457
        price = await feed.price(symbol)
        assert abs(price - base) <= base * MAX_DEVIATION
        assert price % tick == 0


async def test_named_bases_and_derived_bases() -> None:
    assert base_price("BTCUSDT") == Decimal("65000")
    assert base_price("ETHUSDT") == Decimal("3500")
    assert base_price("SOLUSDT") == Decimal("150")
    # Any other symbol gets a base of its own, the same every time.
    derived = base_price("FOOUSDT")
    assert derived > 0
    assert derived == base_price("FOOUSDT")
    assert derived != base_price("BARUSDT")
    feed = SyntheticPriceFeed(clock=Clock(T0))
    assert abs(await feed.price("FOOUSDT") - derived) <= derived * MAX_DEVIATION


async def test_synthetic_feed_refuses_non_canonical_symbols() -> None:
    feed = SyntheticPriceFeed()
    with pytest.raises(PriceUnavailable, match="canonical"):
        await feed.price("BTC/USDT")


async def test_manual_feed_returns_what_was_set() -> None:
    feed = ManualPriceFeed({"BTCUSDT": Decimal("65000")})
    assert await feed.price("BTCUSDT") == Decimal("65000")

    feed.set("BTCUSDT", Decimal("64000.5"))
    feed.set("ETHUSDT", Decimal("3500"))

    assert await feed.price("BTCUSDT") == Decimal("64000.5")
    assert await feed.price("ETHUSDT") == Decimal("3500")


async def test_manual_feed_refuses_unknown_symbols_and_bad_prices() -> None:
    feed = ManualPriceFeed({"BTCUSDT": Decimal("65000")})

    with pytest.raises(PriceUnavailable, match=r"no price has been set for SOLUSDT.*BTCUSDT"):
        await feed.price("SOLUSDT")
    with pytest.raises(TypeError, match="Decimal"):
        feed.set("BTCUSDT", 65000.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        feed.set("BTCUSDT", Decimal("0"))
    with pytest.raises(ValueError, match="canonical"):
        feed.set("btc-usdt", Decimal("1"))
    assert await feed.price("BTCUSDT") == Decimal("65000")
