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
import time
from collections import defaultdict

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from app.core.pg import Pool
from app.logging.logger import get_logger
from app.models.signal import PENDING_PREDICATE
from app.workers import queue
from app.workers.trade_executor import SignalExecutor

log = get_logger("worker")

Key = tuple[str, str]  # (user id, symbol): the unit of ordering and locking

RECLAIM_IDLE_MS = 30_000
RECLAIM_EVERY_S = 1.0  # how often a consumer looks for doorbells of crashed consumers
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
        """Read doorbells and keep up to `concurrency` keys executing, starting a key as soon as
        a slot frees up (a slow key never holds back the others)."""
        await queue.ensure_group(self.redis)
        waiting: dict[Key, list[queue.Doorbell]] = {}  # bells of keys not started yet
        running: set[Key] = set()
        slot_freed = asyncio.Event()
        stopping = asyncio.Event()  # set once the read loop ends: start nothing new
        next_reclaim = 0.0

        async with asyncio.TaskGroup() as tasks:

            def start_ready() -> None:
                if stopping.is_set():  # the group is shutting down and takes no new task
                    return
                for key in [k for k in waiting if k not in running]:
                    if len(running) >= self.concurrency:
                        return
                    running.add(key)
                    tasks.create_task(run_one(key, waiting.pop(key)))

            async def run_one(key: Key, group: list[queue.Doorbell]) -> None:
                try:
                    await self._run_key(key, group)
                except Exception:  # its doorbells stay unacknowledged and come back
                    log.exception("key_run_failed", user_id=key[0], symbol=key[1])
                finally:
                    running.discard(key)
                    slot_freed.set()
                start_ready()  # not when cancelled: the consumer is stopping

            try:
                while True:
                    if sum(map(len, waiting.values())) >= self.concurrency * 8:
                        slot_freed.clear()  # enough read ahead: wait for a key to finish
                        await slot_freed.wait()
                        continue
                    try:
                        bells: list[queue.Doorbell] = []
                        if time.monotonic() >= next_reclaim:
                            next_reclaim = time.monotonic() + RECLAIM_EVERY_S
                            bells += await queue.reclaim(
                                self.redis, self.name, min_idle_ms=self.reclaim_idle_ms
                            )
                        bells += await queue.read(
                            self.redis,
                            self.name,
                            count=self.concurrency * 8,
                            block_ms=self.block_ms if not bells else 1,
                        )
                    except ResponseError as exc:
                        if "NOGROUP" not in str(exc):
                            raise
                        # Redis lost the stream (restarted without persistence, or flushed):
                        # recreate the group; the sweeper re-rings whatever was pending.
                        log.warning("queue_group_recreated")
                        await queue.ensure_group(self.redis)
                        continue
                    except RedisError as exc:
                        log.warning("queue_unavailable", error_type=type(exc).__name__)
                        await asyncio.sleep(1.0)
                        continue
                    for bell in bells:
                        waiting.setdefault((bell.user_id, bell.symbol), []).append(bell)
                    start_ready()
            finally:
                stopping.set()

    async def handle(self, bells: list[queue.Doorbell]) -> None:
        """Execute the keys of `bells` (up to `concurrency` at a time) and return when done."""
        by_key: dict[Key, list[queue.Doorbell]] = defaultdict(list)
        for bell in bells:
            by_key[(bell.user_id, bell.symbol)].append(bell)
        limit = asyncio.Semaphore(self.concurrency)

        async def one_key(key: Key, group: list[queue.Doorbell]) -> None:
            async with limit:
                await self._run_key(key, group)

        await asyncio.gather(*(one_key(k, g) for k, g in by_key.items()))

    async def _run_key(self, key: Key, group: list[queue.Doorbell]) -> None:
        user_id, symbol = key
        exhausted = [b for b in group if b.deliveries > self.max_deliveries]
        gave_up = False
        for bell in exhausted:
            # A key's doorbells come back together whenever its run fails, so the doorbells of
            # the signals waiting behind a failing head count the head's failures too: one
            # signal is given up per run, the head, and only by its own doorbell.
            failed = None
            if not gave_up:
                failed = await self.executor.fail_head(
                    user_id, symbol, bell.signal_id,
                    f"execution failed {bell.deliveries - 1} times; gave up",
                )  # fmt: skip
            if failed is None:
                # Not its own failures (it waited behind the head, or its signal has ended):
                # ring it again, counting from one.
                await queue.enqueue(self.redis, bell.signal_id, user_id, symbol)
                await queue.ack(self.redis, bell.message_id)
                continue
            gave_up = True
            await queue.dead_letter(self.redis, bell, "too many deliveries")
            log.error("signal_dead_lettered", signal_id=str(failed))
            if self.executor.metrics is not None:
                self.executor.metrics.dead_letters.inc()
        live = [b for b in group if b.deliveries <= self.max_deliveries]
        if not live:
            return
        try:
            await self.executor.run_key(user_id, symbol)
        except Exception:
            log.exception("execution_attempt_failed", user_id=user_id, symbol=symbol)
            return  # unacknowledged: redelivered after RECLAIM_IDLE_MS
        await queue.ack(self.redis, *(b.message_id for b in live))


# The first pending signal of each key that has waited longer than SWEEP_MIN_AGE_S.
_STRANDED = f"""
    SELECT DISTINCT ON (user_id, symbol) id, user_id, symbol FROM trading_signals
    WHERE {PENDING_PREDICATE} AND created_at < now() - make_interval(secs => $1)
    ORDER BY user_id, symbol, seq
    LIMIT 1000
"""  # noqa: S608 - composed of constants only  # nosec B608


async def sweep_once(redis: Redis, pool: Pool) -> int:
    """One doorbell per (user, symbol) that has signals pending for over SWEEP_MIN_AGE_S (the
    executor takes all of a key's pending signals at once); how many doorbells were sent."""
    rows = await pool.fetch(_STRANDED, SWEEP_MIN_AGE_S)
    for row in rows:
        await queue.enqueue(redis, row["id"], row["user_id"], row["symbol"])
    return len(rows)


async def run_sweeper(redis: Redis, pool: Pool) -> None:
    """Every SWEEP_INTERVAL_S, one sweeper across all processes re-enqueues lost work."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            if await redis.set(SWEEP_LOCK, b"1", nx=True, px=int(SWEEP_INTERVAL_S * 900)):
                sent = await sweep_once(redis, pool)
                if sent:
                    log.info("signals_reenqueued", count=sent)
        except Exception as exc:
            log.warning("sweep_failed", error_type=type(exc).__name__)
