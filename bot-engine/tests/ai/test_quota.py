"""The monthly allowance: reserved atomically, given back when an answer does not complete,
renewed on the first of the month (UTC)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.ai import quota
from app.config import Settings
from app.models import User
from tests.conftest import Factory


def test_allowance_follows_tier_then_the_users_own_limit(
    factory: Factory, settings: Settings
) -> None:
    pro = User(id="a", email="a@x.io", subscription_tier="pro", chat_messages_limit=0)
    enterprise = User(id="b", email="b@x.io", subscription_tier="enterprise", chat_messages_limit=0)
    custom = User(id="c", email="c@x.io", subscription_tier="pro", chat_messages_limit=7)
    free = User(id="d", email="d@x.io", subscription_tier="free", chat_messages_limit=50)
    assert quota.allowance(pro, settings) == settings.CHAT_MONTHLY_MESSAGES_PRO
    assert quota.allowance(enterprise, settings) == settings.CHAT_MONTHLY_MESSAGES_ENTERPRISE
    assert quota.allowance(custom, settings) == 7
    assert quota.allowance(free, settings) == 0


def test_the_allowance_resets_on_the_first_of_next_month_utc() -> None:
    assert quota.month_of(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == date(2026, 12, 1)
    assert quota.next_reset(date(2026, 12, 1)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert quota.next_reset(date(2027, 2, 1)) == datetime(2027, 3, 1, tzinfo=UTC)


async def test_concurrent_reservations_never_exceed_the_limit(
    factory: Factory, app: FastAPI
) -> None:
    user = await factory.user("pro")

    async def one() -> bool:
        async with app.state.sessionmaker() as s:
            try:
                await quota.reserve(s, user, 3)
            except quota.ChatLimitReached:
                return False
            return True

    taken = await asyncio.gather(*(one() for _ in range(10)))
    assert sum(taken) == 3
    async with app.state.sessionmaker() as s:
        assert await s.scalar(select(User.chat_messages_used).where(User.id == user.id)) == 3
        await quota.release(s, quota.Reservation(user.id, quota.month_of(datetime.now(UTC)), 3))
        assert await s.scalar(select(User.chat_messages_used).where(User.id == user.id)) == 2
        # A reservation of an earlier month gives nothing back from this month's count.
        await quota.release(s, quota.Reservation(user.id, date(2000, 1, 1), 1))
        assert await s.scalar(select(User.chat_messages_used).where(User.id == user.id)) == 2


async def test_a_zero_allowance_is_refused_without_touching_the_counter(
    factory: Factory, app: FastAPI
) -> None:
    user = await factory.user("pro")
    async with app.state.sessionmaker() as s:
        with pytest.raises(quota.ChatLimitReached) as refused:
            await quota.reserve(s, user, 0)
        assert refused.value.details is not None and refused.value.details["limit"] == 0
        assert await s.scalar(select(User.chat_usage_month).where(User.id == user.id)) is None
