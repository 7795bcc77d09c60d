"""The caller's own trading data, as the assistant sees it: tier and allowance, paper equity,
open positions with unrealised PnL, recent signals (with why they were rejected or failed),
recent trades, risk settings, strategies in use and connected exchanges.

Every query here is filtered by the one user id it is given, which comes from the verified
access token — never from the question or from the model. Values are plain strings
(Decimals in positional notation, times in ISO 8601 UTC) so they render and serialise
without floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    ExchangeApiKey,
    PaperAccount,
    RealPosition,
    RealTrade,
    Strategy,
    TradingSignal,
    User,
    UserRiskSettings,
)

Row = dict[str, str | int | bool | None]

RECENT_SIGNALS = 8
RECENT_TRADES = 8
MAX_ROWS = 50  # what one tool call may return
STRATEGY_WINDOW = timedelta(days=30)
RISK_FIELDS = (
    "max_position_size_usd",
    "max_leverage",
    "max_open_positions",
    "max_daily_trades",
    "max_daily_loss_percent",
    "max_portfolio_exposure_percent",
    "default_risk_per_trade_percent",
    "require_stop_loss",
)


def plain(value: Any) -> str | int | bool | None:
    """A column value as the prompt shows it."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text if text != "-0" else "0"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return str(value)


def _row(obj: Any, fields: tuple[str, ...]) -> Row:
    return {name: plain(getattr(obj, name)) for name in fields}


POSITION_FIELDS = (
    "exchange",
    "symbol",
    "side",
    "status",
    "quantity",
    "entry_price",
    "current_price",
    "leverage",
    "unrealized_pnl",
    "realized_pnl",
    "stop_loss",
    "take_profit",
    "opened_at",
    "closed_at",
)
SIGNAL_FIELDS = (
    "created_at",
    "signal_type",
    "symbol",
    "exchange",
    "source",
    "status",
    "status_reason",
    "price",
    "suggested_stop_loss",
    "suggested_take_profit",
)
TRADE_FIELDS = (
    "created_at",
    "exchange",
    "symbol",
    "side",
    "order_type",
    "reduce_only",
    "status",
    "quantity",
    "filled_quantity",
    "avg_fill_price",
    "fee",
    "realized_pnl",
)


async def positions(
    session: AsyncSession,
    user_id: str,
    *,
    status: str = "open",
    symbol: str | None = None,
    limit: int = MAX_ROWS,
) -> list[Row]:
    query = select(RealPosition).where(RealPosition.user_id == user_id)
    if status in ("open", "closed"):
        query = query.where(RealPosition.status == status)
    if symbol:
        query = query.where(RealPosition.symbol.ilike(f"%{_like(symbol)}%", escape="\\"))
    query = query.order_by(RealPosition.opened_at.desc()).limit(min(limit, MAX_ROWS))
    return [_row(p, POSITION_FIELDS) for p in await session.scalars(query)]


async def signals(
    session: AsyncSession,
    user_id: str,
    *,
    symbol: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int = RECENT_SIGNALS,
) -> list[Row]:
    query = select(TradingSignal).where(TradingSignal.user_id == user_id)
    if symbol:
        query = query.where(TradingSignal.symbol.ilike(f"%{_like(symbol)}%", escape="\\"))
    if status:
        query = query.where(TradingSignal.status == status)
    if since:
        query = query.where(TradingSignal.created_at >= since)
    query = query.order_by(TradingSignal.seq.desc()).limit(min(limit, MAX_ROWS))
    return [_row(s, SIGNAL_FIELDS) for s in await session.scalars(query)]


async def trades(
    session: AsyncSession,
    user_id: str,
    *,
    symbol: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int = RECENT_TRADES,
) -> list[Row]:
    query = select(RealTrade).where(RealTrade.user_id == user_id)
    if symbol:
        query = query.where(RealTrade.symbol.ilike(f"%{_like(symbol)}%", escape="\\"))
    if status:
        query = query.where(RealTrade.status == status)
    if since:
        query = query.where(RealTrade.created_at >= since)
    query = query.order_by(RealTrade.created_at.desc()).limit(min(limit, MAX_ROWS))
    return [_row(t, TRADE_FIELDS) for t in await session.scalars(query)]


