"""The signal pipeline's workers, assembled for a worker runtime (API process or worker
process): the queue consumer, the sweeper, the paper exchange's order triggers and the
reconciliation of live exchange accounts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis

from app.config import Settings
from app.core.pg import Pool
from app.exchanges.factory import AdapterFactory, make_price_feed
from app.exchanges.paper import process_all_accounts
from app.exchanges.price_feed import PriceFeed
from app.logging.logger import get_logger
from app.workers.position_syncer import run_position_syncer
from app.workers.runtime import WorkerRuntime
from app.workers.signal_consumer import SignalConsumer, run_sweeper
from app.workers.trade_executor import SignalExecutor

log = get_logger("worker")

TRIGGER_INTERVAL_S = 1.0


@dataclass
class Pipeline:
    executor: SignalExecutor
    consumer: SignalConsumer
    adapters: AdapterFactory


def build_pipeline(
    settings: Settings,
    pool: Pool,
    redis: Redis,
    *,
    consumer_name: str,
    feed: PriceFeed | None = None,
) -> Pipeline:
    adapters = AdapterFactory(settings, pool, feed or make_price_feed(settings), redis=redis)
    executor = SignalExecutor(pool, adapters)
    consumer = SignalConsumer(
        redis,
        executor,
        consumer_name=consumer_name,
        concurrency=settings.WORKER_CONCURRENCY,
        max_deliveries=settings.MAX_DELIVERIES,
        reclaim_idle_ms=settings.WORKER_RECLAIM_IDLE_MS,
    )
    return Pipeline(executor=executor, consumer=consumer, adapters=adapters)


async def trigger_round(pipeline: Pipeline) -> int:
    """Fill the resting paper orders the current prices trigger, then reconcile the trades and
    positions they touched; how many orders were filled."""
    adapters = pipeline.adapters
    filled = await process_all_accounts(
        adapters.pool,
        adapters.paper_feed,
        taker_fee_rate=adapters.settings.PAPER_TAKER_FEE_RATE,
        slippage_percent=adapters.settings.DEFAULT_SLIPPAGE_PERCENT,
    )
    for account_id, symbol in sorted({(f.account_id, f.symbol) for f in filled}):
        async with pipeline.executor.key_lock(account_id, symbol) as conn:
            adapter = adapters.paper(account_id)
            try:
                await pipeline.executor.sync(conn, adapter, account_id, "paper", symbol)
            finally:
                await adapter.close()
    return len(filled)


async def run_paper_triggers(pipeline: Pipeline) -> None:
    """Every TRIGGER_INTERVAL_S, a trigger round (stop losses and take profits fire)."""
    while True:
        await asyncio.sleep(TRIGGER_INTERVAL_S)
        try:
            await trigger_round(pipeline)
        except Exception as exc:  # the next round tries again
            log.warning("paper_triggers_failed", error_type=type(exc).__name__)


def install(
    runtime: WorkerRuntime,
    settings: Settings,
    pool: Pool,
    redis: Redis,
) -> Pipeline:
    pipeline = build_pipeline(settings, pool, redis, consumer_name=runtime.worker_id)
    runtime.add("signals", pipeline.consumer.run)
    runtime.add("sweeper", lambda: run_sweeper(redis, pool))
    runtime.add("paper_triggers", lambda: run_paper_triggers(pipeline))
    runtime.add(
        "position_syncer",
        lambda: run_position_syncer(
            pipeline.executor, pipeline.adapters, pool, settings.POSITION_SYNC_INTERVAL_S, redis
        ),
    )
    runtime.on_stop(pipeline.adapters.aclose)
    return pipeline
