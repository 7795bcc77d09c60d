"""Tenant isolation, generated from the engine's route table: a user (A) holding a valid access
token of their own reaches nothing of another user's (B) through any REST route or WebSocket
topic, and nobody without a valid token reaches anything at all.

Every route of the real app is classified: public (a short explicit table), the webhook (the
token inside the alert names the user), the WebSocket, or user-scoped (it depends on
`CurrentUser`). A route that is none of these fails the suite, and so does a user-scoped route
with a parameter naming an object this file cannot fill with one of B's, or a body it cannot
send: adding a route means deciding how it is isolated.

B's data is made the way users make it: alerts executed on the paper exchange by the pipeline
(signals, trades, positions, the notifications the notifier stores), an exchange key checked
with the Binance emulator, a second webhook token, risk settings and a Telegram link through the
API; B's conversation is stored rows. A then calls every method of every user-scoped route with
each of B's ids in every parameter that names an object (path, query and body). Answers are
checked for B's ids and values, not just for their status, and B's rows in PostgreSQL are
compared before and after. B making the same calls proves the ids and the markers are real.

`-s` prints the summary (routes found and checked per class, requests made, topics checked).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from pydantic import BaseModel
from starlette.routing import Route

from app.api.deps import get_current_user
from app.api.pagination import encode_cursor
from app.api.websocket import TOPICS
from app.config import Settings
from app.core import events
from app.core.local_issuer import COGNITO_SCOPE, KEY_FILE_NAME
from app.core.pg import Pool
from app.core.ws_hub import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, TOPIC_OF
from app.main import create_app
from app.models import ChatConversation, ChatMessage
from app.schemas.account import WebhookTokenCreate
from app.schemas.chat import ChatRequest
from app.schemas.exchange_keys import ExchangeKeyIn
from app.schemas.notifications import TelegramLink
from app.schemas.trading import RiskSettingsIn
from app.workers.notifier import Notifier
from tests.conftest import CapturedLogs, SecretsSeen
from tests.exchange_sim.binance_futures import BinanceFuturesServer
from tests.support.pipeline import Harness, Trader, cancel_until_done, eventually
from tests.support.venues import START_BALANCE, new_credentials
from tests.support.ws import WsClient, served, ws_client, ws_url

pytest_plugins = ("tests.support.pipeline", "tests.support.live")

# --------------------------------------------------------------------------- classification
# Routes anyone may call, and why that is safe. Everything else must need a user.
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): "the API's description",
    ("GET", "/docs"): "the API's description, rendered",
    ("GET", "/docs/oauth2-redirect"): "the API's description, rendered",
    ("GET", "/redoc"): "the API's description, rendered",
    ("GET", "/health"): "liveness, no data",
    ("GET", "/ready"): "readiness of PostgreSQL and Redis, no data",
    ("GET", "/metrics"): "process metrics, labelled by route and status, never by user",
    ("GET", "/.well-known/jwks.json"): "public keys of the local token issuer",
    ("GET", "/api/auth/options"): "how to sign in",
    ("POST", "/api/auth/dev-token"): "the demo account's token, to this machine only",
    ("POST", "/api/logs"): "browser log lines; a valid token only attributes them",
    ("GET", "/"): "the dashboard's page",
    ("GET", "/{path:path}"): "the dashboard's files",
}
# Routes whose credential is in the request body rather than an access token.
TOKEN_IN_BODY: dict[tuple[str, str], str] = {
    ("POST", "/api/webhooks/tradingview"): "the webhook token inside the alert names the user",
}
WEBSOCKETS: dict[str, str] = {
    "/ws/connect": "the access token is checked on connect; the user's channel comes from it",
}
# Parameters (path, query or body field) that name one of the caller's objects, and the table
# whose rows of B's they are filled with.
OBJECT_PARAMS: dict[str, str] = {
    "signal_id": "trading_signals",
    "trade_id": "real_trades",
    "position_id": "real_positions",
    "token_id": "webhook_tokens",
    "key_id": "exchange_api_keys",
    "notification_id": "notifications",
    "conversation_id": "chat_conversations",
}
# Fields named like an object that name none of the engine's.
NOT_OBJECTS: dict[str, str] = {"chat_id": "a Telegram chat, the caller's to choose"}
# Reads whose answer holds the owner's figures but none of their ids or values (the test checks
# that A's figures are A's own).
AGGREGATES: dict[tuple[str, str], str] = {
    ("GET", "/api/account/summary"): "counts and sums of the caller's account",
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    kind: str  # public | webhook | user | websocket
    path_params: tuple[str, ...] = ()
    query_params: tuple[str, ...] = ()
    body: type[BaseModel] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    @property
    def body_fields(self) -> tuple[str, ...]:
        return tuple(self.body.model_fields) if self.body is not None else ()

    @property
    def object_slots(self) -> tuple[str, ...]:
        """The parameters of this call that name one of the caller's objects."""
        queried = (q for q in self.query_params if q in OBJECT_PARAMS)
        bodied = (f for f in self.body_fields if f in OBJECT_PARAMS)
        return (*self.path_params, *queried, *bodied)


