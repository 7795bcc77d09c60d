"""Signal execution: from a queued signal to orders, trades and positions — exactly once.

For each (user, symbol) one executor at a time holds a PostgreSQL advisory lock (released by
the server if the process dies) and executes that key's pending signals in arrival order.

Exactly once, across crashes: every order has a client order id derived from (signal, leg);
its trade row is written *before* the order is sent, and the exchange treats a repeated
client id as the same order. A signal that was interrupted is simply executed again: legs
already on the exchange are found by their client id and not placed twice, and the database
positions are then reconciled from the exchange, which is the source of truth.

Legs: `e` entry, `c` close (exit, or the first half of a flip), `s` stop loss, `t` take profit,
`x` immediate close of an entry whose stop loss or take profit the market had already crossed.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import Select, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.position_sizing import SizingError, SizingRequest, size_position
from app.core.risk_manager import EntryRequest, OpenPosition, RiskContext, RiskLimits, check_entry
from app.exchanges.base import (
    ExchangeAdapter,
    Order,
    OrderRequest,
    OrderSide,
    OrderType,
    Position,
)
from app.exchanges.errors import OrderRejected
from app.exchanges.factory import AdapterFactory
from app.logging.logger import get_logger
from app.models import (
    AuditLog,
    BotExecutionLog,
    RealPosition,
    RealTrade,
    TradingSignal,
    UserRiskSettings,
)
from app.models.signal import PENDING_PREDICATE

log = get_logger("trade")

ENTRY, CLOSE, STOP, TAKE, UNPROTECTED_CLOSE = "e", "c", "s", "t", "x"


def client_order_id(signal_id: uuid.UUID, leg: str) -> str:
    """Deterministic per (signal, leg); 35 characters, inside every exchange's limit."""
    return f"jt{signal_id.hex}{leg}"


@dataclass
class Outcome:
    status: str  # executed | rejected | skipped | failed
    reason: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    risk_passed: bool | None = None
    risk_details: dict[str, Any] | None = None


