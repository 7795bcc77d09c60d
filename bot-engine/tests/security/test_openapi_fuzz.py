"""Schemathesis against the OpenAPI document the engine serves (`app.openapi()`): generated
requests, schema-valid and not, for every operation, sent over a real socket to the engine as
a real user (Bearer access token) and as nobody (no token, a forged one, one of no account).
Every answer must be documented: never a 5xx, a documented status code and content type, and
a body that matches the documented schema.

Generated requests are seeded with real values part of the time so that handlers get past
their first refusal: the ids of the user's signal, trade, positions, notification, webhook
token and conversation in paths; the user's webhook token in alert bodies; credentials the
exchange emulators accept in new exchange keys.

Deterministic (derandomized Hypothesis, no example database). `FUZZ_EXAMPLES` (default 10) is
the number of examples per operation, generation mode and caller; a longer run:

    FUZZ_EXAMPLES=200 .venv/bin/python -m pytest tests/security/test_openapi_fuzz.py -s

`-s` shows the summary line (operations, cases, status codes).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
import pytest
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from app.models import Notification, RealPosition, RealTrade, User
from tests.conftest import Factory, SecretsSeen, http_client, make_settings, running_app
from tests.exchange_sim.binance_futures import BinanceFuturesServer
from tests.exchange_sim.bybit_v5 import BybitV5Server
from tests.support.venues import new_credentials
from tests.support.ws import served

pytest_plugins = ("tests.support.live",)  # the exchange emulators

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
REQUEST_TIMEOUT_S = 15.0
WEBHOOK = "POST /api/webhooks/tradingview"
ADD_EXCHANGE_KEY = "POST /api/exchange-keys"
Operation = APIOperation[Any, Any, Any, Any]
Headers = dict[str, str]


@dataclass
class Seeds:
    """Real values of the user's, swapped into generated requests part of the time."""

    path_ids: dict[str, list[str]]  # path parameter name -> ids of the user's items
    webhook_token: str
    exchange_key: tuple[str, str]  # accepted by both emulators


@dataclass
class Fuzzer:
    """Runs generated requests against the served engine and keeps count of them."""

    base_url: str
    seeds: Seeds
    callers: dict[str, st.SearchStrategy[Headers]]
    secrets: SecretsSeen
    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)

    def run(self, operations: list[Operation]) -> None:
        """Every operation, in each generation mode it allows, for each caller; a failure is
        kept (the shrunk example and the checks it failed) and the next one runs."""
        for operation in operations:
            modes = [GenerationMode.POSITIVE]
            if _negatable(operation):
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                for caller, headers in self.callers.items():
                    try:
                        self.fuzz(operation, mode, headers)
                    except (Exception, BaseExceptionGroup) as exc:  # FailureGroup is a group
                        self.failures[f"{operation.label} ({mode.value}, {caller})"] = str(exc)

    def fuzz(
        self, operation: Operation, mode: GenerationMode, callers: st.SearchStrategy[Headers]
    ) -> None:
        """EXAMPLES requests of one operation; raises the (shrunk) first failure."""
        cases = _cases(operation, mode)
        with requests.Session() as http:

            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                phases=(Phase.explicit, Phase.generate, Phase.shrink),
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
            )
            @given(data=st.data())
            def run(data: st.DataObject) -> None:
                case = data.draw(cases, label="case")
                headers = data.draw(callers, label="caller")
                _seed(case, data, self.seeds)
                response = case.call(
                    base_url=self.base_url, session=http, headers=headers,
                    timeout=REQUEST_TIMEOUT_S,
                )  # fmt: skip
                self.cases[operation.label] += 1
                self.statuses[response.status_code] += 1
                if response.status_code < 300 and "json" in _content_type(response):
                    self.keep_secrets(response.json())
                case.validate_response(response, checks=CHECKS, headers=headers)

            run()

    def keep_secrets(self, body: Any) -> None:
        """Tokens the engine issued to the fuzzer (dev tokens, webhook tokens) join the
        secrets the session greps the logs for."""
        if isinstance(body, dict):
            self.secrets.add(*(body[k] for k in ("token", "access_token") if k in body))

    def summary(self, seconds: float) -> str:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (
            f"openapi fuzz: {len(self.cases)} operations, {self.cases.total()} cases in "
            f"{seconds:.1f} s; status codes {{{statuses}}}"
        )


def _negatable(operation: Operation) -> bool:
    """Whether the operation has anything a request could get wrong (without, negative
    generation is unsatisfiable)."""
    return bool(
        len(operation.path_parameters)
        or len(operation.query)
        or len(operation.headers)
        or operation.body
    )


