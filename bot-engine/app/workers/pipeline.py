"""The engine's workers, assembled for a worker runtime (API process or worker process): the
queue consumer, the sweeper, the paper exchange's order triggers, the reconciliation of live
exchange accounts, the event publisher, the notifier and the price updater."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from app.config import Settings
from app.core.events import EventPublisher
from app.core.metrics import Metrics
from app.core.pg import Pool
from app.core.telegram import TelegramClient
from app.exchanges.factory import AdapterFactory, make_price_feed
from app.exchanges.paper import process_all_accounts
from app.exchanges.price_feed import PriceFeed
from app.exchanges.ticker_stream import make_stream_feed
from app.logging.logger import get_logger
from app.workers.notifier import Notifier
from app.workers.position_syncer import run_position_syncer
from app.workers.price_updater import PriceUpdater
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
    events: EventPublisher


def build_pipeline(
    settings: Settings,
    pool: Pool,
    redis: Redis,
    *,
    consumer_name: str,
    feed: PriceFeed | None = None,
    metrics: Metrics | None = None,
) -> Pipeline:
    adapters = AdapterFactory(
        settings, pool, feed or make_price_feed(settings), redis=redis, metrics=metrics
    )
    events = EventPublisher(redis)
    executor = SignalExecutor(pool, adapters, events, metrics)
    consumer = SignalConsumer(
        redis,
        executor,
        consumer_name=consumer_name,
        concurrency=settings.WORKER_CONCURRENCY,
        max_deliveries=settings.MAX_DELIVERIES,
        reclaim_idle_ms=settings.WORKER_RECLAIM_IDLE_MS,
    )
    return Pipeline(executor=executor, consumer=consumer, adapters=adapters, events=events)


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


def build_notifier(
    runtime: WorkerRuntime, settings: Settings, pool: Pool, redis: Redis
) -> Notifier:
    """The notifier, with a Telegram client when a bot token is configured (its HTTP client is
    closed when `runtime` stops)."""
    telegram = None
    if settings.TELEGRAM_BOT_TOKEN is not None:
        http = httpx.AsyncClient()
        runtime.on_stop(http.aclose)
        telegram = TelegramClient(
            http, settings.TELEGRAM_BOT_TOKEN, base_url=settings.TELEGRAM_API_URL
        )
    return Notifier(redis, pool, consumer=runtime.worker_id, telegram=telegram,
                    max_attempts=settings.TELEGRAM_MAX_ATTEMPTS)  # fmt: skip


def install(
    runtime: WorkerRuntime,
    settings: Settings,
    pool: Pool,
    redis: Redis,
    metrics: Metrics | None = None,
) -> Pipeline:
    pipeline = build_pipeline(
        settings, pool, redis, consumer_name=runtime.worker_id, metrics=metrics
    )
    runtime.add("events", pipeline.events.run)
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
    runtime.on_stop(pipeline.events.flush)
    notifier = build_notifier(runtime, settings, pool, redis)
    runtime.add("notices", notifier.run_notices)
    runtime.add("telegram", notifier.run_telegram)
    runtime.add("daily_summaries", notifier.run_daily_summaries)
    updater = PriceUpdater(
        pool,
        redis,
        pipeline.events,
        paper_feed=pipeline.adapters.paper_feed,
        stream_feed=lambda exchange: make_stream_feed(settings, exchange),
        default_exchange=settings.DEFAULT_EXCHANGE,
        interval_s=settings.PRICE_UPDATE_INTERVAL_S,
        owner=runtime.worker_id,
    )
    runtime.add("price_updater", updater.run)
    return pipeline
