"""Liveness and readiness, including which dependency is down."""

from __future__ import annotations

import httpx
import pytest

from app.config import Settings
from app.embedded.ports import free_port
from tests.conftest import http_client, make_settings, running_app


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_both_reachable(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"postgres": "ok", "redis": "ok"}


@pytest.mark.parametrize("down", ["redis", "postgres"])
async def test_ready_names_the_unreachable_dependency(settings: Settings, down: str) -> None:
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    db = settings.DATABASE_URL.get_secret_value()
    redis = settings.REDIS_URL.get_secret_value()
    dead = free_port()
    if down == "redis":
        redis = f"redis://127.0.0.1:{dead}/0"
    else:
        db = f"postgresql://postgres@127.0.0.1:{dead}/nothing"
    broken = make_settings(db, redis, settings.LOCAL_DIR)
    async with running_app(broken) as app, http_client(app) as c:
        response = await c.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "not_ready"
    assert down in body["error"]["message"]
    assert body["checks"][down] == "unreachable"
    other = "postgres" if down == "redis" else "redis"
    assert body["checks"][other] == "ok"
