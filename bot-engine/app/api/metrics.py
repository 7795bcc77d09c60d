"""`GET /metrics`: this process's Prometheus metrics. Queue gauges are read from Redis at
scrape time; with Redis unreachable they keep their last value and the scrape still works."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from app.core.metrics import CONTENT_TYPE, Metrics
from app.logging.logger import get_logger
from app.workers import queue

router = APIRouter(tags=["health"])
# Counting the lag by reading entries (Redis 6) stops here; the gauge then says "at least".
LAG_COUNT_CAP = 10_000
log = get_logger("metrics")


async def _read_queue(request: Request, metrics: Metrics) -> None:
    redis = request.app.state.redis
    try:
        await _read_stream(redis, metrics)
    except Exception as exc:  # Redis down: not a scrape failure
        log.debug("metrics_queue_unread", error_type=type(exc).__name__)


async def _read_stream(redis: Any, metrics: Metrics) -> None:
    length = await redis.xlen(queue.STREAM)
    groups: Any = await redis.xinfo_groups(queue.STREAM) if length else []
    metrics.queue_length.set(length)
    # No worker has created the group yet: everything in the stream is waiting.
    pending, lag = 0, length
    for group in groups:
        name = group.get("name")
        if (name.decode() if isinstance(name, bytes) else name) == queue.GROUP:
            pending, lag = group.get("pending") or 0, group.get("lag")
            if lag is None:  # Redis < 7 reports no lag: count what follows the group's mark
                last = group.get("last-delivered-id")
                last = last.decode() if isinstance(last, bytes) else last
                after = await redis.xrange(queue.STREAM, min=f"({last}", count=LAG_COUNT_CAP)
                lag = len(after)
    metrics.queue_pending.set(pending)
    metrics.queue_lag.set(lag)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    collected: Metrics = request.app.state.metrics
    collected.websocket_connections.set(request.app.state.hub.connection_count)
    await _read_queue(request, collected)
    return Response(collected.render(), media_type=CONTENT_TYPE)
