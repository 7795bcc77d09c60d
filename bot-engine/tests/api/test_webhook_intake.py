"""Webhook intake as far as it is built: body handling and token authentication."""

from __future__ import annotations

import json

import httpx

from tests.conftest import Factory

URL = "/api/webhooks/tradingview"


def _alert(token: str, **fields: object) -> dict[str, object]:
    return {"token": token, "action": "long_entry", "symbol": "BTCUSDT", **fields}


async def test_authenticated_alert_reaches_the_route(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    token = await factory.webhook_token(await factory.user())
    response = await client.post(URL, json=_alert(token))
    assert response.status_code == 501
    assert response.json()["error"]["code"] == "execution_unavailable"


async def test_text_plain_json_is_accepted(client: httpx.AsyncClient, factory: Factory) -> None:
    token = await factory.webhook_token(await factory.user())
    response = await client.post(
        URL, content=json.dumps(_alert(token)), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 501


async def test_unparsable_body_is_400(client: httpx.AsyncClient) -> None:
    for body in (b"", b"long_entry BTCUSDT", b"[1, 2]", b'{"token": '):
        response = await client.post(URL, content=body, headers={"Content-Type": "text/plain"})
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] in {"empty_body", "invalid_json"}


async def test_missing_unknown_and_revoked_tokens_are_401(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    missing = await client.post(URL, json={"action": "long_entry"})
    assert missing.status_code == 401
    assert missing.json()["error"] == {
        "code": "missing_token",
        "message": "the alert has no token",
        "field": "token",
    }
    unknown = await client.post(URL, json=_alert("jt_wh_" + "x" * 43))
    assert unknown.status_code == 401
    assert unknown.json()["error"]["code"] == "invalid_token"

    user = await factory.user()
    auth = factory.auth(user)
    issued = (await client.post("/api/webhook-tokens", json={}, headers=auth)).json()
    factory.secrets.add(issued["token"])
    await client.delete(f"/api/webhook-tokens/{issued['id']}", headers=auth)
    revoked = await client.post(URL, json=_alert(issued["token"]))
    assert revoked.status_code == 401


async def test_body_over_64_kib_is_413(client: httpx.AsyncClient) -> None:
    big = b'{"token": "' + b"x" * (64 * 1024) + b'"}'
    response = await client.post(URL, content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_token_use_is_recorded(client: httpx.AsyncClient, factory: Factory) -> None:
    user = await factory.user()
    token = await factory.webhook_token(user)
    await client.post(URL, json=_alert(token))
    listed = (await client.get("/api/webhook-tokens", headers=factory.auth(user))).json()
    assert listed[0]["last_used_at"] is not None
