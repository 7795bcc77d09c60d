"""The caller's account and webhook tokens over REST; every query scoped to the caller."""

from __future__ import annotations

import httpx

from tests.conftest import Factory


async def test_me_returns_the_caller(client: httpx.AsyncClient, factory: Factory) -> None:
    user = await factory.user(tier="enterprise")
    response = await client.get("/api/me", headers=factory.auth(user))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == user.id
    assert body["subscription_tier"] == "enterprise"
    assert body["chat_enabled"] is True
    assert body["chat"]["enabled"] is True
    assert body["chat"]["used"] == 0
    assert body["chat"]["limit"] == 5000
    assert body["chat"]["resets_at"].endswith(("-01T00:00:00Z", "-01T00:00:00+00:00"))


async def test_me_says_the_free_tier_has_no_assistant(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(tier="free")
    chat = (await client.get("/api/me", headers=factory.auth(user))).json()["chat"]
    assert (chat["enabled"], chat["limit"]) == (False, 0)


async def test_no_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_valid_token_for_unknown_user_is_403(
    client: httpx.AsyncClient, factory: Factory, app: object
) -> None:
    from app.models import User

    ghost = User(id="no-such-user", email="ghost@example.com", subscription_tier="pro")
    response = await client.get("/api/me", headers=factory.auth(ghost))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "user_not_provisioned"


async def test_issue_list_revoke_webhook_tokens(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    auth = factory.auth(user)
    issued = await client.post("/api/webhook-tokens", json={"name": "btc-bot"}, headers=auth)
    assert issued.status_code == 201
    body = issued.json()
    factory.secrets.add(body["token"])
    assert body["token"].startswith(body["token_prefix"])
    assert body["name"] == "btc-bot"

    listed = (await client.get("/api/webhook-tokens", headers=auth)).json()
    assert [t["id"] for t in listed] == [body["id"]]
    assert "token" not in listed[0]  # never shown again

    revoked = await client.delete(f"/api/webhook-tokens/{body['id']}", headers=auth)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None


async def test_tokens_are_stored_hashed(client: httpx.AsyncClient, factory: Factory) -> None:
    from sqlalchemy import text

    user = await factory.user()
    token = await factory.webhook_token(user)
    async with factory.app.state.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM webhook_tokens"))).mappings().all()
    assert len(rows) == 1
    assert all(token not in str(value) for value in rows[0].values())


async def test_another_users_token_is_not_found(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    alice, bob = await factory.user(), await factory.user()
    issued = (await client.post("/api/webhook-tokens", json={}, headers=factory.auth(alice))).json()
    factory.secrets.add(issued["token"])
    attempt = await client.delete(f"/api/webhook-tokens/{issued['id']}", headers=factory.auth(bob))
    assert attempt.status_code == 404
    assert (await client.get("/api/webhook-tokens", headers=factory.auth(bob))).json() == []
    still = (await client.get("/api/webhook-tokens", headers=factory.auth(alice))).json()
    assert still[0]["revoked_at"] is None
