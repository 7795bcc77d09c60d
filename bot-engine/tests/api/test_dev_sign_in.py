"""The dashboard's sign-in support: `GET /api/auth/options` and the development token of the demo
account, which only this machine gets by default and production never."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.core.users import DEMO_EMAIL
from tests.conftest import SecretsSeen, http_client, make_settings, running_app


@pytest.fixture
async def engine_with(settings: Settings, clean_state: None) -> AsyncIterator[Any]:
    """Start the engine with some settings changed; yields a client factory."""
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    database, redis = settings.DATABASE_URL, settings.REDIS_URL
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> httpx.AsyncClient:
            changed = make_settings(
                database.get_secret_value(),
                redis.get_secret_value(),
                settings.LOCAL_DIR,
                **overrides,
            )
            app = await stack.enter_async_context(running_app(changed))
            return await stack.enter_async_context(http_client(app))

        yield start


async def test_a_local_engine_offers_and_issues_a_dev_token(
    client: httpx.AsyncClient, secrets_seen: SecretsSeen
) -> None:
    options = (await client.get("/api/auth/options")).json()
    assert options == {
        "auth_mode": "local",
        "dev_token": True,
        "webhook_url": "http://testserver/api/webhooks/tradingview",
    }
    issued = await client.post("/api/auth/dev-token")
    assert issued.status_code == 200, issued.text
    body = issued.json()
    secrets_seen.add(body["access_token"])
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert (me.json()["id"], me.json()["email"]) == (body["user_id"], DEMO_EMAIL)
    assert me.json()["subscription_tier"] == "pro"

    again = (await client.post("/api/auth/dev-token")).json()
    secrets_seen.add(again["access_token"])
    assert again["user_id"] == body["user_id"]  # the same demo account, not a new one


async def test_a_caller_from_another_machine_gets_none_by_default(engine_with: Any) -> None:
    # The test client connects from 127.0.0.1; through a trusted proxy it can claim the
    # address of a remote browser, as a real proxy would report it.
    client = await engine_with(TRUSTED_PROXIES=["127.0.0.1/32"])
    remote = {"X-Forwarded-For": "203.0.113.9"}
    assert (await client.get("/api/auth/options", headers=remote)).json()["dev_token"] is False
    refused = await client.post("/api/auth/dev-token", headers=remote)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "dev_tokens_disabled"
    assert "DEV_SIGN_IN" in refused.json()["error"]["message"]
    assert "access_token" not in refused.text


async def test_dev_sign_in_can_be_opened_to_any_caller_or_turned_off(
    engine_with: Any, secrets_seen: SecretsSeen
) -> None:
    remote = {"X-Forwarded-For": "203.0.113.9"}
    opened = await engine_with(TRUSTED_PROXIES=["127.0.0.1/32"], DEV_SIGN_IN="any")
    issued = await opened.post("/api/auth/dev-token", headers=remote)
    assert issued.status_code == 200
    secrets_seen.add(issued.json()["access_token"])

    off = await engine_with(DEV_SIGN_IN="off")
    assert (await off.get("/api/auth/options")).json()["dev_token"] is False
    assert (await off.post("/api/auth/dev-token")).status_code == 403


async def test_cognito_mode_never_issues_one(engine_with: Any) -> None:
    client = await engine_with(AUTH_MODE="cognito", DEV_SIGN_IN="any")
    options = (await client.get("/api/auth/options")).json()
    assert (options["auth_mode"], options["dev_token"]) == ("cognito", False)
    refused = await client.post("/api/auth/dev-token")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "dev_tokens_disabled"
