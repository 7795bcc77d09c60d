"""Webhook intake at the HTTP boundary: body handling, authentication, validation, limits,
source addresses, stale alerts, and durability when Redis is down."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from app.config import Settings
from app.embedded.ports import free_port
from app.models import TradingSignal
from app.workers import queue
from app.workers.signal_consumer import sweep_once
from tests.conftest import Factory, SecretsSeen, http_client, make_settings, running_app

URL = "/api/webhooks/tradingview"


def _alert(token: str, **fields: object) -> dict[str, object]:
    return {"token": token, "action": "long_entry", "symbol": "BTCUSDT", "stop_loss": "64000",
            "price": "65000", **fields}  # fmt: skip


async def test_authenticated_alert_is_queued(client: httpx.AsyncClient, factory: Factory) -> None:
    token = await factory.webhook_token(await factory.user())
    response = await client.post(URL, json=_alert(token))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "queued"
    assert body["signal_id"]


async def test_text_plain_json_is_accepted(client: httpx.AsyncClient, factory: Factory) -> None:
    token = await factory.webhook_token(await factory.user())
    response = await client.post(
        URL, content=json.dumps(_alert(token)), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "queued"


@pytest.mark.parametrize(
    "symbol", ["BTCUSDT", "btcusdt", "BINANCE:BTCUSDT", "BTCUSDT.P", "BTC/USDT", "BTC/USDT:USDT"]
)
async def test_every_symbol_form_is_one_instrument(
    client: httpx.AsyncClient, factory: Factory, symbol: str
) -> None:
    user = await factory.user()
    token = await factory.webhook_token(user)
    response = await client.post(URL, json=_alert(token, symbol=symbol))
    assert response.status_code == 200
    signal = (
        await client.get(f"/api/signals/{response.json()['signal_id']}", headers=factory.auth(user))
    ).json()
    assert signal["symbol"] == "BTCUSDT"
    assert "token" not in signal["raw_payload"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action": "buy_the_dip"}, "action"),
        ({"action": "buy"}, "market_position"),
        ({"symbol": "BTC USDT"}, "symbol"),
        ({"price": "-1"}, "price"),
        ({"stop_loss": "66000"}, "stop_loss"),
        ({"leverage": "500"}, "leverage"),
        ({"exchange": "mtgox"}, "exchange"),
        ({"strategy_id": "not-a-uuid"}, "strategy_id"),
        ({"qty": "abc"}, "qty"),
    ],
)
async def test_bad_fields_are_422_naming_the_field(
    client: httpx.AsyncClient, factory: Factory, fields: dict[str, object], field: str
) -> None:
    token = await factory.webhook_token(await factory.user())
    response = await client.post(URL, json=_alert(token, **fields))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert token not in response.text


async def test_unparsable_body_is_400(client: httpx.AsyncClient) -> None:
    for body in (b"", b"long_entry BTCUSDT", b"[1, 2]", b'{"token": ', b"\xff\xfe"):
        response = await client.post(URL, content=body, headers={"Content-Type": "text/plain"})
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] in {"empty_body", "invalid_json"}


async def test_missing_unknown_and_revoked_tokens_are_401(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    missing = await client.post(URL, json={"action": "long_exit", "symbol": "BTCUSDT"})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_token"
    assert missing.json()["error"]["field"] == "token"
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


@asynccontextmanager
async def _behind_proxy(
    settings: Settings, secrets_seen: SecretsSeen, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Factory]]:
    """The engine with `overrides`, reached through a trusted proxy on 127.0.0.1 (so a test
    names the client's address in X-Forwarded-For); one TradingView address is known."""
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    changed = make_settings(
        settings.DATABASE_URL.get_secret_value(),
        settings.REDIS_URL.get_secret_value(),
        settings.LOCAL_DIR,
        TRADINGVIEW_IPS=["52.89.214.238"],
        TRUSTED_PROXIES=["127.0.0.0/8"],
        **overrides,
    )
    async with running_app(changed) as app:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, Factory(app, secrets_seen)


@pytest.fixture
async def strict_client(
    settings: Settings, clean_state: None, secrets_seen: SecretsSeen
) -> AsyncIterator[tuple[httpx.AsyncClient, Factory]]:
    async with _behind_proxy(
        settings,
        secrets_seen,
        WEBHOOK_RATE_LIMIT=3,
        MAX_ALERT_AGE_S=60,
        TRADINGVIEW_IP_ALLOWLIST=True,
    ) as pair:
        yield pair


FROM_TRADINGVIEW = {"X-Forwarded-For": "52.89.214.238"}


async def test_rate_limit_per_token_is_429_with_retry_after(
    strict_client: tuple[httpx.AsyncClient, Factory],
) -> None:
    client, factory = strict_client
    token = await factory.webhook_token(await factory.user())
    codes = [
        (await client.post(URL, json=_alert(token, alert_id=f"a{i}"), headers=FROM_TRADINGVIEW))
        for i in range(4)
    ]
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    assert 1 <= int(codes[-1].headers["retry-after"]) <= 61
    assert codes[-1].json()["error"]["code"] == "rate_limited"


async def test_source_allow_list_trusts_only_configured_proxies(
    strict_client: tuple[httpx.AsyncClient, Factory],
) -> None:
    client, factory = strict_client
    token = await factory.webhook_token(await factory.user())
    ok = await client.post(URL, json=_alert(token), headers=FROM_TRADINGVIEW)
    assert ok.status_code == 200
    spoofed = await client.post(
        URL, json=_alert(token), headers={"X-Forwarded-For": "52.89.214.238, 203.0.113.9"}
    )
    assert spoofed.status_code == 403  # the proxy saw 203.0.113.9; the rest is the client's word
    assert spoofed.json()["error"]["code"] == "source_not_allowed"
    direct = await client.post(URL, json=_alert(token))
    assert direct.status_code == 403


async def test_stale_alert_is_refused(strict_client: tuple[httpx.AsyncClient, Factory]) -> None:
    client, factory = strict_client
    token = await factory.webhook_token(await factory.user())
    old = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = await client.post(URL, json=_alert(token, timenow=old), headers=FROM_TRADINGVIEW)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "timenow"
    fresh = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = await client.post(URL, json=_alert(token, timenow=fresh), headers=FROM_TRADINGVIEW)
    assert response.status_code == 200


async def test_alerts_are_kept_while_redis_is_down_and_queued_later(
    settings: Settings, clean_state: None, secrets_seen: SecretsSeen, app: object
) -> None:
    assert settings.DATABASE_URL is not None
    no_redis = make_settings(
        settings.DATABASE_URL.get_secret_value(),
        f"redis://127.0.0.1:{free_port()}/0",
        settings.LOCAL_DIR,
    )
    async with running_app(no_redis) as broken, http_client(broken) as client:
        factory = Factory(broken, secrets_seen)
        token = await factory.webhook_token(await factory.user())
        response = await client.post(URL, json=_alert(token))
    assert response.status_code == 200
    assert response.json()["status"] == "queued"

    healthy = app.state  # type: ignore[attr-defined]
    async with healthy.sessionmaker() as session:
        stored = await session.scalar(select(TradingSignal.status))
        assert stored == "queued"  # committed although Redis was unreachable
        await session.execute(
            update(TradingSignal).values(created_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        await session.commit()
    assert await sweep_once(healthy.redis, healthy.pg) == 1
    await queue.ensure_group(healthy.redis)
    (bell,) = await queue.read(healthy.redis, "test-consumer", count=10, block_ms=100)
    assert str(bell.signal_id) == response.json()["signal_id"]


async def test_database_down_is_a_clear_503(settings: Settings, clean_state: None) -> None:
    assert settings.REDIS_URL is not None
    no_db = make_settings(
        f"postgresql://postgres@127.0.0.1:{free_port()}/gone",
        settings.REDIS_URL.get_secret_value(),
        settings.LOCAL_DIR,
    )
    async with running_app(no_db) as broken:
        transport = httpx.ASGITransport(app=broken, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post(URL, json=_alert("jt_wh_" + "y" * 43))
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response.headers["retry-after"] == "5"


async def test_a_strategy_id_must_name_a_strategy(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    token = await factory.webhook_token(await factory.user())
    async with factory.app.state.pg.acquire() as conn:
        known = await conn.fetchval(
            "INSERT INTO strategies (name) VALUES ($1) RETURNING id", f"s-{uuid.uuid4().hex[:8]}"
        )
    response = await client.post(URL, json=_alert(token, strategy_id=str(uuid.uuid4())))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("unknown_strategy", "strategy_id")
    accepted = await client.post(URL, json=_alert(token, strategy_id=str(known)))
    assert accepted.status_code == 200, accepted.text


@pytest.fixture
async def guarded_client(
    settings: Settings, clean_state: None, secrets_seen: SecretsSeen
) -> AsyncIterator[tuple[httpx.AsyncClient, Factory]]:
    """Bad tokens limited to 3 a minute per source; sources named by a trusted proxy."""
    async with _behind_proxy(settings, secrets_seen, WEBHOOK_BAD_TOKEN_LIMIT=3) as pair:
        yield pair


ATTACKER = {"X-Forwarded-For": "203.0.113.66"}


async def test_a_source_guessing_tokens_is_throttled(
    guarded_client: tuple[httpx.AsyncClient, Factory],
) -> None:
    client, factory = guarded_client
    token = await factory.webhook_token(await factory.user())
    guesses = [
        await client.post(URL, json=_alert(f"jt_wh_guess{i}"), headers=ATTACKER) for i in range(3)
    ]
    assert [r.status_code for r in guesses] == [401, 401, 401]
    missing = await client.post(URL, json={"action": "long_entry", "symbol": "BTCUSDT"},
                                headers=ATTACKER)  # fmt: skip
    assert missing.status_code == 429  # the fourth attempt: refused before any look-up
    body = missing.json()["error"]
    assert body["code"] == "rate_limited" and "unknown token" in body["message"]
    assert 1 <= int(missing.headers["retry-after"]) <= 61
    # Even a right token from that source waits out the window: guessing stops paying off.
    assert (await client.post(URL, json=_alert(token), headers=ATTACKER)).status_code == 429
    # Other sources are not affected.
    other = await client.post(URL, json=_alert(token), headers={"X-Forwarded-For": "198.51.100.7"})
    assert other.status_code == 200


async def test_tradingview_addresses_are_never_throttled_for_bad_tokens(
    guarded_client: tuple[httpx.AsyncClient, Factory],
) -> None:
    # One user's mistyped token arrives from TradingView's servers, like everyone's alerts.
    client, factory = guarded_client
    token = await factory.webhook_token(await factory.user())
    for i in range(5):
        bad = await client.post(URL, json=_alert(f"jt_wh_typo{i}"), headers=FROM_TRADINGVIEW)
        assert bad.status_code == 401
    assert (await client.post(URL, json=_alert(token), headers=FROM_TRADINGVIEW)).status_code == 200


async def test_good_tokens_do_not_count_towards_the_limit(
    guarded_client: tuple[httpx.AsyncClient, Factory],
) -> None:
    client, factory = guarded_client
    token = await factory.webhook_token(await factory.user())
    for i in range(5):
        response = await client.post(URL, json=_alert(token, alert_id=f"ok{i}"), headers=ATTACKER)
        assert response.status_code == 200, response.text