def _needs_user(dependant: Dependant) -> bool:
    return any(d.call is get_current_user or _needs_user(d) for d in dependant.dependencies)


def _body_model(route: APIRoute) -> type[BaseModel] | None:
    params = route.dependant.body_params
    if not params:
        return None
    (param,) = params
    model = param.field_info.annotation
    assert isinstance(model, type) and issubclass(model, BaseModel), (route.path, model)
    return model


def classify(app: FastAPI) -> tuple[list[Endpoint], list[str]]:
    """Every endpoint of `app` with its class, and what is wrong with the classification."""
    found: list[Endpoint] = []
    problems: list[str] = []
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, context.path or "?"
        if isinstance(route, APIWebSocketRoute):
            if path in WEBSOCKETS:
                found.append(Endpoint("WS", path, "websocket"))
            else:
                problems.append(f"WebSocket {path} is not classified (WEBSOCKETS)")
            continue
        if not isinstance(route, Route):
            problems.append(f"{type(route).__name__} {path} is not classified")
            continue
        for method in sorted((context.methods or set()) - {"HEAD"}):
            user = isinstance(route, APIRoute) and _needs_user(route.dependant)
            key = (method, path)
            if key in PUBLIC or key in TOKEN_IN_BODY:
                if user:
                    problems.append(f"{method} {path} needs a user but is listed as public")
                found.append(Endpoint(method, path, "public" if key in PUBLIC else "webhook"))
            elif user and isinstance(route, APIRoute):
                dependant = route.dependant
                found.append(Endpoint(
                    method, path, "user",
                    tuple(p.name for p in dependant.path_params),
                    tuple(q.name for q in dependant.query_params),
                    _body_model(route),
                ))  # fmt: skip
            else:
                problems.append(f"{method} {path} neither needs a user nor is listed as public")
    return found, problems


def coverage_problems(endpoints: Sequence[Endpoint]) -> list[str]:
    """What this file could not send to a user-scoped endpoint with B's ids in it."""
    problems = []
    for e in endpoints:
        if e.kind != "user":
            continue
        for name in (*e.path_params, *e.query_params, *e.body_fields):
            named_object = name in e.path_params or name.endswith("_id")
            if named_object and name not in OBJECT_PARAMS and name not in NOT_OBJECTS:
                problems.append(f"{e.method} {e.path}: no object of B's for `{name}`")
        if e.body is not None and e.body not in BODIES:
            problems.append(f"{e.method} {e.path}: no body for {e.body.__name__} (BODIES)")
    return problems


