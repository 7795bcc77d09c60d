"""Hostile requests to the real webhook route, `POST /api/webhooks/tradingview`, through the
whole ASGI app: raw bytes, invalid UTF-8, huge numbers, deep nesting, wrong content types,
text/plain bodies as TradingView sends them, repeated keys, bodies over the size limit, and
alerts carrying a real token with hostile fields.

Whatever arrives, the answer is a 2xx or a 4xx with the engine's JSON error body
`{"error": {"code", "message", "field"}}`, never a 5xx, never the token; and the signals
stored for each user are exactly those a 2xx answered (counted before and after every
request): none is half-written. `parse_alert` alone is fuzzed in
tests/core/test_signal_processor_props.py; this is the route around it.

Deterministic (derandomized, no example database). `FUZZ_EXAMPLES` (default 200) is the number
of examples of each test; a longer run:

    FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/security/test_webhook_fuzz.py
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.core.pg import Pool
from tests.conftest import (
    CapturedLogs,
    Factory,
    SecretsSeen,
    http_client,
    make_settings,
    running_app,
)

URL = "/api/webhooks/tradingview"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ACCEPTED = {"queued", "logged", "duplicate"}
MAX_BODY = 64 * 1024


@dataclass
class Account:
    user_id: str
    token: str
    auth: dict[str, str]  # the user's Bearer access token, for the REST API
    accepted: set[str] = field(default_factory=set)  # signal ids answered with a 2xx


@dataclass
class Intake:
    """The engine, a client of it, and two accounts (Pro: alerts are queued; free: logged)."""

    client: httpx.AsyncClient
    pool: Pool
    accounts: list[Account]
    captured: CapturedLogs
    documented: set[int]  # the route's status codes in the engine's OpenAPI document
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)  # error codes of the refusals

    async def stored(self, account: Account) -> set[str]:
        async with self.pool.acquire() as db:
            rows = await db.fetch(
                "SELECT id FROM trading_signals WHERE user_id = $1", account.user_id
            )
        return {str(row["id"]) for row in rows}

    async def post(self, body: bytes, content_type: str | None) -> httpx.Response:
        """POST `body` and check the answer and what was stored for every account."""
        before = {a.user_id: await self.stored(a) for a in self.accounts}
        headers = {} if content_type is None else {"Content-Type": content_type}
        errors_before = _error_lines(self.captured)
        response = await self.client.post(URL, content=body, headers=headers)
        _check_answer(response, self.documented, [a.token for a in self.accounts])
        self.statuses[response.status_code] += 1
        if not response.is_success:
            self.codes[response.json()["error"]["code"]] += 1
        grown: set[str] = set()
        for account in self.accounts:
            after = await self.stored(account)
            assert before[account.user_id] <= after, "a stored signal disappeared"
            new = after - before[account.user_id]
            if new:
                assert response.is_success, f"{response.status_code} {response.text}, stored {new}"
                account.accepted |= new
                grown |= new
            assert after == account.accepted, "a stored signal no 2xx answered"
        if response.is_success:
            answer = response.json()
            if answer["status"] == "duplicate":  # the original, stored earlier
                assert not grown and any(answer["signal_id"] in a.accepted for a in self.accounts)
            else:
                assert grown == {answer["signal_id"]}, (grown, answer)
        assert _error_lines(self.captured) == errors_before, "the request logged an error"
        return response


def _error_lines(captured: CapturedLogs) -> int:
    return sum('"level":"error"' in line for line in captured.lines)


def _check_answer(response: httpx.Response, documented: set[int], tokens: list[str]) -> None:
    status = response.status_code
    assert status < 500, response.text
    assert status in documented, (status, response.text)
    assert response.headers["content-type"] == "application/json", response.headers
    body = response.json()
    if response.is_success:
        assert status == 200
        assert set(body) == {"status", "message", "signal_id"}, body
        assert body["status"] in ACCEPTED
        uuid.UUID(body["signal_id"])
    else:
        assert set(body) == {"error"}, body
        error = body["error"]
        assert {"code", "message", "field"} <= set(error) <= {"code", "message", "field",
                                                               "details"}, error  # fmt: skip
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
        assert error["field"] is None or isinstance(error["field"], str)
    for token in tokens:
        assert token not in response.text


@pytest.fixture(scope="module")
async def intake(
    settings: Settings, secrets_seen: SecretsSeen, captured_logs: CapturedLogs
) -> AsyncIterator[Intake]:
    """The engine with its per-token and per-address limits lifted: every example comes from
    one address with one of two tokens, and a 429 after a few would hide the route behind."""
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    lifted = make_settings(
        settings.DATABASE_URL.get_secret_value(),
        settings.REDIS_URL.get_secret_value(),
        settings.LOCAL_DIR,
        WEBHOOK_RATE_LIMIT=1_000_000,
        WEBHOOK_BAD_TOKEN_LIMIT=1_000_000,
    )
    async with running_app(lifted) as app, http_client(app) as client:
        factory = Factory(app=app, secrets=secrets_seen)
        accounts = []
        for tier in ("pro", "free"):
            user = await factory.user(tier)
            accounts.append(Account(user.id, await factory.webhook_token(user), factory.auth(user)))
        documented = {int(s) for s in app.openapi()["paths"][URL]["post"]["responses"]}
        intake = Intake(client, app.state.pg, accounts, captured_logs, documented)
        yield intake
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(intake.statuses.items()))
    codes = ", ".join(f"{code}: {n}" for code, n in intake.codes.most_common())
    print(  # noqa: T201 (the summary a run with -s shows)
        f"\nwebhook fuzz: {intake.statuses.total()} requests, "
        f"{sum(len(a.accepted) for a in accounts)} signals stored; status codes {{{statuses}}}; "
        f"refusals {{{codes}}}"
    )


# --------------------------------------------------------------------------- strategies
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "text/plain",
        "text/plain; charset=utf-8",
        "text/plain; charset=latin-1",
        "application/json; charset=utf-16",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/xml",
        "*/*",
        "",
        "not a media type",
    ]
)
INVALID_UTF8 = st.sampled_from(
    [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
     b"\xc0\xaf", b"\x80", b"\x00"]
)  # fmt: skip
HUGE_NUMBERS = st.sampled_from(
    [
        "1" * 5000,  # past Python's 4300-digit limit for int()
        "-" + "9" * 400,
        "1e999999999",
        "-1e-999999999",
        "1E400",
        "0." + "0" * 5000 + "1",
        "123456789012345678901234567890123456789012345678901234567890",
        "1e308",
        "-0",
        "NaN",
        "Infinity",
        "-Infinity",
    ]
)
HOSTILE_TEXT = st.sampled_from(
    [
        "\\u0000",
        "a\\u0000b",
        "\\ud800",
        "\\udfff\\ud800",
        "{{close}}",
        "{{strategy.order.action}}",
        "",
        " ",
        "x" * 1001,
        "x" * 70000,
        "\\n\\t\\r",
        "../../etc/passwd",
        "'; DROP TABLE trading_signals; --",
        "<script>alert(1)</script>",
        "%00",
        "\\u202e",
    ]
)  # JSON string contents, escapes included, written between quotes as they are


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # json.dumps writes NaN and Infinity as the bare words
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
# A field's value as JSON text: any JSON, a huge number, a hostile string, deep nesting.
# Values a field could plausibly be sent with and that are still wrong (or just right).
NEAR_MISSES: st.SearchStrategy[Any] = st.sampled_from(
    ["-1", "0", "1e-19", "1e12", "10x", "126", "0.5", "65,000", "BTC USDT", "BTC", "mtgox",
     "not-a-uuid", "2024-05-01T12:00:00", "9999-12-31T23:59:59Z", 1714564800000, 10**13, -5,
     0, 1.5, True, None, [], {}, "long", "flat", "buy", "sell", "Long-Entry", "BYBIT:BTCUSDT"]
)  # fmt: skip


def _nested(depth: int, opener: str, closer: str, inner: str = "") -> str:
    return opener * depth + inner + closer * depth


# A field's value as JSON text: any JSON, a near miss, a huge number, a hostile string, deep
# nesting on both sides of the parser's limit (32).
field_texts = (
    json_values.map(json.dumps)
    | json_values.map(json.dumps)
    | NEAR_MISSES.map(json.dumps)
    | NEAR_MISSES.map(json.dumps)
    | NEAR_MISSES.map(json.dumps)
    | HUGE_NUMBERS
    | HOSTILE_TEXT.map(lambda text: f'"{text}"')
    | st.integers(min_value=1, max_value=64).map(lambda n: _nested(n, "[", "]"))
    | st.integers(min_value=1, max_value=5000).map(lambda n: _nested(n, '{"a":', "}", "1"))
)
FIELDS = ("action", "symbol", "price", "close", "stop_loss", "take_profit", "qty",
          "contracts", "notional_usd", "risk_percent", "leverage", "exchange", "strategy_id",
          "alert_id", "timenow", "message", "comment", "market_position",
          "prev_market_position", "token")  # fmt: skip
VALID_ALERTS: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
    [
        {"action": "long_entry", "symbol": "BTCUSDT", "price": "65000", "stop_loss": "64000"},
        {"action": "short_entry", "symbol": "BINANCE:ETHUSDT.P", "price": 3000,
         "stop_loss": 3100, "take_profit": 2800.5, "leverage": "5x"},
        {"action": "buy", "market_position": "long", "symbol": "btc/usdt", "qty": "0.01",
         "stop_loss": 60000, "price": 65000, "exchange": "paper"},
        {"action": "long_exit", "symbol": "BTCUSDT.P"},
        {"action": "Short Exit", "symbol": "SOLUSDT", "timenow": "2026-01-01T00:00:00Z"},
    ]
)  # fmt: skip


@st.composite
def alert_documents(draw: st.DrawFn, token: str) -> str:
    """A valid alert with `token`, as JSON text, and then: fields replaced by hostile values,
    unknown fields added, a key repeated. Written by hand so that every form can be sent
    (NaN, repeated keys, escapes json.dumps would not write)."""
    fields: dict[str, str] = {k: json.dumps(v) for k, v in draw(VALID_ALERTS).items()}
    fields["alert_id"] = json.dumps(draw(st.text(min_size=1, max_size=12)))  # most are new
    fields["token"] = json.dumps(token)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        if name != "token" or draw(st.booleans()):
            fields[name] = draw(field_texts)
    names = st.text(max_size=40) | st.sampled_from(["", "token ", "TOKEN", "__proto__", "x" * 300])
    extra = draw(st.dictionaries(names, field_texts, max_size=2))
    fields.update((k, v) for k, v in extra.items() if k not in fields)
    pairs = [(json.dumps(k), v) for k, v in fields.items()]
    if draw(st.integers(0, 9)) == 0:  # a key twice: which value would win is ambiguous
        pairs.append(draw(st.sampled_from(pairs)))
    order = draw(st.permutations(pairs))
    return "{" + ", ".join(f"{k}: {v}" for k, v in order) + "}"


@st.composite
def corrupted(draw: st.DrawFn, text: str) -> bytes:
    """`text` as UTF-8 with bytes that are not UTF-8 spliced in, or cut mid-character, or
    behind a byte order mark."""
    raw = text.encode()
    how = draw(st.sampled_from(["splice", "cut", "bom", "latin-1"]))
    if how == "splice":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(INVALID_UTF8) + raw[at:]
    if how == "cut":
        return raw[: draw(st.integers(0, len(raw)))]
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    return text.encode("latin-1", errors="replace")


# --------------------------------------------------------------------------- properties
@FUZZ
@given(
    body=st.binary(max_size=2048)
    | st.lists(INVALID_UTF8 | st.binary(max_size=8), max_size=20).map(b"".join)
    | st.sampled_from([b"", b" ", b"null", b"[]", b"{}", b'"text"', b"long_entry BTCUSDT"]),
    content_type=CONTENT_TYPES,
)
async def test_arbitrary_bytes_are_answered_with_a_clean_4xx(
    intake: Intake, body: bytes, content_type: str | None
) -> None:
    response = await intake.post(body, content_type)
    assert not response.is_success


@FUZZ
@given(data=st.data(), content_type=CONTENT_TYPES)
async def test_hostile_alerts_with_a_real_token(
    intake: Intake, data: st.DataObject, content_type: str | None
) -> None:
    account = data.draw(st.sampled_from(intake.accounts), label="account")
    document = data.draw(alert_documents(account.token), label="document")
    body = document.encode()
    if data.draw(st.integers(0, 3), label="corrupt") == 0:
        body = data.draw(corrupted(document), label="corrupted")
    await intake.post(body, content_type)


@FUZZ
@given(data=st.data())
async def test_tradingview_text_plain_alerts_are_stored_once(
    intake: Intake, data: st.DataObject
) -> None:
    """What TradingView sends: the alert message as text/plain, the same one again when it
    retries. A valid alert is stored once; its repetition answers with the same signal."""
    account = data.draw(st.sampled_from(intake.accounts), label="account")
    # A new alert id every time (not drawn: Hypothesis may draw one twice, a duplicate).
    alert = {**data.draw(VALID_ALERTS), "token": account.token, "alert_id": uuid.uuid4().hex}
    text = data.draw(st.sampled_from([json.dumps(alert), json.dumps(alert, indent=2)]))
    first = await intake.post(text.encode(), "text/plain; charset=utf-8")
    again = await intake.post(text.encode(), "text/plain; charset=utf-8")
    assert first.status_code == 200, first.text
    assert first.json()["status"] == ("queued" if account is intake.accounts[0] else "logged")
    assert again.json() == {**first.json(), "status": "duplicate",
                            "message": again.json()["message"]}  # fmt: skip


@settings(FUZZ, max_examples=max(4, EXAMPLES // 10))
@given(
    size=st.integers(min_value=MAX_BODY + 1, max_value=4 * MAX_BODY),
    content_type=CONTENT_TYPES,
)
async def test_bodies_over_the_limit_are_413(
    intake: Intake, size: int, content_type: str | None
) -> None:
    token = intake.accounts[0].token
    head = json.dumps({"token": token, "action": "long_exit", "symbol": "BTCUSDT"})[:-1]
    body = (head + ', "message": "' + "x" * size + '"}').encode()
    response = await intake.post(body, content_type)
    assert response.status_code == 413


async def test_an_unknown_field_beyond_64_bits_is_stored_exactly(intake: Intake) -> None:
    """What a long fuzzing run found (a 500): a number no 64-bit integer holds, in a field the
    engine does not know. The alert is accepted and the number kept as sent."""
    account = intake.accounts[0]
    big = [-(2**63) - 1, 2**64, 10**40]
    alert = {"token": account.token, "action": "long_exit", "symbol": "BTCUSDT",
             "alert_id": uuid.uuid4().hex, "note": {"n": big}}  # fmt: skip
    response = await intake.post(json.dumps(alert).encode(), "text/plain")
    assert response.status_code == 200, response.text
    async with intake.pool.acquire() as db:
        stored = await db.fetchval(
            "SELECT raw_payload->'note'->'n' #>> '{}' FROM trading_signals WHERE id = $1",
            uuid.UUID(response.json()["signal_id"]),
        )
    assert json.loads(stored) == big
    shown = await intake.client.get(f"/api/signals/{response.json()['signal_id']}",
                                    headers=account.auth)  # fmt: skip
    assert shown.status_code == 200, shown.text
    assert shown.json()["raw_payload"]["note"] == {"n": big}
