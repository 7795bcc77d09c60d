"""Which exchange adapter executes a user's signal.

The paper exchange needs no credentials and is always available; live exchanges need the
user's API key (not available in this build: such signals fail with a clear reason).
"""

from __future__ import annotations

from app.config import Settings
from app.core.pg import Pool
from app.exchanges.base import ExchangeAdapter
from app.exchanges.errors import OrderRejected
from app.exchanges.paper import PaperExchange
from app.exchanges.price_feed import PriceFeed, SyntheticPriceFeed
from app.exchanges.ticker_feed import CcxtTickerFeed


def make_price_feed(settings: Settings) -> PriceFeed:
    """The paper exchange's market: synthetic (offline default) or a live exchange's tickers."""
    if settings.PAPER_PRICE_SOURCE == "live":
        return CcxtTickerFeed(settings.PAPER_LIVE_EXCHANGE)
    return SyntheticPriceFeed(seed=settings.PAPER_PRICE_SEED)


class ExchangeUnavailable(OrderRejected):
    """The signal names an exchange this engine cannot trade on for this user."""


class AdapterFactory:
    def __init__(
        self,
        settings: Settings,
        pool: Pool,
        paper_feed: PriceFeed,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.paper_feed = paper_feed

    def paper(self, user_id: str) -> PaperExchange:
        return PaperExchange(
            self.pool,
            user_id,
            self.paper_feed,
            starting_balance=self.settings.PAPER_STARTING_BALANCE,
            taker_fee_rate=self.settings.PAPER_TAKER_FEE_RATE,
            slippage_percent=self.settings.DEFAULT_SLIPPAGE_PERCENT,
        )

    async def for_user(self, user_id: str, exchange: str) -> ExchangeAdapter:
        if exchange == "paper":
            return self.paper(user_id)
        raise ExchangeUnavailable(
            f"trading on {exchange} is not available yet; use exchange 'paper'",
            code="exchange_unavailable",
        )