# --------------------------------------------------------------------------- summary
SUMMARY: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _print_summary() -> Iterator[None]:
    yield
    if SUMMARY:
        print(  # noqa: T201 (the summary a run with -s shows)
            "\ntenant isolation: {routes} routes found: {public} public, {webhook} webhook, "
            "{user} user-scoped, {websocket} websocket; requests made: {requests} "
            "({other_ids} with B's ids, {no_token} without a valid token, {owner} as B); "
            "B's rows compared: {rows}; WebSocket topics checked: {topics} "
            "({scoped_topics} B-scoped names refused), events B received: {events}".format_map(
                SUMMARY
            )
        )


# --------------------------------------------------------------------------- B's world
@dataclass
class World:
    harness: Harness
    a: Trader
    b: Trader
    ids: dict[str, list[str]]  # OBJECT_PARAMS name → B's ids
    markers: set[str]  # B's ids and values that must never reach A
    a_key: tuple[str, str]  # an emulator account A adds as its own exchange key


BODIES: dict[type[BaseModel], Callable[[World], dict[str, Any]]] = {
    WebhookTokenCreate: lambda w: {"name": "a-own-token"},
    RiskSettingsIn: lambda w: {"max_leverage": 7},
    ExchangeKeyIn: lambda w: {
        "exchange": "binance",
        "api_key": w.a_key[0],
        "api_secret": w.a_key[1],
    },
    TelegramLink: lambda w: {"chat_id": "-1001111111111", "enabled": True},
    ChatRequest: lambda w: {"message": "what are my positions?"},
}


LONG_BTC = {"action": "long_entry", "symbol": "BTCUSDT", "price": "65000", "stop_loss": "64000",
            "take_profit": "68000"}  # fmt: skip
LONG_ETH = {"action": "long_entry", "symbol": "ETHUSDT", "price": "3500", "stop_loss": "3400",
            "take_profit": "3800"}  # fmt: skip
NOTIFICATIONS_OF = "SELECT count(*) FROM notifications WHERE user_id = $1"


async def executed(harness: Harness, trader: Trader, **alert: str) -> str:
    response = await harness.alert(trader.token, **alert)
    assert response.status_code == 200, response.text
    signal = await harness.settled(response.json()["signal_id"], trader.auth)
    assert signal["status"] == "executed", signal
    return str(signal["id"])


@asynccontextmanager
async def notifier_running(app: FastAPI) -> AsyncIterator[None]:
    """The notifier's first stage, storing the notices the executor queues."""
    notifier = Notifier(app.state.redis, app.state.pg, consumer="isolation", block_ms=100)
    task = asyncio.create_task(notifier.run_notices(), name="isolation-notices")
    try:
        yield
    finally:
        await cancel_until_done(task)


async def count(pool: Pool, query: str, *args: Any) -> int:
    async with pool.acquire() as conn:
        value = await conn.fetchval(query, *args)
    assert isinstance(value, int)
    return value


Snapshot = dict[str, list[str]]  # table → its rows as jsonb text


async def snapshot(pool: Pool) -> Snapshot:
    async with pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename NOT IN ('alembic_version', 'knowledge_embeddings') ORDER BY 1"
        )
        taken: Snapshot = {}
        for (table,) in tables:
            # The table names come from pg_tables, not from a request.
            query = f'SELECT to_jsonb(t)::text FROM "{table}" t'  # noqa: S608  # nosec B608
            rows = await conn.fetch(query)
            taken[table] = sorted(r[0] for r in rows)
    return taken


def owned(taken: Snapshot, user_id: str) -> tuple[Snapshot, set[str]]:
    """The rows of `taken` that belong to `user_id` (naming the user, or a row of theirs, in any
    column, followed to a fixpoint: messages of their conversations), and the ids they hold."""
    parsed = {t: [json.loads(r, parse_float=Decimal) for r in rows] for t, rows in taken.items()}
    ids = {user_id}
    mine: dict[str, set[int]] = {t: set() for t in taken}
    grew = True
    while grew:
        grew = False
        for table, rows in parsed.items():
            for index, row in enumerate(rows):
                if index in mine[table] or not any(v in ids for v in row.values()
                                                   if isinstance(v, str)):  # fmt: skip
                    continue
                mine[table].add(index)
                grew = True
                if isinstance(row.get("id"), str):
                    ids.add(row["id"])
    return {t: [taken[t][i] for i in sorted(mine[t])] for t in taken}, ids