class SignalExecutor:
    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        adapters: AdapterFactory,
    ) -> None:
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.adapters = adapters

    # ------------------------------------------------------------------ per-key driver
    @asynccontextmanager
    async def key_lock(self, user_id: str, symbol: str) -> AsyncIterator[None]:
        """Hold the (user, symbol) execution lock on a connection of its own."""
        key = f"exec:{user_id}:{symbol}"
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(hashtextextended(:k, 0))"), {"k": key})
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(
                    text("SELECT pg_advisory_unlock(hashtextextended(:k, 0))"), {"k": key}
                )
                await conn.commit()

    async def run_key(self, user_id: str, symbol: str) -> int:
        """Execute every pending signal of (user, symbol) in arrival order; how many ran."""
        done = 0
        async with self.key_lock(user_id, symbol):
            while True:
                async with self.sessionmaker() as session:
                    signal: TradingSignal | None = await session.scalar(
                        _head_of_line(TradingSignal, user_id, symbol)
                    )
                if signal is None:
                    return done
                await self.execute(signal)
                done += 1

    async def fail_head(self, user_id: str, symbol: str, reason: str) -> uuid.UUID | None:
        """End the first pending signal of (user, symbol) — the one every attempt starts with
        and so the one that keeps failing — as failed; the others can then go ahead."""
        async with self.key_lock(user_id, symbol), self.sessionmaker() as session:
            head: uuid.UUID | None = await session.scalar(
                _head_of_line(TradingSignal.id, user_id, symbol)
            )
            if head is not None:
                await session.execute(
                    update(TradingSignal)
                    .where(TradingSignal.id == head)
                    .values(status="failed", status_reason=reason, processed_at=func.now())
                )
                await session.commit()
            return head

    # ------------------------------------------------------------------ one signal
    async def execute(self, signal: TradingSignal) -> Outcome:
        structlog.contextvars.bind_contextvars(
            signal_id=str(signal.id), user_id=signal.user_id, symbol=signal.symbol
        )
        started = datetime.now(UTC)
        clock = time.perf_counter()
        async with self.sessionmaker() as session:
            await session.execute(
                update(TradingSignal)
                .where(TradingSignal.id == signal.id)
                .values(status="executing")
            )
            run = BotExecutionLog(
                user_id=signal.user_id, signal_id=signal.id, status="running", started_at=started
            )
            session.add(run)
            await session.commit()
            run_id = run.id
        error_type = error_message = error_stack = None
        try:
            outcome = await self._execute(signal)
        except OrderRejected as exc:
            outcome = Outcome("rejected", exc.reason)
        except Exception as exc:
            # Unexpected or retryable: record the attempt, leave the signal pending so the
            # queue delivers it again (and dead-letters it after MAX_DELIVERIES).
            async with self.sessionmaker() as session:
                await session.execute(
                    update(BotExecutionLog)
                    .where(BotExecutionLog.id == run_id)
                    .values(
                        status="failed",
                        completed_at=func.now(),
                        duration_ms=int((time.perf_counter() - clock) * 1000),
                        error_type=type(exc).__name__,
                        error_message=str(exc)[:2000],
                        error_stack=traceback.format_exc()[-8000:],
                    )
                )
                await session.commit()
            log.warning("signal_attempt_failed", error_type=type(exc).__name__)
            raise
        duration_ms = int((time.perf_counter() - clock) * 1000)
        async with self.sessionmaker() as session:
            await session.execute(
                update(TradingSignal)
                .where(TradingSignal.id == signal.id)
                .values(
                    status=outcome.status,
                    status_reason=outcome.reason,
                    processed_at=func.now(),
                    execution_result=outcome.result or None,
                )
            )
            await session.execute(
                update(BotExecutionLog)
                .where(BotExecutionLog.id == run_id)
                .values(
                    status="completed",
                    completed_at=func.now(),
                    duration_ms=duration_ms,
                    risk_check_passed=outcome.risk_passed,
                    risk_check_details=outcome.risk_details,
                    trade_executed=outcome.status == "executed",
                    error_type=error_type,
                    error_message=error_message,
                    error_stack=error_stack,
                )
            )
            await session.commit()
        log.info(
            "signal_finished", status=outcome.status, reason=outcome.reason, duration_ms=duration_ms
        )
        return outcome

    async def _execute(self, signal: TradingSignal) -> Outcome:
        exchange = signal.exchange or "paper"
        adapter = await self.adapters.for_user(signal.user_id, exchange)
        try:
            if signal.signal_type.endswith("_exit"):
                outcome = await self._exit(adapter, signal)
            else:
                outcome = await self._entry(adapter, signal)
            await self.sync(adapter, signal.user_id, exchange, signal.symbol, signal=signal)
            return outcome
        finally:
            await adapter.close()

    # ------------------------------------------------------------------ exits
    async def _exit(self, adapter: ExchangeAdapter, signal: TradingSignal) -> Outcome:
        side = "long" if signal.signal_type == "long_exit" else "short"
        symbol = signal.symbol
        done = await adapter.get_order(symbol, client_order_id=client_order_id(signal.id, CLOSE))
        if done is None:
            position = await adapter.get_position(symbol)
            if position is None or position.side != side:
                return Outcome("skipped", f"no open {side} position on {symbol} to exit")
            await self._cancel_protection(adapter, signal.user_id, symbol)
            done = await self._place(
                adapter,
                signal,
                CLOSE,
                OrderSide.SELL if side == "long" else OrderSide.BUY,
                position.quantity,
                reduce_only=True,
            )
        return Outcome("executed", None, {"close_order": _order_summary(done)})

    # ------------------------------------------------------------------ entries
    async def _entry(self, adapter: ExchangeAdapter, signal: TradingSignal) -> Outcome:
        side = "long" if signal.signal_type == "long_entry" else "short"
        symbol = signal.symbol
        entry = await adapter.get_order(symbol, client_order_id=client_order_id(signal.id, ENTRY))
        if entry is None:
            # Read once: the key lock keeps it unchanged until this signal is done.
            position = await adapter.get_position(symbol)
            decided = await self._decide_entry(adapter, signal, side, position)
            if isinstance(decided, Outcome):
                return decided
            quantity, leverage, risk = decided
            if position is not None and position.side != side:  # flip: close the other side
                await self._cancel_protection(adapter, signal.user_id, symbol)
                await self._place(
                    adapter,
                    signal,
                    CLOSE,
                    OrderSide.SELL if position.side == "long" else OrderSide.BUY,
                    position.quantity,
                    reduce_only=True,
                )
            await adapter.set_leverage(symbol, leverage)
            entry = await self._place(
                adapter,
                signal,
                ENTRY,
                OrderSide.BUY if side == "long" else OrderSide.SELL,
                quantity,
            )
        else:
            risk = Outcome("executed", risk_passed=True)
        result: dict[str, Any] = {"entry_order": _order_summary(entry)}
        reason = await self._protect(adapter, signal, side, entry.filled_quantity, result)
        return Outcome(
            "executed",
            reason,
            result,
            risk_passed=risk.risk_passed,
            risk_details=risk.risk_details,
        )

    async def _protect(
        self,
        adapter: ExchangeAdapter,
        signal: TradingSignal,
        side: str,
        filled: Decimal,
        result: dict[str, Any],
    ) -> str | None:
        """Place the stop loss and take profit, sized from the filled quantity.

        If the market already crossed one of them by the time the entry filled, the exchange
        refuses it; the position is then closed at once, as the order would have done.
        """
        if filled <= 0:
            return None
        exit_side = OrderSide.SELL if side == "long" else OrderSide.BUY
        market = await adapter.market(signal.symbol)
        # Onto the exchange's tick, towards the entry: the stop never risks more than was sized
        # and the target is never further than asked.
        stop_to_tick = market.ceil_price if side == "long" else market.floor_price
        target_to_tick = market.floor_price if side == "long" else market.ceil_price
        stop, take = signal.suggested_stop_loss, signal.suggested_take_profit
        legs = (
            (STOP, "stop_loss", OrderType.STOP_MARKET,
             None if stop is None else stop_to_tick(stop)),
            (TAKE, "take_profit", OrderType.TAKE_PROFIT_MARKET,
             None if take is None else target_to_tick(take)),
        )  # fmt: skip
        for leg, name, order_type, trigger in legs:
            if trigger is None:
                continue
            try:
                order = await self._place(
                    adapter, signal, leg, exit_side, filled, reduce_only=True,
                    order_type=order_type, stop_price=trigger,
                )  # fmt: skip
            except OrderRejected as exc:
                await self._cancel_protection(adapter, signal.user_id, signal.symbol)
                close = await self._place(
                    adapter, signal, UNPROTECTED_CLOSE, exit_side, filled, reduce_only=True
                )
                result["close_order"] = _order_summary(close)
                log.warning("protection_refused_position_closed", leg=name, reason=exc.reason)
                return f"{name} {trigger} could not be placed ({exc.reason}); position closed"
            result[f"{name}_order"] = _order_summary(order)
        return None

    async def _decide_entry(
        self,
        adapter: ExchangeAdapter,
        signal: TradingSignal,
        side: str,
        position: Position | None,
    ) -> Outcome | tuple[Decimal, int, Outcome]:
        """Size the entry and run the risk checks: (quantity, leverage, risk) or a refusal."""
        symbol = signal.symbol
        async with self.sessionmaker() as session:
            limits_row = await session.scalar(
                select(UserRiskSettings).where(UserRiskSettings.user_id == signal.user_id)
            )
            if limits_row is None:
                limits_row = UserRiskSettings(user_id=signal.user_id)
                session.add(limits_row)
                await session.commit()
            context = await self._risk_context(session, signal, adapter, position)
        limits = RiskLimits.from_row(limits_row)
        market = await adapter.market(symbol)
        # Size from the market price now, not the alert's (which may be a bar close ago).
        price = await adapter.get_ticker_price(symbol)
        leverage = signal.leverage or 1
        try:
            sizing = size_position(
                SizingRequest(
                    side=side,
                    base_asset=market.base,
                    equity=context.equity,
                    entry_price=price,
                    stop_loss=signal.suggested_stop_loss,
                    qty=signal.requested_quantity,
                    notional_usd=signal.requested_notional,
                    risk_percent=signal.risk_percent,
                    default_risk_percent=limits.default_risk_per_trade_percent,
                    max_position_size_usd=limits.max_position_size_usd,
                    leverage=leverage,
                    amount_step=market.amount_step,
                    min_amount=market.min_amount,
                    min_notional=market.min_notional,
                )
            )
        except SizingError as exc:
            return Outcome("rejected", exc.reason, {"sizing_error": exc.code})
        decision = check_entry(
            EntryRequest(
                symbol=symbol,
                side=side,
                quantity=sizing.quantity,
                entry_price=price,
                leverage=leverage,
                stop_loss=signal.suggested_stop_loss,
            ),
            limits,
            context,
        )
        details = {"checks": decision.checks, **decision.details}
        if not decision.passed:
            return Outcome(
                "rejected",
                decision.reason,
                {"failed_check": decision.failed_check},
                risk_passed=False,
                risk_details=details,
            )
        return (
            sizing.quantity,
            leverage,
            Outcome("executed", risk_passed=True, risk_details=details),
        )

    async def _risk_context(
        self,
        session: AsyncSession,
        signal: TradingSignal,
        adapter: ExchangeAdapter,
        same_symbol: Position | None,
    ) -> RiskContext:
        """Risk inputs; `same_symbol` is the exchange's position on the signal's symbol."""
        exchange = signal.exchange or "paper"
        today = func.date_trunc("day", func.timezone("UTC", func.now()))
        positions = (
            await session.scalars(
                select(RealPosition).where(
                    RealPosition.user_id == signal.user_id,
                    RealPosition.exchange == exchange,
                    RealPosition.status == "open",
                    # a position this entry reverses is closed before the entry opens
                    RealPosition.symbol != signal.symbol,
                )
            )
        ).all()
        open_positions = [
            OpenPosition(p.symbol, p.side, p.quantity, p.entry_price) for p in positions
        ]
        wanted = "long" if signal.signal_type == "long_entry" else "short"
        if same_symbol is not None and same_symbol.side == wanted:
            open_positions.append(
                OpenPosition(signal.symbol, same_symbol.side, same_symbol.quantity,
                             same_symbol.entry_price)
            )  # fmt: skip
        trades_today = await session.scalar(
            select(func.count())
            .select_from(RealTrade)
            .where(
                RealTrade.user_id == signal.user_id,
                RealTrade.reduce_only.is_(False),
                func.timezone("UTC", RealTrade.created_at) >= today,
            )
        )
        realized_today = await session.scalar(
            select(func.coalesce(func.sum(RealTrade.realized_pnl), 0)).where(
                RealTrade.user_id == signal.user_id,
                func.timezone("UTC", RealTrade.executed_at) >= today,
            )
        )
        return RiskContext(
            equity=await adapter.get_equity(),
            open_positions=tuple(open_positions),
            trades_today=int(trades_today or 0),
            realized_pnl_today=Decimal(realized_today or 0),
        )

    # ------------------------------------------------------------------ orders
    async def _place(
        self,
        adapter: ExchangeAdapter,
        signal: TradingSignal,
        leg: str,
        side: OrderSide,
        quantity: Decimal,
        *,
        reduce_only: bool = False,
        order_type: OrderType = OrderType.MARKET,
        stop_price: Decimal | None = None,
    ) -> Order:
        """Record the intent, send the order (idempotent by client id), record the result."""
        cid = client_order_id(signal.id, leg)
        exchange = signal.exchange or "paper"
        async with self.sessionmaker() as session:
            await session.execute(
                insert(RealTrade)
                .values(
                    user_id=signal.user_id,
                    exchange=exchange,
                    symbol=signal.symbol,
                    side=side.value,
                    order_type=order_type.value,
                    reduce_only=reduce_only,
                    quantity=quantity,
                    price=stop_price,
                    status="pending",
                    client_order_id=cid,
                    signal_id=signal.id,
                    strategy_id=signal.strategy_id,
                )
                .on_conflict_do_nothing(index_elements=["user_id", "client_order_id"])
            )
            await session.commit()
        order = await adapter.create_order(
            OrderRequest(
                symbol=signal.symbol,
                side=side,
                type=order_type,
                quantity=quantity,
                client_order_id=cid,
                stop_price=stop_price,
                reduce_only=reduce_only,
            )
        )
        async with self.sessionmaker() as session:
            await self._record_order(session, signal.user_id, order)
            session.add(
                AuditLog(
                    user_id=signal.user_id,
                    action="order.create",
                    resource_type="trade",
                    resource_id=cid,
                    new_value=_order_summary(order),
                    success=True,
                )
            )
            await session.commit()
        log.info(
            "order_placed", leg=leg, client_order_id=cid, status=order.status.value,
            filled=order.filled_quantity, avg_price=order.avg_fill_price,
        )  # fmt: skip
        return order

    async def _record_order(self, session: AsyncSession, user_id: str, order: Order) -> None:
        await session.execute(
            update(RealTrade)
            .where(RealTrade.user_id == user_id, RealTrade.client_order_id == order.client_order_id)
            .values(
                status=_trade_status(order),
                exchange_order_id=order.order_id,
                filled_quantity=order.filled_quantity,
                avg_fill_price=order.avg_fill_price,
                fee=order.fee,
                fee_currency=order.fee_currency,
                realized_pnl=order.realized_pnl if order.filled_quantity > 0 else None,
                executed_at=order.updated_at if order.filled_quantity > 0 else None,
            )
        )

    async def _cancel_protection(self, adapter: ExchangeAdapter, user_id: str, symbol: str) -> None:
        """Cancel the resting reduce-only orders (stop loss, take profit) on `symbol`."""
        for order in await adapter.get_open_orders(symbol):
            if order.reduce_only:
                await adapter.cancel_order(symbol, order_id=order.order_id)

    # ------------------------------------------------------------------ reconciliation
    async def sync(
        self,
        adapter: ExchangeAdapter,
        user_id: str,
        exchange: str,
        symbol: str,
        *,
        signal: TradingSignal | None = None,
    ) -> None:
        """Bring trades and the position of (user, exchange, symbol) in line with the exchange."""
        async with self.sessionmaker() as session:
            open_trades = (
                await session.scalars(
                    select(RealTrade).where(
                        RealTrade.user_id == user_id,
                        RealTrade.exchange == exchange,
                        RealTrade.symbol == symbol,
                        RealTrade.status.in_(("pending", "open", "partially_filled", "unknown")),
                    )
                )
            ).all()
            for trade in open_trades:
                order = await adapter.get_order(symbol, client_order_id=trade.client_order_id)
                if order is not None:
                    await self._record_order(session, user_id, order)
                elif trade.status == "pending":
                    # never reached the exchange (the process died before sending)
                    trade.status = "failed"
            db_open = await session.scalar(
                select(RealPosition).where(
                    RealPosition.user_id == user_id,
                    RealPosition.exchange == exchange,
                    RealPosition.symbol == symbol,
                    RealPosition.status == "open",
                )
            )
            live = await adapter.get_position(symbol)
            if db_open is not None and (live is None or live.side != db_open.side):
                await self._close_position(session, db_open)
                db_open = None
            if live is not None:
                if db_open is None:
                    db_open = RealPosition(
                        user_id=user_id,
                        exchange=exchange,
                        symbol=symbol,
                        side=live.side,
                        entry_price=live.entry_price,
                        quantity=live.quantity,
                        leverage=live.leverage,
                        signal_id=signal.id if signal else None,
                        strategy_id=signal.strategy_id if signal else None,
                        stop_loss=signal.suggested_stop_loss if signal else None,
                        take_profit=signal.suggested_take_profit if signal else None,
                    )
                    session.add(db_open)
                    await session.flush()
                db_open.quantity = live.quantity
                db_open.entry_price = live.entry_price
                db_open.current_price = live.mark_price
                db_open.unrealized_pnl = live.unrealized_pnl
                db_open.margin = live.margin
                db_open.liquidation_price = live.liquidation_price
                # trades of this position's opening signal belong to it
                if db_open.signal_id is not None:
                    await session.execute(
                        update(RealTrade)
                        .where(
                            RealTrade.signal_id == db_open.signal_id,
                            RealTrade.position_id.is_(None),
                            RealTrade.client_order_id.notlike("%" + CLOSE),
                        )
                        .values(position_id=db_open.id)
                    )
            await session.commit()

    async def _close_position(self, session: AsyncSession, position: RealPosition) -> None:
        """Mark `position` closed; its closing trades are the reduce-only fills since it opened."""
        await session.execute(
            update(RealTrade)
            .where(
                RealTrade.user_id == position.user_id,
                RealTrade.exchange == position.exchange,
                RealTrade.symbol == position.symbol,
                RealTrade.reduce_only.is_(True),
                RealTrade.position_id.is_(None),
                RealTrade.filled_quantity > 0,
            )
            .values(position_id=position.id)
        )
        realized = await session.scalar(
            select(func.coalesce(func.sum(RealTrade.realized_pnl), 0)).where(
                RealTrade.position_id == position.id
            )
        )
        position.status = "closed"
        position.closed_at = datetime.now(UTC)
        position.realized_pnl = Decimal(realized or 0)
        position.unrealized_pnl = Decimal(0)


def _head_of_line(what: Any, user_id: str, symbol: str) -> Select[Any]:
    """The earliest pending signal of (user, symbol): the next one to execute."""
    return (
        select(what)
        .where(
            TradingSignal.user_id == user_id,
            TradingSignal.symbol == symbol,
            text("trading_signals." + PENDING_PREDICATE),
        )
        .order_by(TradingSignal.seq)
        .limit(1)
    )


def _trade_status(order: Order) -> str:
    return {
        "open": "open",
        "filled": "filled",
        "partially_filled": "partially_filled",
        "canceled": "canceled",
        "rejected": "failed",
    }[order.status.value]


def _order_summary(order: Order) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id,
        "order_id": order.order_id,
        "side": order.side.value,
        "type": order.type.value,
        "status": order.status.value,
        "quantity": str(order.quantity),
        "filled_quantity": str(order.filled_quantity),
        "avg_fill_price": None if order.avg_fill_price is None else str(order.avg_fill_price),
        "stop_price": None if order.stop_price is None else str(order.stop_price),
        "fee": str(order.fee),
        "realized_pnl": str(order.realized_pnl),
    }
