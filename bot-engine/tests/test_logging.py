"""Structured logging: line shape, context, redaction, and the per-request line."""

from __future__ import annotations

import json

import httpx
import structlog

from app.logging.logger import get_logger
from app.logging.redaction import REDACTED, redact_value, scrub_text
from tests.conftest import CapturedLogs, Factory, SecretsSeen


def _lines_with(captured: CapturedLogs, event: str) -> list[dict[str, object]]:
    found = []
    for line in captured.lines:
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if parsed.get("event") == event:
            found.append(parsed)
    return found


def test_a_line_is_json_with_the_common_fields(captured_logs: CapturedLogs) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-shape-1")
    try:
        get_logger("risk").info("shape_checked", amount="12.5")
    finally:
        structlog.contextvars.clear_contextvars()
    (line,) = _lines_with(captured_logs, "shape_checked")
    assert line["service"] == "bot"
    assert line["component"] == "risk"
    assert line["level"] == "info"
    assert line["request_id"] == "req-shape-1"
    assert str(line["timestamp"]).endswith("Z")
    assert line["amount"] == "12.5"


def test_stdlib_loggers_are_rendered_the_same_way(captured_logs: CapturedLogs) -> None:
    import logging

    logging.getLogger("somelib.sub").warning("plain %s message", "stdlib")
    line = next(json.loads(x) for x in captured_logs.lines if "plain stdlib message" in x)
    assert line["service"] == "bot"
    assert line["component"] == "somelib"
    assert line["level"] == "warning"


def test_redaction_by_key_and_by_shape(
    captured_logs: CapturedLogs, secrets_seen: SecretsSeen
) -> None:
    webhook = "jt_wh_" + "A1b2C3d4" * 5
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXBhcnQ"
    secrets_seen.add(webhook, jwt, "pa55w0rd-xyz", "sk-ant-api03-abcdefghijkl")
    get_logger("webhook").warning(
        "leak_attempt",
        token=webhook,
        headers={"Authorization": f"Bearer {jwt}", "accept": "json"},
        note=f"token={webhook}&x=1 and {jwt}",
        dsn="postgresql://user:pa55w0rd-xyz@db:5432/x",
        anthropic="key sk-ant-api03-abcdefghijkl",
        token_prefix="jt_wh_A1b2",
    )
    (line,) = _lines_with(captured_logs, "leak_attempt")
    rendered = json.dumps(line)
    for secret in (webhook, jwt, "pa55w0rd-xyz", "sk-ant-api03-abcdefghijkl"):
        assert secret not in rendered
    assert line["token"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED, "accept": "json"}
    assert line["token_prefix"] == "jt_wh_A1b2"  # non-secret, kept


def test_scrub_text_and_nested_values() -> None:
    assert scrub_text("GET /ws/connect?token=abc.def.ghi&x=1") == (
        f"GET /ws/connect?token={REDACTED}&x=1"
    )
    assert redact_value({"a": [{"api_secret": "s"}, "Bearer zzz"]}) == {
        "a": [{"api_secret": REDACTED}, f"Bearer {REDACTED}"]
    }


def test_exchange_api_keys_in_printed_request_headers_are_scrubbed() -> None:
    printed = (
        "GET https://fapi.binance.com/fapi/v1/order, Request: {'X-MBX-APIKEY': 'abcDEF123456',"
        ' \'User-Agent\': \'x\'} | {"X-BAPI-API-KEY": "bybitKEY987", "X-BAPI-SIGN": "f00d"}'
    )
    scrubbed = scrub_text(printed)
    for secret in ("abcDEF123456", "bybitKEY987", "f00d"):
        assert secret not in scrubbed
    assert "'X-MBX-APIKEY': '[REDACTED]'" in scrubbed and "'User-Agent': 'x'" in scrubbed


def test_the_exchange_library_does_not_log_requests_at_debug_level() -> None:
    import logging

    assert logging.getLogger("ccxt.base.exchange").getEffectiveLevel() >= logging.WARNING


def test_exceptions_are_scrubbed_too(
    captured_logs: CapturedLogs, secrets_seen: SecretsSeen
) -> None:
    webhook = "jt_wh_" + "ZyXw9876" * 5
    secrets_seen.add(webhook)
    try:
        raise ValueError(f"bad token {webhook}")
    except ValueError:
        get_logger("webhook").exception("failed_with_secret")
    (line,) = _lines_with(captured_logs, "failed_with_secret")
    assert webhook not in json.dumps(line)
    assert "ValueError" in str(line["exception"])


async def test_one_line_per_request_without_query_or_headers(
    client: httpx.AsyncClient, factory: Factory, captured_logs: CapturedLogs
) -> None:
    user = await factory.user()
    token = factory.access_token(user)
    response = await client.get(
        "/api/me?token=should-not-be-logged",
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-me-42"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-me-42"
    lines = [
        x
        for x in _lines_with(captured_logs, "http_request")
        if x.get("request_id") == "trace-me-42"
    ]
    assert len(lines) == 1
    (line,) = lines
    assert line["path"] == "/api/me"
    assert line["status"] == 200
    assert line["user_id"] == user.id
    assert isinstance(line["duration_ms"], float)
    assert "should-not-be-logged" not in json.dumps(line)


async def test_request_id_is_generated_when_missing_or_malformed(client: httpx.AsyncClient) -> None:
    first = await client.get("/health")
    second = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert len(first.headers["x-request-id"]) == 32
    assert second.headers["x-request-id"] != "bad id with spaces"


def test_telegram_bot_tokens_are_scrubbed_bare_and_in_bot_api_urls() -> None:
    token = "123456789:AAE-xyz_" + "Q7w9" * 7
    url = f"https://api.telegram.org/bot{token}/sendMessage"

    assert scrub_text(url) == f"https://api.telegram.org/bot123456789:{REDACTED}/sendMessage"
    assert scrub_text(f"token {token} rejected") == f"token 123456789:{REDACTED} rejected"
    assert token.split(":")[1] not in scrub_text(f"Authorization: Bearer {token}")
    # Things shaped a little like a token are left alone: timestamps, ids glued to a word,
    # short `<number>:<word>` pairs.
    for harmless in (
        "2026-01-01T12:30:45.123456Z",
        "dedupe:user-a1234567:" + "0f" * 32,
        "order 1234567:filled",
    ):
        assert scrub_text(harmless) == harmless


async def test_httpx_request_lines_to_the_bot_api_are_scrubbed(
    captured_logs: CapturedLogs, secrets_seen: SecretsSeen
) -> None:
    import logging

    from tests.support.telegram_server import TelegramBotApiServer

    httpx_logger = logging.getLogger("httpx")
    level = httpx_logger.level
    httpx_logger.setLevel(logging.INFO)  # httpx writes one INFO line per request, URL included
    try:
        with TelegramBotApiServer() as server:
            secrets_seen.add(server.token)
            async with httpx.AsyncClient(trust_env=False) as client:
                response = await client.post(f"{server.base_url}/bot{server.token}/getMe")
    finally:
        httpx_logger.setLevel(level)

    assert response.status_code == 200
    lines = [x for x in captured_logs.lines if f":{server.port}/bot{server.bot_id}:" in x]
    assert len(lines) == 1
    assert server.token not in lines[0]
    assert f"/bot{server.bot_id}:{REDACTED}/getMe" in lines[0]