def other_values(taken: Snapshot, theirs: Snapshot) -> set[str]:
    """Every string value of the rows that are not in `theirs`."""
    values: set[str] = set()
    for table, rows in taken.items():
        for text in set(rows) - set(theirs[table]):
            row = json.loads(text, parse_float=Decimal)
            values.update(v for v in row.values() if isinstance(v, str))
    return values


async def build_world(
    harness: Harness, binance: BinanceFuturesServer, secrets: SecretsSeen
) -> World:
    client, pool = harness.client, harness.app.state.pg
    a, b = await harness.account(), await harness.account()
    tag = uuid.uuid4().hex[:12]
    explicit: set[str] = {b.user.email, b.token}

    issued = await client.post("/api/webhook-tokens", json={"name": f"b-name-{tag}"},
                               headers=b.auth)  # fmt: skip
    assert issued.status_code == 201, issued.text
    secrets.add(issued.json()["token"])
    explicit |= {issued.json()["token"], f"b-name-{tag}"}

    risk = await client.put("/api/risk-settings", json={"max_position_size_usd": "2345.67"},
                            headers=b.auth)  # fmt: skip
    assert risk.status_code == 200, risk.text
    chat_id = f"-100{uuid.uuid4().int % 10**10:010d}"
    link = {"chat_id": chat_id, "enabled": True}
    linked = await client.put("/api/notifications/telegram", json=link, headers=b.auth)
    assert linked.status_code == 200, linked.text
    explicit |= {"2345.67", chat_id}

    api_key, secret = f"bkey{uuid.uuid4().hex}QZBX", new_credentials()[1]
    binance.add_account(api_key, secret, balance=START_BALANCE)
    secrets.add(api_key, secret)
    label = f"b-label-{tag}"
    body = {"exchange": "binance", "api_key": api_key, "api_secret": secret, "label": label}
    key = await client.post("/api/exchange-keys", headers=b.auth, json=body)
    assert key.status_code == 201, key.text
    explicit |= {api_key, secret, label, key.json()["api_key_hint"]}
    a_key = new_credentials()
    binance.add_account(*a_key, balance=START_BALANCE)
    secrets.add(*a_key)

    async with harness.app.state.sessionmaker() as s:
        conversation = ChatConversation(user_id=b.user.id, title=f"b-chat-{tag}")
        s.add(conversation)
        await s.flush()
        s.add_all([
            ChatMessage(conversation_id=conversation.id, role="user", content=f"b-asks-{tag}"),
            ChatMessage(conversation_id=conversation.id, role="assistant",
                        content=f"b-answer-{tag}"),
        ])  # fmt: skip
        await s.commit()
    explicit |= {f"b-chat-{tag}", f"b-asks-{tag}", f"b-answer-{tag}"}

    async with notifier_running(harness.app):
        # B: a closed BTC position, open BTC and ETH positions; A: one open BTC position.
        await executed(harness, b, **LONG_BTC)
        await executed(harness, b, action="long_exit", symbol="BTCUSDT")
        await executed(harness, b, **LONG_ETH)
        await executed(harness, b, **{**LONG_BTC, "price": "65001"})  # not a duplicate
        await executed(harness, a, **LONG_BTC)
        await eventually(
            lambda: count(pool, NOTIFICATIONS_OF, b.user.id),
            lambda n: n == 4,
            what="B's notifications stored",
        )

    taken = await snapshot(pool)
    rows, ids = owned(taken, b.user.id)
    shared = other_values(taken, rows)
    markers = {m for m in ids | explicit if len(m) >= 7 and m not in shared}
    by_param: dict[str, list[str]] = {}
    for param, table in OBJECT_PARAMS.items():
        by_param[param] = [json.loads(r)["id"] for r in rows[table]]
        assert by_param[param], f"B owns no {table} row: the world must hold one of each kind"
    return World(harness, a, b, by_param, markers, a_key)


