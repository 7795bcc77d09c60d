"""Every error answer is the same envelope — unknown routes, validation, crashes."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from tests.conftest import Factory, running_app


def _assert_envelope(body: dict[str, object], code: str) -> dict[str, object]:
    assert set(body) >= {"error"}
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"code", "message", "field"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


async def test_unknown_route_is_404_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    _assert_envelope(response.json(), "not_found")


async def test_wrong_method_is_405_envelope(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    assert response.status_code == 405
    _assert_envelope(response.json(), "method_not_allowed")


async def test_validation_error_names_the_field(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    response = await client.post(
        "/api/webhook-tokens", json={"name": "x" * 101}, headers=factory.auth(user)
    )
    assert response.status_code == 422
    error = _assert_envelope(response.json(), "validation_error")
    assert error["field"] == "name"
    assert "name" in str(error["message"])


async def test_path_parameter_validation_is_422(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    response = await client.delete("/api/webhook-tokens/not-a-uuid", headers=factory.auth(user))
    assert response.status_code == 422
    assert _assert_envelope(response.json(), "validation_error")["field"] == "token_id"


@pytest.fixture
async def crashing_app(settings: Settings) -> object:
    async with running_app(settings) as app:
        app.router.add_api_route("/boom", _boom)
        yield app


async def _boom() -> None:
    raise RuntimeError("internal detail that must not leak")


async def test_unhandled_error_is_500_envelope_without_details(crashing_app: FastAPI) -> None:
    # The server re-raises after answering (so the ASGI server sees it); we look at the answer.
    transport = httpx.ASGITransport(app=crashing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        response = await c.get("/boom")
    assert response.status_code == 500
    _assert_envelope(response.json(), "internal_error")
    assert "internal detail" not in response.text
    assert "Traceback" not in response.text
