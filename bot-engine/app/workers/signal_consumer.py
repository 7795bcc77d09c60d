"""The queue consumer: reads signal doorbells, runs the executor per (user, symbol), and
acknowledges only after the work is committed.

Doorbells of one (user, symbol) are handled together (the executor takes them in arrival
order under a lock); different keys run concurrently up to `concurrency`. A doorbell whose
execution raised stays unacknowledged and comes back through XAUTOCLAIM; after
`max_deliveries` its signal ends `failed` and the doorbell goes to the dead-letter stream.
Also here: the sweeper, which re-enqueues committed signals that never reached the queue or
whose worker died.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.logging.logger import get_logger
from app.models import TradingSignal
from app.models.signal import PENDING_PREDICATE
from app.workers import queue
from app.workers.trade_executor import SignalExecutor

log = get_logger("worker")

RECLAIM_IDLE_MS = 30_000
SWEEP_INTERVAL_S = 5.0
SWEEP_MIN_AGE_S = 5
SWEEP_LOCK = "jadetrade:sweeper"


class SignalConsumer:
    def __init__(
        self,
        redis: Redis,
        executor: SignalExecutor,
        *,
        consumer_name: str,
        concurrency: int = 4,
        max_deliveries: int = 5,
        block_ms: int = 1000,
        reclaim_idle_ms: int = RECLAIM_IDLE_MS,
    ) -> None:
        self.redis = redis
        self.executor = executor
        self.name = consumer_name
        self.concurrency = concurrency
        self.max_deliveries = max_deliveries
        self.block_ms = block_ms
        self.reclaim_idle_ms = reclaim_idle_ms

    async def run(self) -> None:
        await queue.ensure_group(self.redis)
        while True:
            try:
                bells = await queue.reclaim(self.redis, self.name, min_idle_ms=self.reclaim_idle_ms)
                bells += await queue.read(
                    self.redis, self.name, count=self.concurrency * 8, block_ms=self.block_ms
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # Redis lost the stream (restarted without persistence, or flushed): recreate
                # the group; the sweeper re-rings whatever was pending.
                log.warning("queue_group_recreated")
                await queue.ensure_group(self.redis)
                continue
            except RedisError as exc:
                log.warning("queue_unavailable", error_type=type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            if bells:
                await self.handle(bells)

    async def handle(self, bells: list[queue.Doorbell]) -> None:
        by_key: dict[tuple[str, str], list[queue.Doorbell]] = defaultdict(list)
        for bell in bells:
            by_key[(bell.user_id, bell.symbol)].append(bell)
        limit = asyncio.Semaphore(self.concurrency)

        async def one_key(key: tuple[str, str], group: list[queue.Doorbell]) -> None:
            async with limit:
                await self._run_key(key, group)

        await asyncio.gather(*(one_key(k, g) for k, g in by_key.items()))

    async def _run_key(self, key: tuple[str, str], group: list[queue.Doorbell]) -> None:
        user_id, symbol = key
        exhausted = [b for b in group if b.deliveries > self.max_deliveries]
        for bell in exhausted:
            failed = await self.executor.fail_head(
                user_id, symbol, f"execution failed {bell.deliveries - 1} times; gave up"
            )
            await queue.dead_letter(self.redis, bell, "too many deliveries")
            log.error("signal_dead_lettered", signal_id=str(failed) if failed else None)
        live = [b for b in group if b.deliveries <= self.max_deliveries]
        if not live:
            return
        try:
            await self.executor.run_key(user_id, symbol)
        except Exception:
            log.exception("execution_attempt_failed", user_id=user_id, symbol=symbol)
            return  # unacknowledged: redelivered after RECLAIM_IDLE_MS
        await queue.ack(self.redis, *(b.message_id for b in live))


async def sweep_once(redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """One doorbell per (user, symbol) that has signals pending for over SWEEP_MIN_AGE_S (the
    executor takes all of a key's pending signals at once); how many doorbells were sent."""
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(TradingSignal.id, TradingSignal.user_id, TradingSignal.symbol)
                .ext(distinct_on(TradingSignal.user_id, TradingSignal.symbol))
                .where(
                    text("trading_signals." + PENDING_PREDICATE),
                    TradingSignal.created_at
                    < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, SWEEP_MIN_AGE_S),
                )
                .order_by(TradingSignal.user_id, TradingSignal.symbol, TradingSignal.seq)
                .limit(1000)
            )
        ).all()
    for signal_id, user_id, symbol in rows:
        await queue.enqueue(redis, signal_id, user_id, symbol)
    return len(rows)


async def run_sweeper(redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Every SWEEP_INTERVAL_S, one sweeper across all processes re-enqueues lost work."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            if await redis.set(SWEEP_LOCK, b"1", nx=True, px=int(SWEEP_INTERVAL_S * 900)):
                sent = await sweep_once(redis, sessionmaker)
                if sent:
                    log.info("signals_reenqueued", count=sent)
        except Exception as exc:
            log.warning("sweep_failed", error_type=type(exc).__name__)