def _cases(operation: Operation, mode: GenerationMode) -> st.SearchStrategy[Case[Any]]:
    """The operation's generated requests, each documented body media type as likely as the
    others (schemathesis alone may stick to one: the alerts TradingView sends as text/plain
    and those sent as JSON both matter)."""
    media_types = sorted({alternative.media_type for alternative in operation.body})
    if len(media_types) < 2:
        return operation.as_strategy(generation_mode=mode)
    return st.one_of(
        *(operation.as_strategy(generation_mode=mode, media_type=m) for m in media_types)
    )


# Alerts every field of which is valid, so that the token decides: 401 or 200. The generated
# ones rarely get that far (a random symbol is a 422 before the token is looked at).
_PLAUSIBLE_ALERTS: st.SearchStrategy[dict[str, Any]] = st.builds(
    dict,
    st.sampled_from(
        [
            {"action": "long_entry", "symbol": "BTCUSDT", "price": "65000", "stop_loss": "64000"},
            {"action": "short_entry", "symbol": "BINANCE:ETHUSDT.P", "price": 3000,
             "stop_loss": 3100, "take_profit": "2800.5", "leverage": "5x"},
            {"action": "buy", "market_position": "long", "symbol": "btc/usdt", "qty": "0.01",
             "stop_loss": 60000, "exchange": "paper"},
            {"action": "long_exit", "symbol": "BTCUSDT.P"},
        ]
    ),
    alert_id=st.text(max_size=16),
)  # fmt: skip


def _seed(case: Case[Any], data: st.DataObject, seeds: Seeds) -> None:
    """Swap real values of the user's into `case`, each with an even chance."""
    for name in list(case.path_parameters or {}):
        if name in seeds.path_ids and data.draw(st.booleans(), label=f"real {name}"):
            case.path_parameters[name] = data.draw(st.sampled_from(seeds.path_ids[name]))
    label = case.operation.label
    if label == WEBHOOK:
        token = data.draw(st.sampled_from([None, seeds.webhook_token, "jt_wh_" + "x" * 43]))
        if token is None:  # as generated
            return
        if data.draw(st.booleans(), label="plausible alert"):
            alert = {**data.draw(_PLAUSIBLE_ALERTS), "token": token}
            case.body = alert if isinstance(case.body, dict) else orjson.dumps(alert).decode()
        elif isinstance(case.body, dict):
            case.body["token"] = token
    if (
        label == ADD_EXCHANGE_KEY
        and isinstance(case.body, dict)
        and data.draw(st.booleans(), label="accepted exchange key")
    ):
        case.body["api_key"], case.body["api_secret"] = seeds.exchange_key


def _content_type(response: Response) -> str:
    found = [v for name, v in response.headers.items() if name.lower() == "content-type"]
    return found[0][0] if found and found[0] else ""