# --------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class Call:
    endpoint: Endpoint
    url: str
    params: dict[str, str]
    body: dict[str, Any] | None
    names_other: bool  # one of B's ids is in it
    refuse: bool  # ... in the path or the body: the call must be refused (403/404)


def calls_for(endpoint: Endpoint, world: World) -> list[Call]:
    """`endpoint` with each of B's ids in every parameter that names an object; listings also
    with a cursor made of one of B's rows."""
    slots = endpoint.object_slots
    refuse = any(s in endpoint.path_params or s in endpoint.body_fields for s in slots)
    rounds = max((len(world.ids[s]) for s in slots), default=1)
    base = BODIES[endpoint.body](world) if endpoint.body is not None else None
    made = []
    for i in range(rounds):
        pick = {s: world.ids[s][i % len(world.ids[s])] for s in slots}
        url = endpoint.path.format(**{p: pick[p] for p in endpoint.path_params})
        params = {q: pick[q] for q in endpoint.query_params if q in pick}
        body = None if base is None else {**base, **{f: pick[f] for f in endpoint.body_fields
                                                     if f in pick}}  # fmt: skip
        made.append(Call(endpoint, url, params, body, bool(slots), refuse))
    if "cursor" in endpoint.query_params:
        later = datetime.now(UTC) + timedelta(days=1)
        cursor = encode_cursor(later, uuid.UUID(world.ids["signal_id"][0]))
        first = made[0]
        made.append(Call(endpoint, first.url, {**first.params, "cursor": cursor}, first.body,
                         first.names_other, first.refuse))  # fmt: skip
    return made


async def send(client: httpx.AsyncClient, call: Call, headers: Mapping[str, str]) -> httpx.Response:
    SUMMARY["requests"] += 1
    return await client.request(call.endpoint.method, call.url, params=call.params,
                                json=call.body, headers=dict(headers))  # fmt: skip


def found_markers(response: httpx.Response, markers: set[str]) -> list[str]:
    seen = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return sorted(m for m in markers if m in seen)


# --------------------------------------------------------------------------- bad tokens
def _signing_key(settings: Settings) -> rsa.RSAPrivateKey:
    pem = (settings.LOCAL_DIR / "jwt" / KEY_FILE_NAME).read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _claims(app: FastAPI, sub: str, *, exp: int) -> dict[str, Any]:
    issuer = app.state.local_issuer
    now = int(time.time())
    return {"sub": sub, "iss": issuer.issuer, "client_id": issuer.client_id,
            "token_use": "access", "scope": COGNITO_SCOPE, "auth_time": now - 7200,
            "iat": now - 7200, "exp": exp, "jti": str(uuid.uuid4()), "username": sub}  # fmt: skip


def bad_tokens(app: FastAPI, settings: Settings, victim: str) -> dict[str, tuple[str | None, int]]:
    """Authorization headers that must not let anyone in, with the status each gets."""
    kid = app.state.local_issuer.kid
    old = _claims(app, victim, exp=int(time.time()) - 3600)
    expired = jwt.encode(old, _signing_key(settings), algorithm="RS256", headers={"kid": kid})
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(_claims(app, victim, exp=int(time.time()) + 600), stranger,
                        algorithm="RS256", headers={"kid": kid})  # fmt: skip
    nobody = app.state.local_issuer.mint(f"nobody-{uuid.uuid4().hex}", ttl_s=600)
    return {
        "no token": (None, 401),
        "garbage": ("Bearer not-a-jwt", 401),
        "expired, the engine's own key, B's sub": (f"Bearer {expired}", 401),
        "B's sub signed by another key": (f"Bearer {forged}", 401),
        "another scheme": (f"Basic {forged}", 401),
        "valid, of no account": (f"Bearer {nobody}", 403),
    }