async def risk_settings(session: AsyncSession, user_id: str) -> Row:
    row = await session.scalar(select(UserRiskSettings).where(UserRiskSettings.user_id == user_id))
    if row is None:  # not created yet: the column defaults apply
        return {name: None for name in RISK_FIELDS}
    return _row(row, RISK_FIELDS)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").upper()


@dataclass(frozen=True)
class TradingContext:
    """What the assistant knows about the caller when a question arrives."""

    tier: str
    chat_used: int
    chat_limit: int
    paper_wallet_balance: str | None  # None: no paper account opened yet
    paper_equity: str | None
    realized_pnl_today: str
    open_positions: list[Row]
    recent_signals: list[Row]
    recent_trades: list[Row]
    risk: Row
    strategies: list[Row]
    exchanges: list[Row]

    def summary(self) -> str:
        """What went into the prompt, for the message's record."""
        return (
            f"tier={self.tier}; open_positions={len(self.open_positions)}; "
            f"recent_signals={len(self.recent_signals)}; recent_trades={len(self.recent_trades)}; "
            f"strategies={len(self.strategies)}; exchanges={len(self.exchanges)}"
        )


async def build_context(
    session: AsyncSession,
    user: User,
    *,
    chat_limit: int,
    chat_used: int | None = None,
    now: datetime | None = None,
) -> TradingContext:
    """`chat_used`: the month's answers when the caller knows better than `user` (it just
    reserved one); else the user's counter."""
    now = now or datetime.now(UTC)
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    open_positions = await positions(session, user.id, status="open")
    wallet = await session.scalar(
        select(PaperAccount.wallet_balance).where(PaperAccount.account_id == user.id)
    )
    paper_unrealized = sum(
        (
            Decimal(str(p["unrealized_pnl"] or 0))
            for p in open_positions
            if p["exchange"] == "paper"
        ),
        Decimal(0),
    )
    realized_today = await session.scalar(
        select(func.coalesce(func.sum(RealTrade.realized_pnl), 0)).where(
            RealTrade.user_id == user.id, RealTrade.created_at >= start_of_day
        )
    )
    strategies = (
        await session.execute(
            select(Strategy.name, Strategy.timeframe, func.count(TradingSignal.id))
            .join(TradingSignal, TradingSignal.strategy_id == Strategy.id)
            .where(
                TradingSignal.user_id == user.id,
                TradingSignal.created_at >= now - STRATEGY_WINDOW,
                Strategy.is_active.is_(True),
            )
            .group_by(Strategy.name, Strategy.timeframe)
            .order_by(Strategy.name)
        )
    ).all()
    keys = await session.scalars(
        select(ExchangeApiKey)
        .where(ExchangeApiKey.user_id == user.id, ExchangeApiKey.is_active.is_(True))
        .order_by(ExchangeApiKey.exchange)
    )
    return TradingContext(
        tier=user.subscription_tier,
        chat_used=user.chat_messages_used if chat_used is None else chat_used,
        chat_limit=chat_limit,
        paper_wallet_balance=None if wallet is None else str(plain(wallet)),
        paper_equity=None if wallet is None else str(plain(wallet + paper_unrealized)),
        realized_pnl_today=str(plain(realized_today or Decimal(0))),
        open_positions=open_positions,
        recent_signals=await signals(session, user.id),
        recent_trades=await trades(session, user.id),
        risk=await risk_settings(session, user.id),
        strategies=[
            {"name": name, "timeframe": timeframe, "signals_30d": count}
            for name, timeframe, count in strategies
        ],
        exchanges=[
            {
                "exchange": k.exchange,
                "mode": k.mode,
                "can_trade": k.can_trade,
                "valid": k.is_valid,
                "label": k.label,
            }
            for k in keys
        ],
    )