def _callers(user_token: str, stranger_token: str) -> dict[str, st.SearchStrategy[Headers]]:
    forged = user_token[:-6] + ("BBBBBB" if user_token.endswith("AAAAAA") else "AAAAAA")
    nobody = st.sampled_from(
        [
            {},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer not-a-token"},
            {"Authorization": f"Bearer {forged}"},
            {"Authorization": f"Bearer {stranger_token}"},  # valid, but no engine account
            {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="},
        ]
    )
    return {"user": st.just({"Authorization": f"Bearer {user_token}"}), "nobody": nobody}


async def _seeds(
    app: FastAPI, factory: Factory, user: User, exchange_key: tuple[str, str]
) -> Seeds:
    """One of each item of the user's that a path can name, and the user's webhook token."""
    webhook_token = await factory.webhook_token(user, "alerts")
    await factory.webhook_token(user, "spare")  # for DELETE /api/webhook-tokens/{token_id}
    position, closed, trade, notification = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with app.state.sessionmaker() as s:
        for position_id, status in ((position, "open"), (closed, "closed")):
            s.add(RealPosition(id=position_id, user_id=user.id, exchange="paper",
                               symbol="BTCUSDT", side="long", status=status,
                               entry_price=Decimal("65000"), quantity=Decimal("0.01")))  # fmt: skip
        s.add(RealTrade(id=trade, user_id=user.id, exchange="paper", symbol="BTCUSDT",
                        side="buy", order_type="market", quantity=Decimal("0.01"),
                        status="filled"))  # fmt: skip
        s.add(Notification(id=notification, user_id=user.id, type="trade_executed",
                           title="Filled", message="BTCUSDT long filled"))  # fmt: skip
        await s.commit()
    auth = factory.auth(user)
    alert = {"token": webhook_token, "action": "long_entry", "symbol": "BTCUSDT",
             "price": "65000", "stop_loss": "64000"}  # fmt: skip
    async with http_client(app) as client:
        signal = await client.post("/api/webhooks/tradingview", json=alert)
        chat = await client.post("/api/chat/", json={"message": "What is a stop loss?"},
                                 headers=auth)  # fmt: skip
        tokens = await client.get("/api/webhook-tokens", headers=auth)
    for answer in (signal, chat, tokens):
        assert answer.status_code == 200, answer.text
    spare = next(t["id"] for t in tokens.json() if t["name"] == "spare")
    return Seeds(
        path_ids={
            "signal_id": [signal.json()["signal_id"]],
            "trade_id": [str(trade)],
            "position_id": [str(position), str(closed)],  # closing: 202, and 409
            "notification_id": [str(notification)],
            "token_id": [spare],
            "conversation_id": [chat.json()["conversation_id"]],
        },
        webhook_token=webhook_token,
        exchange_key=exchange_key,
    )


@pytest.fixture
def fuzz_settings(
    settings: Settings, binance_server: BinanceFuturesServer, bybit_server: BybitV5Server
) -> Settings:
    """The engine's settings with the exchanges on their emulators and the per-source limits
    lifted: a fuzzer sends from one address, and a throttle would answer 429 to everything
    after a few bad tokens, hiding the handlers behind it."""
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    return make_settings(
        settings.DATABASE_URL.get_secret_value(),
        settings.REDIS_URL.get_secret_value(),
        settings.LOCAL_DIR,
        EXCHANGE_API_URLS={"binance": binance_server.api_urls, "bybit": bybit_server.api_urls},
        EXCHANGE_TIMEOUT_MS=2000,
        WEBHOOK_RATE_LIMIT=1_000_000,
        WEBHOOK_BAD_TOKEN_LIMIT=1_000_000,
        FRONTEND_LOG_RATE_LIMIT=1_000_000,
    )


@pytest.mark.timeout(600)
async def test_every_answer_to_generated_requests_is_documented(
    fuzz_settings: Settings,
    clean_state: None,
    secrets_seen: SecretsSeen,
    binance_server: BinanceFuturesServer,
    bybit_server: BybitV5Server,
) -> None:
    exchange_key = new_credentials()
    secrets_seen.add(*exchange_key)
    binance_server.add_account(*exchange_key)
    bybit_server.add_account(*exchange_key)
    async with running_app(fuzz_settings) as app:
        factory = Factory(app=app, secrets=secrets_seen)
        user = await factory.user()
        stranger = app.state.local_issuer.mint(f"no-account-{uuid.uuid4().hex}", ttl_s=600)
        secrets_seen.add(stranger)
        seeds = await _seeds(app, factory, user, exchange_key)
        schema = schemathesis.openapi.from_dict(app.openapi())
        operations = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), f"the engine's OpenAPI document is invalid: {result}"
            operations.append(result.ok())
        async with served(app) as server:
            fuzzer = Fuzzer(
                base_url=f"http://127.0.0.1:{server.port}",
                seeds=seeds,
                callers=_callers(factory.access_token(user, ttl_s=3600), stranger),
                secrets=secrets_seen,
            )
            started = time.monotonic()
            await asyncio.to_thread(fuzzer.run, operations)
            print("\n" + fuzzer.summary(time.monotonic() - started))  # noqa: T201 (shown by -s)
    failures = fuzzer.failures
    assert not failures, "\n\n".join(f"== {name}\n{report}" for name, report in failures.items())
    assert set(fuzzer.cases) == {op.label for op in operations}  # each one was exercised


async def test_text_with_a_nul_character_is_a_422_that_keeps_nothing(
    fuzz_settings: Settings,
    clean_state: None,
    secrets_seen: SecretsSeen,
    binance_server: BinanceFuturesServer,
) -> None:
    """What the fuzzer first found (500s): PostgreSQL cannot store a NUL character, in a body
    field or a query parameter, on the ORM path or the raw pool's. A refused question to the
    assistant does not use up one of the month's answers either."""
    api_key, secret = new_credentials()
    secrets_seen.add(api_key, secret)
    binance_server.add_account(api_key, secret)
    new_key = {"exchange": "binance", "api_key": api_key, "api_secret": secret, "label": "a\x00"}
    async with running_app(fuzz_settings) as app, http_client(app) as client:
        factory = Factory(app=app, secrets=secrets_seen)
        user = await factory.user()
        auth = factory.auth(user)
        answers = [
            await client.post("/api/webhook-tokens", json={"name": "a\x00b"}, headers=auth),
            await client.get("/api/signals", params={"symbol": "BTC\x00"}, headers=auth),
            await client.post("/api/chat/", json={"message": "stop\x00loss?"}, headers=auth),
            await client.post("/api/exchange-keys", json=new_key, headers=auth),
        ]
        me = (await client.get("/api/me", headers=auth)).json()
        tokens = (await client.get("/api/webhook-tokens", headers=auth)).json()
        keys = (await client.get("/api/exchange-keys", headers=auth)).json()
        conversations = (await client.get("/api/chat/conversations", headers=auth)).json()
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "invalid_text"
    assert me["chat"]["used"] == 0
    assert tokens == keys == conversations["items"] == []
