"""The notifier against real PostgreSQL and Redis and a local Telegram Bot API server: notices
become rows (once each, as the user's settings allow), are pushed on the user's channel, and
reach a linked Telegram chat through failures the Bot API says to retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from app.core import events
from app.core.events import EventPublisher
from app.core.notifications import Notice
from app.core.telegram import TelegramClient
from app.models import User
from app.workers.notifier import Notifier
from tests.conftest import Factory
from tests.support.pipeline import cancel_until_done, eventually
from tests.support.telegram_server import TelegramBotApiServer

CHAT = "424242"


@pytest.fixture
def bot(factory: Factory) -> Iterator[TelegramBotApiServer]:
    server = TelegramBotApiServer()
    factory.secrets.add(server.token)
    with server:
        yield server


@pytest.fixture
async def notifier(app: FastAPI, bot: TelegramBotApiServer) -> AsyncIterator[Notifier]:
    async with httpx.AsyncClient() as http:
        client = TelegramClient(http, SecretStr(bot.token), base_url=bot.base_url, timeout_s=2)
        yield Notifier(app.state.redis, app.state.pg, consumer="test", telegram=client,
                       max_attempts=3, backoff_s=0.01)  # fmt: skip


async def _linked(app: FastAPI, factory: Factory, chat: str = CHAT) -> User:
    user = await factory.user()
    async with app.state.pg.acquire() as conn:
        await conn.execute(
            "UPDATE users SET telegram_chat_id = $2, telegram_enabled = true WHERE id = $1",
            user.id,
            chat,
        )
    return user


def _notice(user: User, kind: str = "trade_executed", key: str = "k1") -> Notice:
    return Notice(user_id=user.id, type=kind, title=f"{kind} title", message="what happened",
                  dedupe_key=key, related_type="signal", related_id="s-1")  # fmt: skip


async def _rows(app: FastAPI, user: User) -> list[dict[str, Any]]:
    async with app.state.pg.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM notifications WHERE user_id = $1 ORDER BY created_at", user.id
        )
    return [dict(r) for r in rows]


async def test_a_notice_is_stored_once_and_pushed(
    app: FastAPI, factory: Factory, notifier: Notifier
) -> None:
    user = await factory.user()
    pubsub = app.state.redis.pubsub()
    await pubsub.subscribe(events.user_channel(user.id))
    try:
        first = await notifier.store(_notice(user))
        again = await notifier.store(_notice(user))  # redelivered: the same row
        pushed = await eventually(
            lambda: pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2),
            lambda m: m is not None,
            what="notification pushed",
        )
        assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
    finally:
        await pubsub.aclose()
    assert first is not None and again is not None and first["id"] == again["id"]
    (row,) = await _rows(app, user)
    assert (row["type"], row["title"]) == ("trade_executed", "trade_executed title")
    assert row["telegram_status"] is None
    event = orjson.loads(pushed["data"])
    assert event["type"] == "notification"
    assert event["data"]["id"] == str(row["id"])


async def test_the_users_settings_switch_kinds_off(
    app: FastAPI, factory: Factory, notifier: Notifier
) -> None:
    user = await factory.user()
    async with app.state.pg.acquire() as conn:
        await conn.execute(
            "INSERT INTO user_risk_settings (user_id, notify_on_trade, notify_on_stop_loss) "
            "VALUES ($1, false, true) ON CONFLICT (user_id) DO UPDATE SET notify_on_trade = "
            "false, notify_on_stop_loss = true",
            user.id,
        )
    assert await notifier.store(_notice(user, "trade_executed", "a")) is None
    assert await notifier.store(_notice(user, "signal_rejected", "b")) is None
    assert await notifier.store(_notice(user, "stop_loss_hit", "c")) is not None
    assert await notifier.store(_notice(user, "daily_summary", "d")) is not None  # always
    assert [r["type"] for r in await _rows(app, user)] == ["stop_loss_hit", "daily_summary"]


async def test_notices_reach_a_linked_chat_through_the_streams(
    app: FastAPI, factory: Factory, notifier: Notifier, bot: TelegramBotApiServer
) -> None:
    user = await _linked(app, factory)
    unlinked = await factory.user()
    publisher = EventPublisher(app.state.redis)
    tasks = [asyncio.create_task(t) for t in
             (publisher.run(), notifier.run_notices(), notifier.run_telegram())]  # fmt: skip
    try:
        publisher.notify(_notice(user, key="one"))
        publisher.notify(_notice(unlinked, key="two"))
        rows = await eventually(
            lambda: _rows(app, user),
            lambda rows: bool(rows) and rows[0]["telegram_status"] == "sent",
            what="telegram delivered",
        )
    finally:
        for task in tasks:
            await cancel_until_done(task)
    assert bot.messages == [(CHAT, "trade_executed title\nwhat happened")]
    assert rows[0]["telegram_sent_at"] is not None
    (other,) = await _rows(app, unlinked)
    assert other["telegram_status"] is None  # in-app only


async def test_telegram_429_and_5xx_are_retried(
    app: FastAPI, factory: Factory, notifier: Notifier, bot: TelegramBotApiServer
) -> None:
    user = await _linked(app, factory)
    row = await notifier.store(_notice(user))
    assert row is not None and row["telegram_status"] == "pending"
    bot.fail_next(1, 429, "Too Many Requests: retry after 0", retry_after=0)
    bot.fail_next(1, 502, "Bad Gateway")
    assert await notifier.deliver_telegram(str(row["id"])) == "sent"
    assert len(bot.calls) == 3 and bot.messages == [(CHAT, "trade_executed title\nwhat happened")]
    assert await notifier.deliver_telegram(str(row["id"])) == "sent"  # again: not re-sent
    assert len(bot.calls) == 3


async def test_telegram_gives_up_after_max_attempts_and_on_blocked_chats(
    app: FastAPI, factory: Factory, notifier: Notifier, bot: TelegramBotApiServer
) -> None:
    user = await _linked(app, factory)
    flaky = await notifier.store(_notice(user, key="flaky"))
    blocked_user = await _linked(app, factory, chat="777")
    blocked = await notifier.store(_notice(blocked_user, key="blocked"))
    assert flaky is not None and blocked is not None
    bot.fail_next(3, 500, "Internal Server Error")
    assert await notifier.deliver_telegram(str(flaky["id"])) == "failed"
    bot.block_chat("777")
    assert await notifier.deliver_telegram(str(blocked["id"])) == "failed"
    (flaky_row,) = await _rows(app, user)
    (blocked_row,) = await _rows(app, blocked_user)
    assert flaky_row["telegram_error"].startswith("gave up")
    assert "blocked" in blocked_row["telegram_error"]
    assert bot.messages == []


async def test_a_daily_summary_tells_each_active_user_their_day(
    app: FastAPI, factory: Factory, notifier: Notifier
) -> None:
    active, idle = await factory.user(), await factory.user()
    yesterday = datetime.now(UTC) - timedelta(days=1)
    async with app.state.pg.acquire() as conn:
        for status in ("executed", "rejected"):
            await conn.execute(
                "INSERT INTO trading_signals (user_id, signal_type, symbol, status, source, "
                "dedupe_key, created_at) VALUES ($1, 'long_entry', 'BTCUSDT', $2, 'tradingview', "
                "$3, $4)",
                active.id,
                status,
                f"d-{status}",
                yesterday,
            )
    assert await notifier.summarise(yesterday.date()) == 1
    assert await notifier.summarise(yesterday.date()) == 1  # once per day: the same row
    (row,) = await _rows(app, active)
    assert row["type"] == "daily_summary"
    assert row["title"] == f"Your trading on {yesterday.date().isoformat()}"
    assert row["message"].startswith("2 signals (1 rejected), 0 fills, realised PnL 0.00 USDT")
    assert await _rows(app, idle) == []
