"""`/api/notifications`: the caller's notifications, newest first, marked read one by one or
all at once, and the Telegram link — scoped to the caller, with 4xx naming the field."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from app.core.notifications import Notice
from app.models import User
from app.workers.notifier import Notifier
from tests.conftest import Factory


async def _notify(app: FastAPI, user: User, key: str, kind: str = "trade_executed") -> str:
    notifier = Notifier(app.state.redis, app.state.pg, consumer="api-test")
    row = await notifier.store(
        Notice(user_id=user.id, type=kind, title=key, message="m", dedupe_key=key)
    )
    assert row is not None
    return str(row["id"])


async def test_listing_is_mine_newest_first_and_filters_unread(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory
) -> None:
    me, other = await factory.user(), await factory.user()
    first = await _notify(app, me, "first")
    second = await _notify(app, me, "second")
    await _notify(app, other, "not mine")
    auth = factory.auth(me)
    listed = (await client.get("/api/notifications", headers=auth)).json()
    assert [n["id"] for n in listed["items"]] == [second, first]
    assert listed["items"][0]["is_read"] is False

    read = await client.post(f"/api/notifications/{first}/read", headers=auth)
    assert read.status_code == 200 and read.json()["is_read"] is True
    assert read.json()["read_at"] is not None
    unread = (await client.get("/api/notifications?unread=true", headers=auth)).json()
    assert [n["id"] for n in unread["items"]] == [second]

    page = (await client.get("/api/notifications?limit=1", headers=auth)).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = await client.get(f"/api/notifications?limit=1&cursor={page['next_cursor']}",
                            headers=auth)  # fmt: skip
    assert [n["id"] for n in rest.json()["items"]] == [first]

    marked = await client.post("/api/notifications/read-all", headers=auth)
    assert marked.json() == {"marked": 1}
    assert (await client.get("/api/notifications?unread=true", headers=auth)).json()["items"] == []


async def test_another_users_notification_is_404(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory
) -> None:
    me, other = await factory.user(), await factory.user()
    theirs = await _notify(app, other, "theirs")
    response = await client.post(f"/api/notifications/{theirs}/read", headers=factory.auth(me))
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "notification_id"
    listed = (await client.get("/api/notifications", headers=factory.auth(other))).json()
    assert listed["items"][0]["is_read"] is False


async def test_telegram_link_is_validated_and_saved(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    me = await factory.user()
    auth = factory.auth(me)
    initial = (await client.get("/api/notifications/telegram", headers=auth)).json()
    assert initial == {"chat_id": None, "enabled": False, "bot_configured": False}

    bad = await client.put("/api/notifications/telegram", headers=auth,
                           json={"chat_id": "not a chat", "enabled": True})  # fmt: skip
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "chat_id"
    missing = await client.put("/api/notifications/telegram", headers=auth,
                               json={"enabled": True})  # fmt: skip
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "chat_id"

    linked = await client.put("/api/notifications/telegram", headers=auth,
                              json={"chat_id": "-1001234567", "enabled": True})  # fmt: skip
    assert linked.status_code == 200
    assert linked.json() == {"chat_id": "-1001234567", "enabled": True, "bot_configured": False}
    me_now = (await client.get("/api/me", headers=auth)).json()
    assert me_now["telegram_enabled"] is True


async def test_notifications_need_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/notifications")
    assert response.status_code == 401
