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

This is the hot path, so it speaks SQL to asyncpg on the connection that holds the key's lock:
claiming a signal and opening its run log is one statement, finishing it another, and each
order costs one statement before and one after the exchange call.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import structlog

from app.core.events import EventPublisher, EventType, position_data, trade_data
from app.core.metrics import Metrics
from app.core.notifications import protection_notice, signal_notice
from app.core.pg import Connection, Pool
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
from app.exchanges.errors import AuthenticationFailed, ExchangeError, OrderRejected
from app.exchanges.factory import AdapterFactory, NoApiKey
from app.logging.logger import get_logger
from app.models.signal import PENDING_PREDICATE
from app.models.trade import WORKING_PREDICATE

log = get_logger("trade")
risk_log = get_logger("risk")

ENTRY, CLOSE, STOP, TAKE, UNPROTECTED_CLOSE = "e", "c", "s", "t", "x"
# Fills up to this long before a position's row was written may still be its own.
EXTERNAL_FILL_LOOKBACK = timedelta(minutes=1)


def client_order_id(signal_id: uuid.UUID, leg: str) -> str:
    """Deterministic per (signal, leg); 35 characters, inside every exchange's limit."""
    return f"jt{signal_id.hex}{leg}"


@dataclass(frozen=True)
class QueuedSignal:
    """The columns of a `trading_signals` row the executor works from."""

    id: uuid.UUID
    user_id: str
    symbol: str
    signal_type: str
    exchange: str
    strategy_id: uuid.UUID | None
    suggested_stop_loss: Decimal | None
    suggested_take_profit: Decimal | None
    leverage: int | None
    requested_quantity: Decimal | None
    requested_notional: Decimal | None
    risk_percent: Decimal | None
    created_at: datetime  # when the webhook recorded the alert

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> QueuedSignal:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["exchange"] = values["exchange"] or "paper"
        return cls(**values)


@dataclass
class Outcome:
    status: str  # executed | rejected | skipped | failed
    reason: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    risk_passed: bool | None = None
    risk_details: dict[str, Any] | None = None


@dataclass
class _Job:
    """One signal being executed: its row, the connection holding its key's lock, the exchange;
    `touched` once an order of the signal is on the exchange (placed now or by an earlier
    attempt) or one was canceled, i.e. once the database may differ from the exchange."""

    conn: Connection
    signal: QueuedSignal
    adapter: ExchangeAdapter
    touched: bool = False
    answered: bool = False  # the exchange has answered one of this attempt's orders