def tokens_in(headers: Mapping[str, tuple[str | None, int]]) -> list[str]:
    return [h.split(" ", 1)[1] for h, _ in headers.values() if h and len(h) > 40]


# --------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def settings(live_settings: Settings) -> Settings:
    return live_settings


def test_every_route_is_classified(settings: Settings, tmp_path: Path) -> None:
    # With the dashboard mounted, so that its routes are part of the table too.
    (tmp_path / "index.html").write_text("<!doctype html><title>JadeTrade</title>")
    app = create_app(settings.model_copy(update={"WEB_DIST_DIR": tmp_path}))
    endpoints, problems = classify(app)
    problems += coverage_problems(endpoints)
    present = {e.key for e in endpoints} | {("WS", e.path) for e in endpoints}
    problems += [f"{m} {p} is listed but no longer exists" for m, p in (*PUBLIC, *TOKEN_IN_BODY,
                 *AGGREGATES) if (m, p) not in present]  # fmt: skip
    problems += [f"WebSocket {p} is listed but no longer exists" for p in WEBSOCKETS
                 if ("WS", p) not in present]  # fmt: skip
    assert not problems, "\n".join(problems)
    kinds = Counter(e.kind for e in endpoints)
    assert kinds["websocket"] == len(WEBSOCKETS), kinds
    SUMMARY["routes"] = len(endpoints)
    SUMMARY.update({k: kinds[k] for k in ("public", "webhook", "user", "websocket")})
    # Every user event goes to a subscribable topic (notifications go to every socket).
    user_events = {t.value for t in events.EventType} - {"price_update", "notification"}
    assert set(TOPIC_OF) == user_events and set(TOPIC_OF.values()) <= set(TOPICS)


@pytest.mark.timeout(60)
async def test_another_users_ids_reach_nothing_and_change_nothing(
    harness: Harness,
    binance_server: BinanceFuturesServer,
    secrets_seen: SecretsSeen,
    captured_logs: CapturedLogs,
) -> None:
    world = await build_world(harness, binance_server, secrets_seen)
    client, pool, b = harness.client, harness.app.state.pg, world.b
    endpoints, problems = classify(harness.app)
    assert not problems + coverage_problems(endpoints)
    users = [e for e in endpoints if e.kind == "user"]

    # B, reading with B's own ids, gets B's data: the ids and markers below are real.
    b_answers: dict[tuple[str, str], list[httpx.Response]] = {}
    for endpoint in (e for e in users if e.method == "GET"):
        answers = [await send(client, c, b.auth) for c in calls_for(endpoint, world)]
        SUMMARY["owner"] += len(answers)
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
        b_answers[endpoint.key] = answers
        if endpoint.key not in AGGREGATES:
            assert any(found_markers(r, world.markers) for r in answers), (
                f"{endpoint.key}: B's own answer shows nothing of B's; list it in AGGREGATES"
            )

    before = owned(await snapshot(pool), b.user.id)[0]
    refusals: Counter[int] = Counter()
    for endpoint in users:
        for call in calls_for(endpoint, world):
            response = await send(client, call, world.a.auth)
            where = f"A: {endpoint.method} {call.url} {call.params}"  # the body may hold a key
            assert not found_markers(response, world.markers), (where, response.text)
            SUMMARY["other_ids"] += call.names_other
            if call.refuse:
                refusals[response.status_code] += 1
                assert response.status_code in (403, 404), (where, response.text)
            else:
                assert response.status_code < 300, (where, response.text)
                if endpoint.key == ("POST", "/api/webhook-tokens"):
                    secrets_seen.add(response.json()["token"])
    # The aggregate read is A's own account: one open position, where B has two.
    summary = (await client.get("/api/account/summary", headers=world.a.auth)).json()
    assert summary["open_positions"] == 1
    assert b_answers[("GET", "/api/account/summary")][0].json()["open_positions"] == 2

    # Public routes, called by A, show nothing of B's either.
    for endpoint in (e for e in endpoints if e.kind == "public" and e.method == "GET"):
        response = await send(client, Call(endpoint, endpoint.path, {}, None, False, False),
                              world.a.auth)  # fmt: skip
        assert response.status_code == 200, (endpoint.path, response.text)
        assert not found_markers(response, world.markers), endpoint.path
    # A browser log line claiming to be B's is attributed to the token's user, A.
    mark = len(captured_logs.lines)
    logged = await client.post("/api/logs", headers=world.a.auth, json={"logs": [{
        "timestamp": datetime.now(UTC).isoformat(), "level": "info", "message": "claims b",
        "component": "ui", "user_id": b.user.id}]})  # fmt: skip
    assert logged.status_code == 204, logged.text
    (line,) = [json.loads(x) for x in captured_logs.lines[mark:] if '"claims b"' in x]
    assert line["user_id"] == world.a.user.id

    after = owned(await snapshot(pool), b.user.id)[0]
    assert after == before, "A's requests changed B's rows"
    SUMMARY["rows"] = sum(len(rows) for rows in before.values())
    assert refusals[404] > 0

    # B, writing with B's own ids in the path, is not refused: the ids A used were B's.
    for endpoint in (e for e in users if e.method != "GET" and e.path_params):
        answers = [await send(client, c, b.auth) for c in calls_for(endpoint, world)]
        SUMMARY["owner"] += len(answers)
        statuses = [r.status_code for r in answers]
        assert 404 not in statuses and any(s < 300 for s in statuses), (endpoint.key, statuses)


