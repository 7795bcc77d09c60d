"""The notifier: turns queued notices into stored, pushed and (for linked users) Telegram
notifications, and writes each user's daily summary. Runs in every worker runtime; the
streams' consumer groups share the work between processes.

Two stages, so that a slow or failing Telegram never delays the in-app notifications:
- `run_notices` reads `jadetrade:notifications`: applies the user's `notify_on_*` setting,
  stores the row (once per dedupe key), pushes a `notification` event, and queues the
  Telegram delivery on `jadetrade:telegram`;
- `run_telegram` delivers those, several at once, retrying what the Bot API says to retry
  (429 after its `retry_after`, 5xx, timeouts) up to TELEGRAM_MAX_ATTEMPTS, and records the
  result on the row. A message whose worker died is taken over by another after a while.

Delivery is at least once: a worker that dies between sending and recording may send a
Telegram message twice. Trading is never touched by any of this.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from app.core import events
from app.core.notifications import (
    NOTICE_STREAM,
    PREFERENCE,
    TELEGRAM_STREAM,
    Notice,
    daily_summary_notice,
    telegram_text,
)
from app.core.pg import Pool
from app.core.telegram import (
    TelegramAuthFailed,
    TelegramClient,
    TelegramError,
    TelegramRetryLater,
    TelegramUndeliverable,
)
from app.logging.logger import get_logger

log = get_logger("notifications")

NOTICE_GROUP = "notifiers"
TELEGRAM_GROUP = "telegram"
# A message unacknowledged this long is taken over. Telegram deliveries wait between attempts
# (at most MAX_RETRY_AFTER_S each), so theirs is longer than any delivery can take.
NOTICE_RECLAIM_IDLE_MS = 60_000
TELEGRAM_RECLAIM_IDLE_MS = 300_000
MAX_RETRY_AFTER_S = 55.0
TELEGRAM_CONCURRENCY = 8
MAX_BACKOFF_S = 30.0
SUMMARY_CHECK_S = 60.0
SUMMARY_KEY = "jadetrade:daily-summary:{day}"


def _store(preference: str | None) -> str:
    """The statement that stores a notice when its setting allows: the row (RETURNING), with
    `inserted` false when the dedupe key had stored it before."""
    wanted = f"coalesce(r.{preference}, true)" if preference else "true"
    return f"""
        WITH who AS (
            SELECT u.telegram_enabled AND u.telegram_chat_id IS NOT NULL AS telegram,
                   {wanted} AS wanted
            FROM users u LEFT JOIN user_risk_settings r ON r.user_id = u.id
            WHERE u.id = $1
        )
        INSERT INTO notifications (user_id, type, title, message, related_type, related_id,
                                   dedupe_key, telegram_status)
        SELECT $1, $2, $3, $4, $5, $6, $7, CASE WHEN who.telegram AND $8 THEN 'pending' END
        FROM who WHERE who.wanted
        ON CONFLICT (user_id, dedupe_key) DO UPDATE SET dedupe_key = EXCLUDED.dedupe_key
        RETURNING *, (xmax = 0) AS inserted
    """  # noqa: S608 - the column name comes from PREFERENCE, a constant  # nosec B608


_STORE = {kind: _store(column) for kind, column in PREFERENCE.items()}
_STORE_ALWAYS = _store(None)
_TELEGRAM_TARGET = """
    SELECT n.id, n.title, n.message, n.telegram_status, u.telegram_chat_id, u.telegram_enabled
    FROM notifications n JOIN users u ON u.id = n.user_id WHERE n.id = $1
"""
_TELEGRAM_DONE = """
    UPDATE notifications
    SET telegram_status = $2, telegram_error = $3,
        telegram_sent_at = CASE WHEN $4 THEN clock_timestamp() END
    WHERE id = $1
"""
# Per user with activity on the day: what the summary tells.
_DAY_ACTIVITY = """
    WITH active AS (
        SELECT user_id FROM trading_signals WHERE created_at >= $1 AND created_at < $2
        UNION
        SELECT user_id FROM real_trades WHERE executed_at >= $1 AND executed_at < $2
    )
    SELECT a.user_id,
        (SELECT count(*) FROM trading_signals s
         WHERE s.user_id = a.user_id AND s.created_at >= $1 AND s.created_at < $2) AS signals,
        (SELECT count(*) FROM trading_signals s
         WHERE s.user_id = a.user_id AND s.created_at >= $1 AND s.created_at < $2
           AND s.status = 'rejected') AS rejected,
        (SELECT count(*) FROM real_trades t
         WHERE t.user_id = a.user_id AND t.executed_at >= $1 AND t.executed_at < $2
           AND t.filled_quantity > 0) AS fills,
        (SELECT coalesce(sum(realized_pnl), 0) FROM real_trades t
         WHERE t.user_id = a.user_id AND t.executed_at >= $1 AND t.executed_at < $2) AS realized,
        (SELECT count(*) FROM real_positions p
         WHERE p.user_id = a.user_id AND p.status = 'open') AS open_positions
    FROM active a ORDER BY a.user_id