# --------------------------------------------------------------------------- statements
# The key's next signal. $3 names a signal to pass over (NULL: none): the one
# `_FINISH_AND_CLAIM` is finishing in the same statement, which its snapshot still shows pending.
_HEAD = f"""
    SELECT id FROM trading_signals
    WHERE user_id = $1 AND symbol = $2 AND {PENDING_PREDICATE} AND id IS DISTINCT FROM $3
    ORDER BY seq LIMIT 1
"""  # noqa: S608 - composed of constants only  # nosec B608
# The key's next signal, marked executing, with the run log that records this attempt.
_CLAIM_PARTS = f"""
    head AS ({_HEAD}),
    claimed AS (
        UPDATE trading_signals s SET status = 'executing'
        FROM head WHERE s.id = head.id
        RETURNING s.*
    ),
    run AS (
        INSERT INTO bot_execution_logs (user_id, signal_id, status, started_at)
        SELECT user_id, id, 'running', clock_timestamp() FROM claimed
        RETURNING id
    )
    SELECT claimed.*, run.id AS run_id FROM claimed, run
"""  # noqa: S608 - composed of constants only  # nosec B608
_CLAIM = f"WITH {_CLAIM_PARTS}"
# A signal's outcome and its run log, and the claim of the key's next signal, in one round trip.
_FINISH_AND_CLAIM = f"""
    WITH finished AS (
        UPDATE trading_signals
        SET status = $4, status_reason = $5, processed_at = clock_timestamp(),
            execution_result = $6
        WHERE id = $3
    ),
    logged AS (
        UPDATE bot_execution_logs
        SET status = 'completed', completed_at = clock_timestamp(), duration_ms = $8,
            risk_check_passed = $9, risk_check_details = $10, trade_executed = $11
        WHERE id = $7
    ),
    {_CLAIM_PARTS}
"""  # noqa: S608 - composed of constants only  # nosec B608
_ATTEMPT_FAILED = """
    UPDATE bot_execution_logs
    SET status = 'failed', completed_at = clock_timestamp(), duration_ms = $2,
        error_type = $3, error_message = $4, error_stack = $5
    WHERE id = $1
"""
# The reason names the last attempt's error, so that the user sees what kept failing. Only the
# signal of the doorbell that ran out ($5), and only while it is the head: once it has ended,
# the head is a later signal its deliveries say nothing about.
_FAIL_HEAD = f"""
    WITH head AS ({_HEAD})
    UPDATE trading_signals s
    SET status = 'failed', processed_at = clock_timestamp(),
        status_reason = $4 || coalesce(' (last error: ' || left((
            SELECT error_message FROM bot_execution_logs l
            WHERE l.signal_id = s.id AND l.status = 'failed'
            ORDER BY l.started_at DESC LIMIT 1), 300) || ')', '')
    FROM head WHERE s.id = head.id AND head.id = $5
    RETURNING s.id, s.signal_type, s.status_reason
"""  # noqa: S608 - composed of constants only  # nosec B608
_DEFAULT_RISK_SETTINGS = """
    INSERT INTO user_risk_settings (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING
"""
# Everything the risk checks need from the database, in one row (none until the user has risk
# settings): the settings; open positions on other symbols (a position this entry reverses is
# closed before the entry opens; the exchange's own view of the signal's symbol is added by the
# caller); today's (UTC) opening trades and realised PnL.
_RISK_INPUTS = """
    SELECT s.*,
        ARRAY(
            SELECT ROW(symbol, side, quantity, entry_price) FROM real_positions
            WHERE user_id = $1 AND exchange = $2 AND status = 'open' AND symbol <> $3
        ) AS open_positions,
        (SELECT count(*) FROM real_trades
         WHERE user_id = $1 AND NOT reduce_only AND created_at >= date_trunc('day', now(), 'UTC')
        ) AS trades_today,
        (SELECT coalesce(sum(realized_pnl), 0) FROM real_trades
         WHERE user_id = $1 AND executed_at >= date_trunc('day', now(), 'UTC')
        ) AS realized_today
    FROM user_risk_settings s WHERE s.user_id = $1
"""
_TRADE_INTENT = """
    INSERT INTO real_trades (user_id, exchange, symbol, side, order_type, reduce_only, quantity,
                             price, status, client_order_id, signal_id, strategy_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11)
    ON CONFLICT (user_id, client_order_id) DO NOTHING
"""
_RECORD_ORDER = """
    UPDATE real_trades
    SET status = $3, exchange_order_id = $4, filled_quantity = $5, avg_fill_price = $6,
        fee = $7, fee_currency = $8, realized_pnl = $9, executed_at = $10
    WHERE user_id = $1 AND client_order_id = $2
"""
_RECORD_PLACED = f"""
    WITH trade AS ({_RECORD_ORDER} RETURNING *),
    audit AS (
        INSERT INTO audit_log (user_id, action, resource_type, resource_id, new_value, success)
        VALUES ($1, 'order.create', 'trade', $2, $11, true)
    )
    SELECT * FROM trade
"""  # noqa: S608 - composed of constants only  # nosec B608
_TRADES_BY_CLIENT_ID = """
    SELECT * FROM real_trades WHERE user_id = $1 AND client_order_id = ANY($2::text[])
"""
_OPEN_TRADES = f"""
    SELECT client_order_id, status, filled_quantity FROM real_trades
    WHERE user_id = $1 AND exchange = $2 AND symbol = $3 AND {WORKING_PREDICATE}
"""  # noqa: S608 - composed of constants only  # nosec B608
_MARK_NEVER_SENT = (
    "UPDATE real_trades SET status = 'failed' WHERE user_id = $1 AND client_order_id = $2"
)
_OPEN_POSITION = """
    SELECT id, side, quantity, signal_id, opened_at FROM real_positions
    WHERE user_id = $1 AND exchange = $2 AND symbol = $3 AND status = 'open'
"""
# The orders the database knows on a symbol since a time, by either id.
_KNOWN_ORDERS = """
    SELECT client_order_id, exchange_order_id FROM real_trades
    WHERE user_id = $1 AND exchange = $2 AND symbol = $3 AND created_at >= $4
"""
# A fill the engine did not place (the exchange's website, a liquidation, another tool).
# `reduce_only` records whether it reduced the position, whatever flag the order carried.
_RECORD_EXTERNAL = """
    INSERT INTO real_trades (user_id, exchange, symbol, side, order_type, reduce_only, quantity,
                             price, status, client_order_id, exchange_order_id, filled_quantity,
                             avg_fill_price, fee, fee_currency, realized_pnl, executed_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
    ON CONFLICT (user_id, client_order_id) DO NOTHING
"""
_HAS_CLOSING_FILL = """
    SELECT EXISTS (
        SELECT 1 FROM real_trades
        WHERE user_id = $1 AND exchange = $2 AND symbol = $3 AND reduce_only
          AND position_id IS NULL AND filled_quantity > 0
    )
"""
# A position's closing trades are the reduce-only fills on its symbol since it opened.
_CLOSE_POSITION = """
    WITH closing AS (
        UPDATE real_trades SET position_id = $1
        WHERE user_id = $2 AND exchange = $3 AND symbol = $4 AND reduce_only
          AND position_id IS NULL AND filled_quantity > 0
        RETURNING realized_pnl
    )
    UPDATE real_positions
    SET status = 'closed', closed_at = clock_timestamp(), unrealized_pnl = 0,
        realized_pnl = coalesce(
            (SELECT sum(realized_pnl) FROM real_trades WHERE position_id = $1), 0)
          + coalesce((SELECT sum(realized_pnl) FROM closing), 0)
    WHERE id = $1
    RETURNING *
"""
_OPEN_NEW_POSITION = """
    INSERT INTO real_positions (user_id, exchange, symbol, side, entry_price, quantity, leverage,
                                signal_id, strategy_id, stop_loss, take_profit, current_price,
                                unrealized_pnl, margin, liquidation_price)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
    RETURNING *
"""
# Only when something changed: the row comes back (and is announced) only then.
_UPDATE_POSITION = """
    UPDATE real_positions
    SET quantity = $2, entry_price = $3, current_price = $4, unrealized_pnl = $5, margin = $6,
        liquidation_price = $7
    WHERE id = $1 AND (quantity, entry_price, current_price, unrealized_pnl, margin,
                       liquidation_price) IS DISTINCT FROM ($2, $3, $4, $5, $6, $7)
    RETURNING *
"""
# Trades of a position's opening signal belong to it (its close leg closed the previous one).
_ATTACH_TRADES = """
    UPDATE real_trades SET position_id = $1
    WHERE signal_id = $2 AND position_id IS NULL AND client_order_id NOT LIKE '%' || $3
"""