@pytest.mark.timeout(60)
async def test_without_a_valid_token_every_protected_route_is_refused(
    harness: Harness,
    binance_server: BinanceFuturesServer,
    settings: Settings,
    secrets_seen: SecretsSeen,
) -> None:
    world = await build_world(harness, binance_server, secrets_seen)
    client, pool = harness.client, harness.app.state.pg
    endpoints, _ = classify(harness.app)
    variants = bad_tokens(harness.app, settings, world.b.user.id)
    secrets_seen.add(*tokens_in(variants))
    before = owned(await snapshot(pool), world.b.user.id)[0]
    for endpoint in (e for e in endpoints if e.kind == "user"):
        call = calls_for(endpoint, world)[0]
        for case, (header, status) in variants.items():
            headers = {} if header is None else {"Authorization": header}
            response = await send(client, call, headers)
            SUMMARY["no_token"] += 1
            where = f"{case}: {endpoint.method} {call.url}"
            assert response.status_code == status, (where, response.text)
            assert response.json()["error"]["code"], where
            assert not found_markers(response, world.markers), where
            if status == 401:
                assert response.headers["www-authenticate"].startswith("Bearer"), where
    # The webhook's credential is its token: none, or an unknown one, is 401.
    for body in (
        {"action": "long_entry", "symbol": "BTCUSDT"},
        {"token": "jt_wh_" + "x" * 43, "action": "long_entry", "symbol": "BTCUSDT"},
    ):
        response = await client.post("/api/webhooks/tradingview", json=body)
        SUMMARY["no_token"] += 1
        assert response.status_code == 401, response.text
    assert owned(await snapshot(pool), world.b.user.id)[0] == before


async def _subscribe_to_everything(client: WsClient, symbols: Sequence[str]) -> list[str]:
    await client.next_of("connected")
    topics = [*TOPICS, *(f"prices:{s}" for s in symbols)]
    for topic in topics:
        await client.send({"type": "subscribe", "topic": topic})
        await client.next_of("subscribed", topic=topic)
    return topics


