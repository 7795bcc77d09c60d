"""A running engine for end-to-end tests: the app plus a pipeline consumer whose paper
exchange is priced by a ManualPriceFeed, so fills and PnL are exact.

Load it in a test module with `pytest_plugins = ("tests.support.pipeline",)`; the `harness`
fixture then gives a `Harness`. (tests/support/__init__.py registers this module for pytest's
assertion rewriting, since test modules import it before pytest loads it as a plugin.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.exchanges.price_feed import ManualPriceFeed
from app.models import User
from app.models.signal import TERMINAL_STATUSES
from app.workers.pipeline import Pipeline, build_pipeline
from app.workers.runtime import WorkerRuntime
from tests.conftest import Factory, SecretsSeen, http_client, running_app

URL = "/api/webhooks/tradingview"
SLIPPAGE = Decimal("0.001")  # DEFAULT_SLIPPAGE_PERCENT 0.1 %
DEADLINE_S = 15.0

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    what: str,
    timeout_s: float = DEADLINE_S,
) -> T:
    """`probe()` once `done` holds for its result, polled until a deadline (never a sleep
    of a guessed length)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what}: still {value!r}"
        await asyncio.sleep(0.02)


@dataclass(frozen=True)
class Trader:
    user: User
    token: str
    auth: dict[str, str]


async def read_signal(
    client: httpx.AsyncClient, signal_id: str, auth: dict[str, str]
) -> dict[str, Any]:
    """`GET /api/signals/{id}` through any client: in process or against a running engine."""
    response = await client.get(f"/api/signals/{signal_id}", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def settled_signal(
    client: httpx.AsyncClient, signal_id: str, auth: dict[str, str]
) -> dict[str, Any]:
    """The signal once terminal (polled with a deadline)."""
    return await eventually(
        lambda: read_signal(client, signal_id, auth),
        lambda body: body["status"] in TERMINAL_STATUSES,
        what=f"signal {signal_id} not terminal",
    )


@dataclass
class Harness:
    app: FastAPI
    client: httpx.AsyncClient
    feed: ManualPriceFeed
    pipeline: Pipeline
    factory: Factory

    async def trader(self, tier: str = "pro") -> tuple[str, dict[str, str]]:
        """A user's webhook token and REST auth headers."""
        account = await self.account(tier)
        return account.token, account.auth

    async def account(self, tier: str = "pro") -> Trader:
        """A new user with a webhook token and REST auth headers."""
        user = await self.factory.user(tier=tier)
        return Trader(user, await self.factory.webhook_token(user), self.factory.auth(user))

    async def alert(self, token: str, **fields: Any) -> httpx.Response:
        return await self.client.post(URL, json={"token": token, **fields})

    async def signal(self, signal_id: str, auth: dict[str, str]) -> dict[str, Any]:
        return await read_signal(self.client, signal_id, auth)

    async def settled(self, signal_id: str, auth: dict[str, str]) -> dict[str, Any]:
        """The signal once terminal (polled with a deadline)."""
        return await settled_signal(self.client, signal_id, auth)

    async def positions(self, auth: dict[str, str], status: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/api/positions?status={status}", headers=auth)
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def trades(self, auth: dict[str, str], signal_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/api/trades?signal_id={signal_id}", headers=auth)
        items: list[dict[str, Any]] = response.json()["items"]
        return items


async def cancel_until_done(task: asyncio.Task[None]) -> None:
    """Cancel `task` until it has ended.

    One cancel is not always enough on Python 3.11: redis-py sends every command under
    `asyncio.wait_for`, which swallows a cancellation arriving just as the send completes
    (CPython gh-86296, fixed in 3.12); the consumer then carries on with its loop.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1.0)
    if not task.cancelled():
        error = task.exception()
        if error is not None:
            raise error


@pytest.fixture
async def harness(
    settings: Settings, clean_state: None, secrets_seen: SecretsSeen
) -> AsyncIterator[Harness]:
    async with running_app(settings) as app:
        feed = ManualPriceFeed({"BTCUSDT": Decimal("65000"), "ETHUSDT": Decimal("3500")})
        runtime = WorkerRuntime(app.state.redis, role="test")
        await runtime.start()
        pipeline = build_pipeline(
            settings,
            app.state.pg,
            app.state.redis,
            consumer_name=runtime.worker_id,
            feed=feed,
        )
        # The consumer runs on a task of its own rather than in the runtime, whose stop()
        # cancels once (see cancel_until_done).
        consumer = asyncio.create_task(pipeline.consumer.run(), name="test-signals")
        publisher = asyncio.create_task(pipeline.events.run(), name="test-events")
        try:
            async with http_client(app) as client:
                yield Harness(app, client, feed, pipeline, Factory(app, secrets_seen))
        finally:
            try:
                await cancel_until_done(consumer)
            finally:
                await cancel_until_done(publisher)
                await runtime.stop()
                await pipeline.adapters.aclose()