class SignalExecutor:
    def __init__(
        self,
        pool: Pool,
        adapters: AdapterFactory,
        events: EventPublisher | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.pool = pool
        self.adapters = adapters
        # What changed goes out after each commit; without a publisher, nothing is announced.
        self.events = events
        self.metrics = metrics

    # ------------------------------------------------------------------ per-key driver
    @asynccontextmanager
    async def key_lock(self, user_id: str, symbol: str) -> AsyncIterator[Connection]:
        """Hold the (user, symbol) execution lock; yields the connection that holds it."""
        key = f"exec:{user_id}:{symbol}"
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
            try:
                yield conn
            finally:
                try:
                    await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
                except BaseException:
                    # Not unlocked (cancelled, connection broken): end the session, which
                    # releases the lock, rather than pool a connection that still holds it.
                    conn.terminate()
                    raise

    async def run_key(self, user_id: str, symbol: str) -> int:
        """Execute every pending signal of (user, symbol) in arrival order; how many ran."""
        done = 0
        async with self.key_lock(user_id, symbol) as conn:
            row = await conn.fetchrow(_CLAIM, user_id, symbol, None)
            while row is not None:
                signal, run_id = QueuedSignal.from_record(row), row["run_id"]
                outcome, duration_ms = await self._execute_claimed(conn, signal, run_id)
                row = await conn.fetchrow(
                    _FINISH_AND_CLAIM,
                    user_id,
                    symbol,
                    signal.id,
                    outcome.status,
                    outcome.reason,
                    outcome.result or None,
                    run_id,
                    duration_ms,
                    outcome.risk_passed,
                    outcome.risk_details,
                    outcome.status == "executed",
                )
                log.info("signal_finished", status=outcome.status, reason=outcome.reason,
                         duration_ms=duration_ms, exchange=signal.exchange)  # fmt: skip
                if self.metrics is not None:
                    self.metrics.signals_finished.labels(outcome.status).inc()
                    self.metrics.execution_duration.labels(outcome.status).observe(
                        duration_ms / 1000
                    )
                self._announce_outcome(signal, outcome)
                done += 1
        return done

    async def fail_head(
        self, user_id: str, symbol: str, doorbell_of: uuid.UUID, reason: str
    ) -> uuid.UUID | None:
        """End the first pending signal of (user, symbol) — the one every attempt starts with
        and so the one that keeps failing — as failed; the others can then go ahead. Only when
        the head is `doorbell_of`, the signal whose doorbell ran out of deliveries; otherwise
        nothing is failed and None is returned."""
        async with self.key_lock(user_id, symbol) as conn:
            head = await conn.fetchrow(_FAIL_HEAD, user_id, symbol, None, reason, doorbell_of)
        if head is None:
            return None
        signal_id: uuid.UUID = head["id"]
        self._announce_signal(user_id, signal_id, symbol, head["signal_type"], "failed",
                              head["status_reason"], {})  # fmt: skip
        return signal_id

    # ------------------------------------------------------------------ announcements
    def _announce_outcome(self, signal: QueuedSignal, outcome: Outcome) -> None:
        self._announce_signal(signal.user_id, signal.id, signal.symbol, signal.signal_type,
                              outcome.status, outcome.reason, outcome.result)  # fmt: skip

    def _announce_signal(
        self,
        user_id: str,
        signal_id: uuid.UUID,
        symbol: str,
        signal_type: str,
        status: str,
        reason: str | None,
        result: dict[str, Any],
    ) -> None:
        if self.events is None:
            return
        self.events.emit(
            user_id,
            EventType.SIGNAL_UPDATE,
            {"id": signal_id, "symbol": symbol, "signal_type": signal_type, "status": status,
             "status_reason": reason, "execution_result": result or None},
        )  # fmt: skip
        notice = signal_notice(user_id, str(signal_id), signal_type, symbol, status, reason,
                               result, result.get("failed_check"))  # fmt: skip
        if notice is not None:
            self.events.notify(notice)

    def _announce_trades(self, user_id: str, rows: list[asyncpg.Record]) -> None:
        """trade_executed for fills, trade_update for other changes; a notice for a stop loss
        or take profit of the engine's that filled."""
        if self.events is None:
            return
        for row in rows:
            filled = row["filled_quantity"] > 0
            kind = EventType.TRADE_EXECUTED if filled else EventType.TRADE_UPDATE
            self.events.emit(user_id, kind, trade_data(dict(row)))
            leg = (row["client_order_id"] or "")[-1:]
            if (
                filled
                and row["status"] == "filled"
                and leg in (STOP, TAKE)
                and (row["client_order_id"].startswith("jt"))
            ):
                self.events.notify(protection_notice(user_id, dict(row), leg))

    def _announce_positions(self, user_id: str, rows: list[asyncpg.Record]) -> None:
        if self.events is None:
            return
        for row in rows:
            self.events.emit(user_id, EventType.POSITION_UPDATE, position_data(dict(row)))

    # ------------------------------------------------------------------ one signal
    async def _execute_claimed(
        self, conn: Connection, signal: QueuedSignal, run_id: uuid.UUID
    ) -> tuple[Outcome, int]:
        """Execute a claimed signal: its outcome and how long it took (ms). An attempt that
        raises is recorded in its run log and re-raised; the signal stays pending."""
        structlog.contextvars.bind_contextvars(
            signal_id=str(signal.id), user_id=signal.user_id, symbol=signal.symbol
        )
        clock = time.perf_counter()
        in_flight = self.metrics.in_flight if self.metrics is not None else None
        if in_flight is not None:
            in_flight.inc()
        try:
            outcome = await self._execute(conn, signal)
        except OrderRejected as exc:
            outcome = Outcome("rejected", exc.reason)
        except (NoApiKey, AuthenticationFailed) as exc:
            # Nothing a retry can fix: the user must add or repair the exchange key.
            outcome = Outcome("failed", exc.message)
        except Exception as exc:
            # Unexpected or retryable: record the attempt, leave the signal pending so the
            # queue delivers it again (and dead-letters it after MAX_DELIVERIES).
            await conn.execute(
                _ATTEMPT_FAILED,
                run_id,
                int((time.perf_counter() - clock) * 1000),
                type(exc).__name__,
                str(exc)[:2000],
                traceback.format_exc()[-8000:],
            )
            log.warning("signal_attempt_failed", error_type=type(exc).__name__)
            raise
        finally:
            if in_flight is not None:
                in_flight.dec()
        return outcome, int((time.perf_counter() - clock) * 1000)

    async def _execute(self, conn: Connection, signal: QueuedSignal) -> Outcome:
        adapter = await self.adapters.for_user(signal.user_id, signal.exchange, conn)
        job = _Job(conn, signal, adapter)
        try:
            if signal.signal_type.endswith("_exit"):
                return await self._exit(job)
            return await self._entry(job)
        except AuthenticationFailed as exc:
            await self.adapters.key_refused(adapter, exc.message)
            raise
        finally:
            try:
                if job.touched:  # also when a later leg failed: record what did happen
                    await self.sync(conn, adapter, signal.user_id, signal.exchange,
                                    signal.symbol, signal=signal)  # fmt: skip
            finally:
                await adapter.close()

    # ------------------------------------------------------------------ exits
    async def _exit(self, job: _Job) -> Outcome:
        signal, adapter = job.signal, job.adapter
        side = "long" if signal.signal_type == "long_exit" else "short"
        symbol = signal.symbol
        done = await adapter.get_order(symbol, client_order_id=client_order_id(signal.id, CLOSE))
        job.touched = done is not None
        if done is None:
            position = await adapter.get_position(symbol)
            if position is None or position.side != side:
                # If the database still shows one (its closing fill not reconciled yet), sync.
                job.touched = (
                    await job.conn.fetchrow(_OPEN_POSITION, signal.user_id, signal.exchange, symbol)
                    is not None
                )
                return Outcome("skipped", f"no open {side} position on {symbol} to exit")
            await self._cancel_protection(job)
            done = await self._place(
                job,
                CLOSE,
                OrderSide.SELL if side == "long" else OrderSide.BUY,
                position.quantity,
                reduce_only=True,
            )
        return Outcome("executed", None, {"close_order": _order_summary(done)})

    # ------------------------------------------------------------------ entries
    async def _entry(self, job: _Job) -> Outcome:
        signal, adapter = job.signal, job.adapter
        side = "long" if signal.signal_type == "long_entry" else "short"
        symbol = signal.symbol
        entry = await adapter.get_order(symbol, client_order_id=client_order_id(signal.id, ENTRY))
        job.touched = entry is not None
        if entry is None:
            # Read once: the key lock keeps it unchanged until this signal is done.
            position = await adapter.get_position(symbol)
            decided = await self._decide_entry(job, side, position)
            if isinstance(decided, Outcome):
                return decided
            quantity, leverage, risk = decided
            if position is not None and position.side != side:  # flip: close the other side
                await self._cancel_protection(job)
                await self._place(
                    job,
                    CLOSE,
                    OrderSide.SELL if position.side == "long" else OrderSide.BUY,
                    position.quantity,
                    reduce_only=True,
                )
            await adapter.set_leverage(symbol, leverage)
            entry = await self._place(
                job, ENTRY, OrderSide.BUY if side == "long" else OrderSide.SELL, quantity
            )
        else:
            risk = Outcome("executed", risk_passed=True)
        result: dict[str, Any] = {"entry_order": _order_summary(entry)}
        reason = await self._protect(job, side, entry.filled_quantity, result)
        return Outcome(
            "executed",
            reason,
            result,
            risk_passed=risk.risk_passed,
            risk_details=risk.risk_details,
        )

    async def _protect(
        self, job: _Job, side: str, filled: Decimal, result: dict[str, Any]
    ) -> str | None:
        """Place the stop loss and take profit, sized from the filled quantity.

        If the market already crossed one of them by the time the entry filled, the exchange
        refuses it; the position is then closed at once, as the order would have done.
        """
        if filled <= 0:
            return None
        signal, adapter = job.signal, job.adapter
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
                    job, leg, exit_side, filled, reduce_only=True,
                    order_type=order_type, stop_price=trigger,
                )  # fmt: skip
            except OrderRejected as exc:
                await self._cancel_protection(job)
                close = await self._place(
                    job, UNPROTECTED_CLOSE, exit_side, filled, reduce_only=True
                )
                result["close_order"] = _order_summary(close)
                log.warning("protection_refused_position_closed", leg=name, reason=exc.reason)
                return f"{name} {trigger} could not be placed ({exc.reason}); position closed"
            result[f"{name}_order"] = _order_summary(order)
        return None

    async def _decide_entry(
        self, job: _Job, side: str, position: Position | None
    ) -> Outcome | tuple[Decimal, int, Outcome]:
        """Size the entry and run the risk checks: (quantity, leverage, risk) or a refusal."""
        signal, adapter = job.signal, job.adapter
        symbol = signal.symbol
        inputs = await job.conn.fetchrow(_RISK_INPUTS, signal.user_id, signal.exchange, symbol)
        if inputs is None:  # a user who never saved risk settings gets the defaults
            await job.conn.execute(_DEFAULT_RISK_SETTINGS, signal.user_id)
            inputs = await job.conn.fetchrow(_RISK_INPUTS, signal.user_id, signal.exchange, symbol)
            assert inputs is not None
        limits = RiskLimits(**{f.name: inputs[f.name] for f in fields(RiskLimits)})
        context = await self._risk_context(job, inputs, position)
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
            self._risk_rejected("position_sizing", exc.reason)
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
            self._risk_rejected(decision.failed_check or "unknown", decision.reason)
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

    def _risk_rejected(self, check: str, reason: str | None) -> None:
        risk_log.warning("risk_rejected", check=check, reason=reason)
        if self.metrics is not None:
            self.metrics.risk_rejections.labels(check).inc()

    async def _risk_context(
        self, job: _Job, inputs: asyncpg.Record, same_symbol: Position | None
    ) -> RiskContext:
        """Risk inputs; `same_symbol` is the exchange's position on the signal's symbol."""
        signal = job.signal
        open_positions = [OpenPosition(*row) for row in inputs["open_positions"]]
        wanted = "long" if signal.signal_type == "long_entry" else "short"
        if same_symbol is not None and same_symbol.side == wanted:
            open_positions.append(
                OpenPosition(signal.symbol, same_symbol.side, same_symbol.quantity,
                             same_symbol.entry_price)
            )  # fmt: skip
        return RiskContext(
            equity=await job.adapter.get_equity(),
            open_positions=tuple(open_positions),
            trades_today=int(inputs["trades_today"]),
            realized_pnl_today=Decimal(inputs["realized_today"]),
        )

    # ------------------------------------------------------------------ orders
    async def _place(
        self,
        job: _Job,
        leg: str,
        side: OrderSide,
        quantity: Decimal,
        *,
        reduce_only: bool = False,
        order_type: OrderType = OrderType.MARKET,
        stop_price: Decimal | None = None,
    ) -> Order:
        """Record the intent, send the order (idempotent by client id), record the result."""
        signal = job.signal
        cid = client_order_id(signal.id, leg)
        await job.conn.execute(
            _TRADE_INTENT,
            signal.user_id,
            signal.exchange,
            signal.symbol,
            side.value,
            order_type.value,
            reduce_only,
            quantity,
            stop_price,
            cid,
            signal.id,
            signal.strategy_id,
        )
        job.touched = True  # even if the call fails: the order may have reached the exchange
        order = await job.adapter.create_order(
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
        if self.metrics is not None:
            self.metrics.orders.labels(signal.exchange, order.status.value).inc()
            if not job.answered:  # the alert's first order: a close or entry, never protection
                waited = (datetime.now(UTC) - signal.created_at).total_seconds()
                self.metrics.alert_to_order.labels(signal.exchange).observe(max(0.0, waited))
        job.answered = True
        row = await job.conn.fetchrow(
            _RECORD_PLACED, *_order_columns(signal.user_id, order), _order_summary(order)
        )
        if row is not None:
            self._announce_trades(signal.user_id, [row])
        log.info(
            "order_placed", leg=leg, exchange=signal.exchange, client_order_id=cid,
            order_id=order.order_id,
            type=order.type.value, side=order.side.value, status=order.status.value,
            quantity=order.quantity, filled=order.filled_quantity,
            avg_price=order.avg_fill_price, fee=order.fee, realized_pnl=order.realized_pnl,
        )  # fmt: skip
        return order

    async def _cancel_protection(self, job: _Job) -> None:
        """Cancel the resting reduce-only orders (stop loss, take profit) on the symbol."""
        symbol = job.signal.symbol
        for order in await job.adapter.get_open_orders(symbol):
            if order.reduce_only:
                job.touched = True
                await job.adapter.cancel_order(symbol, order_id=order.order_id)

    # ------------------------------------------------------------------ reconciliation
    async def sync(
        self,
        conn: Connection,
        adapter: ExchangeAdapter,
        user_id: str,
        exchange: str,
        symbol: str,
        *,
        signal: QueuedSignal | None = None,
    ) -> None:
        """Bring trades and the position of (user, exchange, symbol) in line with the exchange,
        which is the source of truth.

        - Working trades are read back by client id: fills, cancels and orders whose outcome
          was unknown are recorded; a trade never sent (the process died first) is failed.
        - With no position left, resting stops and targets are orphans that would act on the
          next position: they are canceled.
        - When the position moved in ways the engine's own orders do not show (a manual close
          on the exchange's website, a liquidation), those fills are recorded too, so the
          position closes with its real PnL; what is still unexplained is logged.

        `conn` must hold the key's lock (`key_lock`); the changes commit together."""
        # The position first: an order that fills after it was read is recorded now and its
        # position closed by the next sync, never closed without the fill that closed it.
        live = await adapter.get_position(symbol)
        recorded: list[tuple[Any, ...]] = []
        never_sent: list[tuple[str, str]] = []
        for trade in await conn.fetch(_OPEN_TRADES, user_id, exchange, symbol):
            order = await adapter.get_order(symbol, client_order_id=trade["client_order_id"])
            if order is not None and live is None and order.is_open and order.reduce_only:
                order = await _cancel_orphan(adapter, order)
            if order is not None:
                if (_trade_status(order), order.filled_quantity) != (
                    trade["status"],
                    trade["filled_quantity"],
                ):  # changed on the exchange since it was recorded
                    recorded.append(_order_columns(user_id, order))
            elif trade["status"] == "pending":
                # never reached the exchange (the process died before sending)
                never_sent.append((user_id, trade["client_order_id"]))
        db_open = await conn.fetchrow(_OPEN_POSITION, user_id, exchange, symbol)
        external: list[tuple[Any, ...]] = []
        if db_open is not None and (
            live is None or (live.side, live.quantity) != (db_open["side"], db_open["quantity"])
        ):
            external = await self._external_fills(conn, adapter, user_id, exchange, symbol, db_open)
        positions: list[asyncpg.Record] = []  # rows of positions that changed
        async with conn.transaction():
            if recorded:
                await conn.executemany(_RECORD_ORDER, recorded)
            if never_sent:
                await conn.executemany(_MARK_NEVER_SENT, never_sent)
            if external:
                await conn.executemany(_RECORD_EXTERNAL, external)
            if db_open is not None and (live is None or live.side != db_open["side"]):
                if not await conn.fetchval(_HAS_CLOSING_FILL, user_id, exchange, symbol):
                    log.warning("position_unexplained", exchange=exchange, symbol=symbol,
                                position_id=str(db_open["id"]), db_side=db_open["side"],
                                db_quantity=db_open["quantity"], detail="closed without a fill"
                                " on record")  # fmt: skip
                closed = await conn.fetchrow(
                    _CLOSE_POSITION, db_open["id"], user_id, exchange, symbol
                )
                if closed is not None:
                    positions.append(closed)
                db_open = None
            if live is not None:
                changes = await self._record_live_position(
                    conn, user_id, exchange, symbol, live, db_open, signal
                )
                positions.extend(changes)
        changed = [row[1] for row in recorded] + [row[9] for row in external]
        if changed and self.events is not None:
            self._announce_trades(user_id, await conn.fetch(_TRADES_BY_CLIENT_ID, user_id, changed))
        self._announce_positions(user_id, [row for row in positions if row is not None])

    async def _record_live_position(
        self,
        conn: Connection,
        user_id: str,
        exchange: str,
        symbol: str,
        live: Position,
        db_open: asyncpg.Record | None,
        signal: QueuedSignal | None,
    ) -> list[asyncpg.Record]:
        """Open or update the database position from the exchange's; the rows that changed."""
        if db_open is None:
            if signal is None:
                log.warning("position_unexplained", exchange=exchange, symbol=symbol,
                            side=live.side, quantity=live.quantity,
                            detail="opened on the exchange, not by a signal")  # fmt: skip
            row = await conn.fetchrow(
                _OPEN_NEW_POSITION,
                user_id,
                exchange,
                symbol,
                live.side,
                live.entry_price,
                live.quantity,
                live.leverage,
                signal.id if signal else None,
                signal.strategy_id if signal else None,
                signal.suggested_stop_loss if signal else None,
                signal.suggested_take_profit if signal else None,
                live.mark_price,
                live.unrealized_pnl,
                live.margin,
                live.liquidation_price,
            )
            assert row is not None
            position_id, signal_id = row["id"], row["signal_id"]
        else:
            row = await conn.fetchrow(
                _UPDATE_POSITION,
                db_open["id"],
                live.quantity,
                live.entry_price,
                live.mark_price,
                live.unrealized_pnl,
                live.margin,
                live.liquidation_price,
            )
            position_id, signal_id = db_open["id"], db_open["signal_id"]
        if signal_id is not None:
            await conn.execute(_ATTACH_TRADES, position_id, signal_id, CLOSE)
        return [row] if row is not None else []

    async def _external_fills(
        self,
        conn: Connection,
        adapter: ExchangeAdapter,
        user_id: str,
        exchange: str,
        symbol: str,
        db_open: asyncpg.Record,
    ) -> list[tuple[Any, ...]]:
        """`_RECORD_EXTERNAL` rows for the fills on `symbol` since the position opened that
        are not the engine's orders."""
        since = db_open["opened_at"] - EXTERNAL_FILL_LOOKBACK
        fills = await adapter.get_filled_orders(symbol, since)
        if not fills:
            return []
        known = await conn.fetch(_KNOWN_ORDERS, user_id, exchange, symbol, since)
        known_ids = {row["client_order_id"] for row in known}
        known_ids |= {row["exchange_order_id"] for row in known}
        reducing_side = OrderSide.SELL if db_open["side"] == "long" else OrderSide.BUY
        rows = []
        for order in fills:
            if order.client_order_id in known_ids or order.order_id in known_ids:
                continue
            reduces = order.side == reducing_side
            log.info("external_fill_recorded", symbol=symbol, order_id=order.order_id,
                     client_order_id=order.client_order_id, side=order.side.value,
                     filled=order.filled_quantity, avg_price=order.avg_fill_price,
                     realized_pnl=order.realized_pnl, reduces=reduces)  # fmt: skip
            rows.append(
                (
                    user_id,
                    exchange,
                    symbol,
                    order.side.value,
                    order.type.value,
                    reduces,
                    order.quantity if order.quantity > 0 else order.filled_quantity,
                    order.price,
                    _trade_status(order),
                    (order.client_order_id or f"x-{order.order_id}")[:64],
                    order.order_id,
                    order.filled_quantity,
                    order.avg_fill_price,
                    order.fee,
                    order.fee_currency,
                    order.realized_pnl,
                    order.updated_at,
                )
            )
        return rows


async def _cancel_orphan(adapter: ExchangeAdapter, order: Order) -> Order:
    """Cancel a resting reduce-only order whose position is gone; the order as it is after
    (unchanged when the exchange could not be asked: the next sync tries again)."""
    try:
        canceled = await adapter.cancel_order(order.symbol, order_id=order.order_id)
    except ExchangeError as exc:  # gone meanwhile, or the exchange cannot answer now
        log.warning("orphan_cancel_failed", order_id=order.order_id, error_code=exc.code)
        return order
    log.info("orphan_order_canceled", order_id=order.order_id,
             client_order_id=order.client_order_id, type=order.type.value)  # fmt: skip
    return canceled


def _order_columns(user_id: str, order: Order) -> tuple[Any, ...]:
    """The `_RECORD_ORDER` parameters for `order`."""
    filled = order.filled_quantity > 0
    return (
        user_id,
        order.client_order_id,
        _trade_status(order),
        order.order_id,
        order.filled_quantity,
        order.avg_fill_price,
        order.fee,
        order.fee_currency,
        order.realized_pnl if filled else None,
        order.updated_at if filled else None,
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