"""

Handler = Callable[[bytes, dict[bytes, bytes]], Awaitable[None]]


async def _ensure_group(redis: Redis, stream: str, group: str) -> None:
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Notifier:
    def __init__(
        self,
        redis: Redis,
        pool: Pool,
        *,
        consumer: str,
        telegram: TelegramClient | None = None,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        block_ms: int = 1000,
    ) -> None:
        self.redis = redis
        self.pool = pool
        self.consumer = consumer
        self.telegram = telegram
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.block_ms = block_ms

    # ------------------------------------------------------------------ stage 1: notices
    async def run_notices(self) -> None:
        await self._consume(NOTICE_STREAM, NOTICE_GROUP, self._handle_notice, concurrency=1,
                            reclaim_idle_ms=NOTICE_RECLAIM_IDLE_MS)  # fmt: skip

    async def _handle_notice(self, message_id: bytes, fields: dict[bytes, bytes]) -> None:
        notice = Notice.from_fields(fields)
        await self.store(notice)
        await self.redis.xack(NOTICE_STREAM, NOTICE_GROUP, message_id)

    async def store(self, notice: Notice) -> dict[str, Any] | None:
        """Store, push and queue for Telegram one notice; the row, None if the user's settings
        switch this kind off (or the user is gone)."""
        statement = _STORE.get(notice.type, _STORE_ALWAYS)
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                statement,
                notice.user_id,
                notice.type,
                notice.title[:255],
                notice.message,
                notice.related_type,
                notice.related_id,
                notice.dedupe_key[:120],
                self.telegram is not None,
            )
        if row is None:
            return None
        stored = dict(row)
        if stored.pop("inserted"):
            channel = events.user_channel(notice.user_id)
            data = _notification_data(stored)
            await events.publish(self.redis, channel, events.EventType.NOTIFICATION, data)
            log.info("notification_stored", notification_id=str(stored["id"]),
                     type=notice.type, telegram=stored["telegram_status"] is not None)  # fmt: skip
        if stored["telegram_status"] == "pending":  # also when a crash came before queueing it
            await self.redis.xadd(TELEGRAM_STREAM, {"notification_id": str(stored["id"])},
                                  maxlen=100_000, approximate=True)  # fmt: skip
        return stored

    # ------------------------------------------------------------------ stage 2: Telegram
    async def run_telegram(self) -> None:
        await self._consume(TELEGRAM_STREAM, TELEGRAM_GROUP, self._handle_telegram,
                            concurrency=TELEGRAM_CONCURRENCY,
                            reclaim_idle_ms=TELEGRAM_RECLAIM_IDLE_MS)  # fmt: skip

    async def _handle_telegram(self, message_id: bytes, fields: dict[bytes, bytes]) -> None:
        notification_id = fields[b"notification_id"].decode()
        await self.deliver_telegram(notification_id)
        await self.redis.xack(TELEGRAM_STREAM, TELEGRAM_GROUP, message_id)

    async def deliver_telegram(self, notification_id: str) -> str:
        """Send one stored notification to its user's chat; the status it ends with."""
        async with self.pool.acquire() as conn:
            target = await conn.fetchrow(_TELEGRAM_TARGET, notification_id)
        if target is None or target["telegram_status"] != "pending":
            return "gone" if target is None else str(target["telegram_status"])
        if (
            self.telegram is None
            or not target["telegram_enabled"]
            or not target["telegram_chat_id"]
        ):
            return await self._finish(notification_id, "failed", "Telegram not linked or no bot")
        text = telegram_text(target["title"], target["message"])
        error = "no attempt"
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self.telegram.send_message(target["telegram_chat_id"], text)
                return await self._finish(notification_id, "sent", None)
            except TelegramRetryLater as exc:
                error = exc.message
                wait = min(max(exc.retry_after_s or 0.0, self._backoff(attempt)),
                           MAX_RETRY_AFTER_S)  # fmt: skip
                log.warning("telegram_retry", notification_id=notification_id, attempt=attempt,
                            error_code=exc.code, retry_in_s=round(wait, 2))  # fmt: skip
                if attempt < self.max_attempts:
                    await asyncio.sleep(wait)
            except TelegramAuthFailed as exc:
                log.error("telegram_bot_token_refused", error_code=exc.code)
                return await self._finish(notification_id, "failed", exc.message)
            except (TelegramUndeliverable, TelegramError) as exc:
                return await self._finish(notification_id, "failed", exc.message)
        return await self._finish(notification_id, "failed", f"gave up: {error}")

    def _backoff(self, attempt: int) -> float:
        base: float = min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security  # nosec B311

    async def _finish(self, notification_id: str, status: str, error: str | None) -> str:
        async with self.pool.acquire() as conn:
            detail = None if error is None else error[:255]
            await conn.execute(_TELEGRAM_DONE, notification_id, status, detail, status == "sent")
        log.info("telegram_delivery", notification_id=notification_id, status=status)
        return status

    # ------------------------------------------------------------------ daily summaries
    async def run_daily_summaries(self) -> None:
        """After each UTC midnight, one process summarises the day before for every user who
        traded or signalled on it."""
        while True:
            day = datetime.now(UTC).date() - timedelta(days=1)
            try:
                claimed = await self.redis.set(SUMMARY_KEY.format(day=day.isoformat()),
                                               self.consumer, nx=True, ex=3 * 86_400)  # fmt: skip
                if claimed:
                    count = await self.summarise(day)
                    log.info("daily_summaries_queued", day=day.isoformat(), users=count)
            except (RedisError, OSError) as exc:
                log.warning("daily_summaries_failed", error_type=type(exc).__name__)
            await asyncio.sleep(SUMMARY_CHECK_S)

    async def summarise(self, day: date) -> int:
        """Store the summaries of `day` (UTC); how many users got one."""
        start = datetime.combine(day, time(0), tzinfo=UTC)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_DAY_ACTIVITY, start, start + timedelta(days=1))
        for row in rows:
            await self.store(daily_summary_notice(row["user_id"], day.isoformat(), dict(row)))
        return len(rows)

    # ------------------------------------------------------------------ stream plumbing
    async def _consume(
        self,
        stream: str,
        group: str,
        handle: Handler,
        *,
        concurrency: int,
        reclaim_idle_ms: int,
    ) -> None:
        """Read `stream` as `group`, running up to `concurrency` handlers at once; a message is
        acknowledged by its handler, and one left unacknowledged for `reclaim_idle_ms` (its
        worker died, or the handler failed) is taken over."""
        await _ensure_group(self.redis, stream, group)
        slots = asyncio.Semaphore(concurrency)
        running: set[asyncio.Task[None]] = set()
        in_flight: set[bytes] = set()

        async def run(message_id: bytes, fields: dict[bytes, bytes]) -> None:
            try:
                await handle(message_id, fields)
            except Exception:  # left pending: reclaimed and tried again later
                log.exception("notification_handler_failed", stream=stream)
            finally:
                in_flight.discard(message_id)
                slots.release()

        next_reclaim = 0.0
        loop = asyncio.get_running_loop()
        try:
            while True:
                batch: list[tuple[bytes, dict[bytes, bytes]]] = []
                if loop.time() >= next_reclaim:
                    next_reclaim = loop.time() + reclaim_idle_ms / 4000
                    claimed: Any = await self.redis.xautoclaim(
                        stream, group, self.consumer, min_idle_time=reclaim_idle_ms,
                        start_id="0-0", count=50,
                    )  # fmt: skip
                    batch.extend((mid, f) for mid, f in claimed[1] if f and mid not in in_flight)
                reply: Any = await self.redis.xreadgroup(
                    group, self.consumer, {stream: ">"}, count=concurrency, block=self.block_ms
                )
                if reply:
                    batch.extend((mid, f) for mid, f in reply[0][1] if f)
                for message_id, fields in batch:
                    await slots.acquire()
                    in_flight.add(message_id)
                    task = asyncio.create_task(run(message_id, fields))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()


def _notification_data(row: dict[str, Any]) -> dict[str, Any]:
    """A notification as `GET /api/notifications` lists it."""
    names = ("id", "type", "title", "message", "related_type", "related_id", "is_read",
             "read_at", "telegram_status", "created_at")  # fmt: skip
    return {name: row[name] for name in names}