@pytest.mark.timeout(60)
async def test_websocket_events_of_one_user_never_reach_another(
    harness: Harness, settings: Settings, secrets_seen: SecretsSeen
) -> None:
    a, b = await harness.account(), await harness.account()
    a_token, b_token = a.auth["Authorization"][7:], b.auth["Authorization"][7:]
    variants = bad_tokens(harness.app, settings, b.user.id)
    secrets_seen.add(*tokens_in(variants))
    async with served(harness.app) as server:
        # Nobody without a valid token gets a socket (4001), nor a token of no account (4003).
        for case, (header, status) in variants.items():
            token = header.split(" ", 1)[1] if header else None
            async with ws_client(ws_url(server, token)) as refused:
                code, _ = await refused.closed()
            expected = CLOSE_FORBIDDEN if status == 403 else CLOSE_UNAUTHORIZED
            assert code == expected and refused.messages == [], case
            SUMMARY["no_token"] += 1

        symbols = ("BTCUSDT", "ETHUSDT")
        async with (
            ws_client(ws_url(server, a_token) + f"&user_id={b.user.id}") as a_socket,
            ws_client(ws_url(server, b_token)) as b_socket,
            notifier_running(harness.app),
        ):
            topics = await _subscribe_to_everything(a_socket, symbols)
            await _subscribe_to_everything(b_socket, symbols)
            assert a_socket.messages[0]["data"]["user_id"] == a.user.id
            SUMMARY["topics"] = len(topics)
            # Topics carry no user: a name that tries to reach B's channel is refused.
            scoped = [f"{t}:{b.user.id}" for t in TOPICS if t != "prices"]
            scoped += [events.user_channel(b.user.id), f"user:{b.user.id}", b.user.id]
            for name in scoped:
                await a_socket.send({"type": "subscribe", "topic": name})
                refusal = await a_socket.wait_for(_error_about(name))
                assert refusal["data"]["code"] == "unknown_topic"
            SUMMARY["scoped_topics"] = len(scoped)

            signal_id = await executed(harness, b, **LONG_ETH)
            # B's own socket gets every kind of event of its alert, notification included.
            wanted = {*TOPIC_OF, "notification"}
            got = await eventually(
                lambda: _event_types(b_socket, signal_id),
                lambda kinds: wanted <= kinds,
                what="B's events on B's socket",
            )
            SUMMARY["events"] = sum(1 for m in b_socket.messages if m["type"] in got)
            # A's own alert after B's: once A has its events, B's would have come before.
            a_signal = await executed(harness, a, **LONG_BTC)
            await eventually(
                lambda: _event_types(a_socket, a_signal),
                lambda kinds: wanted <= kinds,
                what="A's events on A's socket",
            )
            b_markers = {b.user.id, signal_id, b_token}
            for message in a_socket.messages:
                if message.get("data", {}).get("topic") in scoped:
                    continue  # the refusal quotes the name A sent
                text = json.dumps(message)
                assert not [m for m in b_markers if m in text], message
            ids = {str(m.get("data", {}).get("id")) for m in b_socket.messages}
            ids |= {str(m.get("data", {}).get("related_id")) for m in b_socket.messages}
            ids.discard("None")
            assert ids and not [m for m in a_socket.messages
                                if str(m.get("data", {}).get("id")) in ids]  # fmt: skip


def _error_about(topic: str) -> Callable[[dict[str, Any]], bool]:
    def match(message: dict[str, Any]) -> bool:
        return bool(message["type"] == "error" and message["data"].get("topic") == topic)

    return match


async def _event_types(socket: WsClient, signal_id: str) -> set[str]:
    """The event types `socket` got about `signal_id` (and its trades and positions)."""
    kinds = set()
    for message in socket.messages:
        data = message.get("data") or {}
        about = {str(data.get(k)) for k in ("id", "signal_id", "related_id")}
        if signal_id in about:
            kinds.add(message["type"])
    return kinds
