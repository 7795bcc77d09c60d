"""Reconciliation of live exchange accounts with the database, at startup and periodically.

The exchange is the source of truth. For every active, valid API key, every symbol where
either side shows something — an open position or a working order on the exchange, an open
position or a working trade in the database — is brought in line by the executor's `sync`
under that (user, symbol)'s execution lock, so it never races a signal being executed:

- orders whose state changed while nobody watched (a stop loss or take profit that triggered,
  a partial fill, an order in the unknown state after a lost answer) are recorded with their
  fills, fee and realised PnL;
- a position the exchange no longer has is closed with the realised PnL of its closing fills;
  one the exchange has and the database does not is recorded;
- what cannot be explained is logged (`position_unexplained`) for an operator to look at.

One account failing (key revoked, exchange down) is logged and does not stop the others. Of all
the engine's processes, one reconciles per interval (a Redis key marks the round's leader).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.pg import Pool
from app.exchanges.errors import AuthenticationFailed, ExchangeError
from app.exchanges.factory import AdapterFactory
from app.logging.logger import get_logger
from app.models.trade import WORKING_PREDICATE
from app.workers.trade_executor import SignalExecutor

log = get_logger("syncer")

LEADER_KEY = "jadetrade:position_syncer:round"

_ACCOUNTS = """
    SELECT user_id, exchange FROM exchange_api_keys WHERE is_active AND is_valid
    ORDER BY user_id, exchange
"""
_DB_SYMBOLS = f"""
    SELECT symbol FROM real_positions WHERE user_id = $1 AND exchange = $2 AND status = 'open'
    UNION
    SELECT symbol FROM real_trades WHERE user_id = $1 AND exchange = $2 AND {WORKING_PREDICATE}
"""  # noqa: S608 - composed of constants only  # nosec B608


@dataclass
class SyncReport:
    accounts: int = 0
    symbols: int = 0
    failed: list[str] = field(default_factory=list)  # "user/exchange: reason"


async def sync_account(
    executor: SignalExecutor, adapters: AdapterFactory, user_id: str, exchange: str
) -> int:
    """Reconcile one user's account on one exchange; how many symbols were looked at."""
    pool = adapters.pool
    adapter = await adapters.for_user(user_id, exchange)
    try:
        live = {p.symbol for p in await adapter.get_positions()}
        live |= {o.symbol for o in await adapter.get_open_orders()}
        stored = {row["symbol"] for row in await pool.fetch(_DB_SYMBOLS, user_id, exchange)}
        for symbol in sorted(live | stored):
            async with executor.key_lock(user_id, symbol) as conn:
                await executor.sync(conn, adapter, user_id, exchange, symbol)
        return len(live | stored)
    except AuthenticationFailed as exc:
        await adapters.key_refused(adapter, exc.message)
        raise
    finally:
        await adapter.close()


async def sync_all(executor: SignalExecutor, adapters: AdapterFactory, pool: Pool) -> SyncReport:
    report = SyncReport()
    for row in await pool.fetch(_ACCOUNTS):
        user_id, exchange = row["user_id"], row["exchange"]
        report.accounts += 1
        try:
            report.symbols += await sync_account(executor, adapters, user_id, exchange)
        except ExchangeError as exc:
            report.failed.append(f"{user_id}/{exchange}: {exc.code}")
            log.warning("account_sync_failed", user_id=user_id, exchange=exchange,
                        error_code=exc.code, error=exc.message[:300])  # fmt: skip
    return report


async def leads_round(redis: Redis, interval_s: float) -> bool:
    """Whether this process reconciles this round: one process of all the engine's (API
    replicas and workers) does, so that accounts are not asked N times per interval. With
    Redis unreachable every process does: a duplicate round is harmless, a missed one is not."""
    try:
        taken = await redis.set(LEADER_KEY, "1", nx=True, px=max(1, int(interval_s * 900)))
    except RedisError as exc:
        log.warning("position_sync_leader_unknown", error_type=type(exc).__name__)
        return True
    return bool(taken)


async def run_position_syncer(
    executor: SignalExecutor,
    adapters: AdapterFactory,
    pool: Pool,
    interval_s: float,
    redis: Redis | None = None,
) -> None:
    """Reconcile now (startup), then every `interval_s`; with `redis`, only in the process
    that leads the round."""
    while True:
        try:
            if redis is None or await leads_round(redis, interval_s):
                report = await sync_all(executor, adapters, pool)
                if report.accounts:
                    log.info("accounts_synced", accounts=report.accounts,
                             symbols=report.symbols, failed=len(report.failed))  # fmt: skip
        except Exception as exc:  # the next round tries again
            log.warning("position_sync_failed", error_type=type(exc).__name__)
        await asyncio.sleep(interval_s)
