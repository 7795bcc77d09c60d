"""`POST /api/logs`: the web dashboard's batches become `service=web` lines; bad batches get
a 4xx naming the entry and field; the user comes only from a verified token."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from app.config import Settings
from tests.conftest import CapturedLogs, Factory, http_client, make_settings, running_app

URL = "/api/logs"


def entry(**overrides: Any) -> dict[str, Any]:
    return {
        "timestamp": datetime.now(UTC).isoformat(),
        "level": "error",
        "service": "web",
        "component": "trading",
        "message": "order form failed to load",
        "page": "/dashboard",
        "session_id": "6f1c2b9e-1111-4a4a-9d9d-abcdefabcdef",
        **overrides,
    }


def web_lines(captured: CapturedLogs, message: str) -> list[dict[str, Any]]:
    found = []
    for line in captured.lines:
        if message in line:
            parsed = json.loads(line)
            if parsed.get("service") == "web":
                found.append(parsed)
    return found


async def test_a_batch_is_re_emitted_as_web_lines_of_the_verified_user(
    client: httpx.AsyncClient, factory: Factory, captured_logs: CapturedLogs
) -> None:
    user = await factory.user("pro")
    batch = {"logs": [
        entry(message="chart crashed 7f3a", level="critical", stack_trace="Error: x\n at y",
              user_id="someone-else", error_type="TypeError", lineno=42),
        entry(message="socket reconnecting 7f3a", level="warn", component="websocket"),
    ]}  # fmt: skip
    answer = await client.post(URL, json=batch, headers=factory.auth(user))
    assert answer.status_code == 204, answer.text

    (crash,) = web_lines(captured_logs, "chart crashed 7f3a")
    assert crash["level"] == "critical" and crash["component"] == "trading"
    assert crash["user_id"] == user.id  # from the token; the body's claim is ignored
    assert crash["error_type"] == "TypeError" and crash["lineno"] == 42
    assert crash["page"] == "/dashboard" and crash["env"] == "test"
    (warn,) = web_lines(captured_logs, "socket reconnecting 7f3a")
    assert warn["level"] == "warning" and warn["component"] == "websocket"


async def test_a_beacon_without_token_is_accepted_as_text_plain(
    client: httpx.AsyncClient, captured_logs: CapturedLogs
) -> None:
    body = json.dumps({"logs": [entry(message="page hidden flush 91bc", user_id="forged")]})
    answer = await client.post(URL, content=body, headers={"Content-Type": "text/plain"})
    assert answer.status_code == 204, answer.text
    (line,) = web_lines(captured_logs, "page hidden flush 91bc")
    assert "user_id" not in line


async def test_bad_batches_name_the_entry_and_field(client: httpx.AsyncClient) -> None:
    cases: list[tuple[Any, int, str | None]] = [
        ({"logs": [entry(), entry(component="billing")]}, 422, "logs.1.component"),
        ({"logs": [entry(level="loud")]}, 422, "logs.0.level"),
        ({"logs": [entry(timestamp="2026-01-01T00:00:00")]}, 422, "logs.0.timestamp"),
        ({"logs": [entry(message="")]}, 422, "logs.0.message"),
        ({"logs": []}, 422, "logs"),
        ({"logs": [entry()] * 101}, 422, "logs"),
        ({"logs": [entry(context={"nested": True})]}, 422, "logs.0"),
        ({"logs": [entry(event="forged")]}, 422, "logs.0"),
        ({"entries": []}, 422, "logs"),
    ]
    for body, status, field in cases:
        answer = await client.post(URL, json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"]["field"] == field, answer.text
    not_json = await client.post(URL, content=b"{nope", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    huge = {"logs": [entry(message="x" * 2000, blob="y" * 1000)] * 40}
    too_big = await client.post(URL, json=huge)
    assert too_big.status_code == 413


async def test_batches_are_rate_limited_per_address(settings: Settings, clean_state: None) -> None:
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    strict = make_settings(
        settings.DATABASE_URL.get_secret_value(),
        settings.REDIS_URL.get_secret_value(),
        settings.LOCAL_DIR,
        FRONTEND_LOG_RATE_LIMIT=3,
    )
    async with running_app(strict) as app, http_client(app) as client:
        codes = [(await client.post(URL, json={"logs": [entry()]})).status_code for _ in range(4)]
        assert codes == [204, 204, 204, 429]
        limited = await client.post(URL, json={"logs": [entry()]})
        assert int(limited.headers["Retry-After"]) >= 1
