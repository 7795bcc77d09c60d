"""Secrets never leave the engine: known values are planted wherever the engine holds a secret
(webhook and access tokens, exchange API keys and secrets, the active and a retired encryption
key, the Telegram bot token, the Anthropic and OpenAI keys, the Loki password, the passwords in
DATABASE_URL and REDIS_URL), the paths that could give one away are driven, and everything that
comes out is searched for every one of them.

Driven: webhook intake with the token in the body and in the query, text/plain alerts, unknown
tokens, unparsable and invalid alerts, an oversized one; a refused exchange key and invalid key
bodies; live orders on the Binance emulator, and the exchange refusing one as unauthorised; an
internal error; bad access tokens; every listing, sign-in, /metrics and the OpenAPI document;
the WebSocket (query token, subprotocol token, refused tokens); the assistant with Claude's
stand-in, tool calls included, and with a key Claude refuses; Telegram delivery, and a bot
token Telegram refuses; OpenAI embeddings with a good and a refused key; browser log lines
carrying tokens; then a `jadetrade serve` process with workers (Loki push on), and the CLI
(`keys rotate`, `db upgrade`, a production configuration it refuses).

Searched: every response body and header, every WebSocket message and close reason, every log
line (this process's captured lines, the subprocess's and the CLI's output), the lines pushed to
Loki, the texts Telegram users receive, and what is sent to the model and the embedding API.
Each secret is searched as it is, URL-encoded, base64-encoded (every alignment, both alphabets)
and by the first 12 characters of its secret part (after a public marker such as `jt_wh_` or a
Telegram bot id), case-insensitively.

The engine holds no Cognito client secret (access tokens are checked against the pool's public
keys; COGNITO_APP_CLIENT_ID is public), so none is planted. `-s` prints the summary.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import string
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

import httpx
import pytest
import redis
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from app.ai.embeddings import EmbeddingError, OpenAIEmbedder
from app.config import Settings
from app.core import users, webhook_tokens
from app.core.database import create_sessionmaker
from app.core.local_issuer import LocalIssuer
from app.core.telegram import TelegramAuthFailed, TelegramClient
from app.embedded.ports import free_port
from app.workers.notifier import Notifier
from tests.conftest import CapturedLogs, SecretsSeen, http_client, make_settings, running_app
from tests.exchange_sim.binance_futures import ORDER, BinanceFuturesServer
from tests.support.anthropic_server import AnthropicServer, ToolCall, Turn
from tests.support.loki_server import LokiServer
from tests.support.openai_server import OpenAIServer
from tests.support.pipeline import Harness, cancel_until_done, eventually, settled_signal
from tests.support.processes import JADETRADE, EngineProcess, engine_env
from tests.support.telegram_server import TelegramBotApiServer
from tests.support.venues import START_BALANCE
from tests.support.ws import WsClient, served, ws_client, ws_url

if TYPE_CHECKING:
    from tests.conftest import TestServers

pytest_plugins = ("tests.support.pipeline", "tests.support.live")

PREFIX_CHARS = 12
CHAT = "424242"
SUMMARY: Counter[str] = Counter()


# --------------------------------------------------------------------------- secrets
@dataclass(frozen=True)
class Secret:
    name: str
    value: str
    public: str = ""  # a public start of the value, never searched for on its own

    def probes(self) -> dict[str, str]:
        """The forms the value could leak in, by name."""
        found = {"as is": self.value}
        for name, form in (("url-encoded", quote(self.value, safe="")),
                           ("form-encoded", quote_plus(self.value))):  # fmt: skip
            if form != self.value:
                found[name] = form
        raw = self.value.encode()
        for shift in range(3):
            # The characters made only of the value's bits, wherever it sits in a base64 text
            # at this alignment (those at either end also depend on the neighbouring bytes).
            encoded = base64.b64encode(b"\0" * shift + raw).decode()
            inner = encoded[(8 * shift + 5) // 6 : (8 * (shift + len(raw))) // 6]
            if len(inner) >= PREFIX_CHARS:
                found[f"base64 +{shift}"] = inner
                found[f"base64url +{shift}"] = inner.replace("+", "-").replace("/", "_")
        secret_part = self.value[len(self.public) :]
        if len(secret_part) > PREFIX_CHARS:
            found[f"first {PREFIX_CHARS}"] = secret_part[:PREFIX_CHARS]
        return found


def jwt_secret(name: str, token: str) -> Secret:
    """An access token: its header and claims are readable by design; the signature is not."""
    head, body, _ = token.split(".")
    return Secret(name, token, public=f"{head}.{body}.")


def exchange_credential(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def with_password(url: str, user: str, password: str, *, replace: bool) -> tuple[str, str]:
    """`url` carrying `user:password`, and the password. Unless `replace`, a URL that already
    has a password keeps it (a server that needs its own), and that one is the secret."""
    parts = urlsplit(url)
    if parts.password and not replace:
        return url, unquote(parts.password)
    host = parts.netloc.rsplit("@", 1)[-1]
    name = user if replace else parts.username or user
    return urlunsplit(parts._replace(netloc=f"{name}:{quote(password, safe='')}@{host}")), password


@dataclass
class Planted:
    """The module's secret values and the stand-ins that hold their counterparts."""

    secrets: dict[str, Secret]
    database_url: str
    redis_url: str
    anthropic: AnthropicServer
    openai: OpenAIServer
    bot: TelegramBotApiServer
    loki: LokiServer

    def add(self, seen: SecretsSeen, secret: Secret) -> Secret:
        self.secrets[secret.name] = secret
        seen.add(secret.value)
        return secret

    def value(self, name: str) -> str:
        return self.secrets[name].value


REDIS_USER = "jt_secret_probe"


@pytest.fixture(scope="module")
def planted(
    database_url: str, servers: TestServers, secrets_seen: SecretsSeen
) -> Iterator[Planted]:
    # A password with characters that URLs must escape, so that its encoded form is searched.
    db_url, db_password = with_password(
        database_url,
        "postgres",
        f"{secrets.token_urlsafe(12)}/+{secrets.token_urlsafe(12)}",
        replace=False,
    )
    redis_password = f"{secrets.token_urlsafe(16)}@:{secrets.token_urlsafe(8)}"
    admin = redis.Redis.from_url(servers.redis_url)
    admin.acl_setuser(REDIS_USER, enabled=True, passwords=[f"+{redis_password}"], keys=["*"],
                      channels=["*"], categories=["+@all"], reset=True)  # fmt: skip
    # A user of its own, so that the password is one the server really checks.
    redis_url, _ = with_password(servers.redis_url, REDIS_USER, redis_password, replace=True)
    with (
        AnthropicServer() as anthropic,
        OpenAIServer() as openai,
        TelegramBotApiServer() as bot,
        LokiServer() as loki,
    ):
        found = Planted({}, db_url, redis_url, anthropic, openai, bot, loki)
        for name, value, public in (
            ("DATABASE_URL password", db_password, ""),
            ("REDIS_URL password", redis_password, ""),
            ("ENCRYPTION_KEY", secrets.token_hex(32), ""),
            ("retired ENCRYPTION_KEY", secrets.token_hex(32), ""),
            ("next ENCRYPTION_KEY", secrets.token_hex(32), ""),
            ("ANTHROPIC_API_KEY", anthropic.api_key, "sk-ant-test-"),
            ("refused ANTHROPIC_API_KEY", "sk-ant-test-" + secrets.token_urlsafe(32),
             "sk-ant-test-"),
            ("OPENAI_API_KEY", openai.api_key, "sk-test-"),
            ("refused OPENAI_API_KEY", "sk-test-" + secrets.token_urlsafe(32), "sk-test-"),
            ("TELEGRAM_BOT_TOKEN", bot.token, bot.token.split(":")[0] + ":"),
            ("refused TELEGRAM_BOT_TOKEN", f"{bot.bot_id}:AA{secrets.token_urlsafe(25)[:33]}",
             f"{bot.bot_id}:"),
            ("LOKI_PASSWORD", secrets.token_urlsafe(24), ""),
            ("unknown webhook token", webhook_tokens.generate_token(), "jt_wh_"),
        ):  # fmt: skip
            found.add(secrets_seen, Secret(name, value, public))
        try:
            yield found
        finally:
            admin.acl_deluser(REDIS_USER)
            admin.close()


@pytest.fixture(scope="module")
def settings(planted: Planted, local_dir: Path, binance_server: BinanceFuturesServer) -> Settings:
    """The engine's settings with every planted secret in its place."""
    return make_settings(
        planted.database_url,
        planted.redis_url,
        local_dir,
        ENCRYPTION_KEY=planted.value("ENCRYPTION_KEY"),
        ENCRYPTION_KEYS_RETIRED=[planted.value("retired ENCRYPTION_KEY")],
        EXCHANGE_API_URLS={"binance": binance_server.api_urls},
        EXCHANGE_TIMEOUT_MS=1000,
        TELEGRAM_BOT_TOKEN=planted.value("TELEGRAM_BOT_TOKEN"),
        TELEGRAM_API_URL=planted.bot.base_url,
        ANTHROPIC_API_KEY=planted.value("ANTHROPIC_API_KEY"),
        ANTHROPIC_BASE_URL=planted.anthropic.url,
        OPENAI_API_KEY=planted.value("OPENAI_API_KEY"),
        OPENAI_BASE_URL=planted.openai.url,
        EMBEDDING_PROVIDER="local",  # the knowledge base's model; OpenAI is driven directly
        LOKI_URL=planted.loki.url,
        LOKI_USERNAME="jadetrade",
        LOKI_PASSWORD=planted.value("LOKI_PASSWORD"),
    )


# --------------------------------------------------------------------------- the search
@dataclass
class Haystack:
    """Everything that left the engine, by where it was seen."""

    texts: dict[str, list[str]] = field(default_factory=dict)

    def add(self, source: str, *texts: str) -> None:
        self.texts.setdefault(source, []).extend(t for t in texts if t)

    async def on_response(self, response: httpx.Response) -> None:
        await response.aread()
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.add("responses", f"{response.status_code}\n{headers}\n{response.text}")

    def watch(self, client: httpx.AsyncClient) -> httpx.AsyncClient:
        hooks = client.event_hooks
        client.event_hooks = {**hooks, "response": [*hooks.get("response", []), self.on_response]}
        return client

    def add_socket(self, client: WsClient, close_reason: str = "") -> None:
        self.add("websocket", *(json.dumps(m) for m in client.messages), close_reason)

    def leaks(self, planted: dict[str, Secret]) -> list[str]:
        found = []
        for source, texts in self.texts.items():
            blob = "\n".join(texts).lower()
            for secret in planted.values():
                for form, probe in secret.probes().items():
                    needle = probe.lower()
                    if needle not in blob:
                        continue
                    text = next(t for t in texts if needle in t.lower())
                    at = text.lower().index(needle)
                    context = text[max(0, at - 80) : at] + "<HERE>" + text[at + len(probe) :][:80]
                    found.append(
                        f"{secret.name} ({form}) in {source}: …{masked(context, planted)}…"
                    )
        return found

    def count(self, source: str) -> int:
        return len(self.texts.get(source, []))


def masked(text: str, planted: dict[str, Secret]) -> str:
    """`text` with every planted value replaced by its name: a failure report must not be the
    leak it reports."""
    for secret in planted.values():
        for probe in secret.probes().values():
            text = re.sub(re.escape(probe), f"<{secret.name}>", text, flags=re.IGNORECASE)
    return text


def check(hay: Haystack, planted: Planted) -> None:
    leaks = hay.leaks(planted.secrets)
    assert not leaks, "secrets left the engine:\n" + "\n".join(leaks)
    SUMMARY["secrets"] = max(SUMMARY["secrets"], len(planted.secrets))
    SUMMARY["probes"] = max(SUMMARY["probes"],
                            sum(len(s.probes()) for s in planted.secrets.values()))  # fmt: skip
    for source, texts in hay.texts.items():
        SUMMARY[source] += len(texts)


@pytest.fixture(scope="module", autouse=True)
def _print_summary() -> Iterator[None]:
    yield
    if SUMMARY:
        scanned = ", ".join(f"{SUMMARY[k]} {k}" for k in sorted(SUMMARY)
                            if k not in ("secrets", "probes"))  # fmt: skip
        print(  # noqa: T201 (the summary a run with -s shows)
            f"\nsecret leaks: {SUMMARY['secrets']} secrets planted, searched in "
            f"{SUMMARY['probes']} forms; scanned: {scanned}"
        )


# --------------------------------------------------------------------------- helpers
async def settled(client: httpx.AsyncClient, signal_id: str, auth: dict[str, str]) -> str:
    return str((await settled_signal(client, signal_id, auth))["status"])


async def alert(client: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> str:
    response = await client.post("/api/webhooks/tradingview", json=body)
    assert response.status_code == 200, response.text
    return await settled(client, response.json()["signal_id"], auth)


@asynccontextmanager
async def notifier_running(app: FastAPI, settings: Settings) -> AsyncIterator[Notifier]:
    """Both stages of the notifier, delivering to the Telegram stand-in as a worker does."""
    assert settings.TELEGRAM_BOT_TOKEN is not None
    async with httpx.AsyncClient() as http:
        telegram = TelegramClient(http, settings.TELEGRAM_BOT_TOKEN,
                                  base_url=settings.TELEGRAM_API_URL, timeout_s=2)  # fmt: skip
        notifier = Notifier(app.state.redis, app.state.pg, consumer="secrets", telegram=telegram,
                            max_attempts=2, backoff_s=0.01, block_ms=100)  # fmt: skip
        tasks = [asyncio.create_task(notifier.run_notices()),
                 asyncio.create_task(notifier.run_telegram())]  # fmt: skip
        try:
            yield notifier
        finally:
            for task in tasks:
                await cancel_until_done(task)


async def telegram_status(app: FastAPI, user_id: str) -> list[str | None]:
    async with app.state.pg.acquire() as conn:
        rows = await conn.fetch("SELECT telegram_status FROM notifications WHERE user_id = $1",
                                user_id)  # fmt: skip
    return [r[0] for r in rows]


def bad_alerts(token: str) -> list[tuple[bytes, str, int]]:
    """(body, content type, status) of alerts the intake refuses, each carrying `token`."""
    plain = {"token": token, "action": "long_entry", "symbol": "BTCUSDT"}
    return [
        (f"token={token}&action=buy".encode(), "text/plain", 400),
        (f'{{"token": "{token}", "token": "{token}", "action": "buy"}}'.encode(),
         "application/json", 400),
        (json.dumps({**plain, "action": "explode"}).encode(), "application/json", 422),
        (json.dumps({**plain, "symbol": "NOT A SYMBOL"}).encode(), "application/json", 422),
        (json.dumps({**plain, "price": "sixty"}).encode(), "application/json", 422),
        (json.dumps({**plain, "exchange": "kraken"}).encode(), "application/json", 422),
        (json.dumps({**plain, "comment": "x" * 70_000}).encode(), "application/json", 413),
    ]  # fmt: skip


def test_the_search_finds_every_form_of_a_secret() -> None:
    # Each form embedded in other text, at every base64 alignment; a near miss is not a leak.
    secret = Secret("webhook token", webhook_tokens.generate_token(), "jt_wh_")
    planted = {secret.name: secret}
    raw = secret.value.encode()
    texts = [f"level=info url=/hook?token={quote(secret.value, safe='')}&x=1",
             f'{{"body": "{quote_plus(secret.value)}"}}', secret.value.upper(),
             f"prefix shown: {secret.value[:6 + PREFIX_CHARS]}…"]  # fmt: skip
    texts += [base64.b64encode(b"ab"[:shift] + raw + b"!").decode() for shift in range(3)]
    texts += [base64.urlsafe_b64encode(b"user:" + raw).decode()]
    for text in texts:
        hay = Haystack()
        hay.add("line", f"before {text} after")
        report = "\n".join(hay.leaks(planted))
        assert report, text
        assert secret.value[6 : 6 + PREFIX_CHARS].lower() not in report.lower()  # masked
    clean = Haystack()
    clean.add("line", secret.value[: len(secret.public) + 6], webhook_tokens.generate_token())
    assert clean.leaks(planted) == []


# --------------------------------------------------------------------------- in process
@pytest.mark.timeout(90)
async def test_no_secret_leaves_the_engine_in_process(
    harness: Harness,
    planted: Planted,
    settings: Settings,
    binance_server: BinanceFuturesServer,
    secrets_seen: SecretsSeen,
    captured_logs: CapturedLogs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hay = Haystack()
    mark = len(captured_logs.lines)
    client = hay.watch(harness.client)
    trader = await harness.account()
    token, auth = trader.token, trader.auth
    planted.add(secrets_seen, Secret("webhook token", token, "jt_wh_"))
    planted.add(secrets_seen, jwt_secret("access token", auth["Authorization"][7:]))
    jwt = planted.value("access token")
    for name in ("api key", "api secret", "refused api key", "refused api secret"):
        planted.add(secrets_seen, Secret(f"exchange {name}", exchange_credential(64)))
    api_key, api_secret = planted.value("exchange api key"), planted.value("exchange api secret")
    binance_server.add_account(api_key, api_secret, balance=START_BALANCE)
    binance_server.set_price("BTCUSDT", Decimal("65000"))

    # Exchange keys: stored, listed masked; refused by the exchange; invalid bodies.
    key_body = {"exchange": "binance", "api_key": api_key, "api_secret": api_secret}
    assert (await client.post("/api/exchange-keys", json=key_body, headers=auth)).status_code == 201
    refused = {**key_body, "api_key": planted.value("exchange refused api key"),
               "api_secret": planted.value("exchange refused api secret")}  # fmt: skip
    for body, status in ((refused, 422), ({**refused, "exchange": "kraken"}, 422),
                         ({**refused, "api_secret": refused["api_secret"] + " x"}, 422),
                         ({**refused, "label": "l" * 300}, 422),
                         ({**refused, "unexpected": api_secret}, 422)):  # fmt: skip
        response = await client.post("/api/exchange-keys", json=body, headers=auth)
        assert response.status_code == status, response.text
    link = {"chat_id": CHAT, "enabled": True}
    assert (await client.put("/api/notifications/telegram", json=link, headers=auth)).is_success

    async with notifier_running(harness.app, settings):
        # Alerts: on paper and live on Binance, as JSON and as text/plain.
        long = {"token": token, "action": "long_entry", "symbol": "BTCUSDT", "price": "65000",
                "stop_loss": "64000", "take_profit": "68000"}  # fmt: skip
        assert await alert(client, auth, **long) == "executed"
        assert await alert(client, auth, **long, exchange="binance") == "executed"
        exit_ = json.dumps({"token": token, "action": "long_exit", "symbol": "BTCUSDT"})
        response = await client.post("/api/webhooks/tradingview", content=exit_.encode(),
                                     headers={"Content-Type": "text/plain"})  # fmt: skip
        assert response.status_code == 200, response.text
        assert await settled(client, response.json()["signal_id"], auth) == "executed"
        await eventually(lambda: asyncio.to_thread(lambda: planted.bot.messages),
                         lambda sent: len(sent) >= 2, what="Telegram messages")  # fmt: skip
        # Binance refuses the key while closing: the signal fails, nobody is told the key.
        binance_server.fail_next("POST", ORDER, 401, body={
            "code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})  # fmt: skip
        closing = {"token": token, "action": "long_exit", "symbol": "BTCUSDT",
                   "exchange": "binance"}  # fmt: skip
        assert await alert(client, auth, **closing) == "failed"
        # Telegram refuses the bot token for the next notification.
        planted.bot.fail_next(1, 401, "Unauthorized")
        assert await alert(client, auth, **{**long, "price": "65001"}) == "executed"
        await eventually(lambda: telegram_status(harness.app, trader.user.id),
                         lambda states: "pending" not in states and "failed" in states,
                         what="a Telegram delivery refused")  # fmt: skip

    # The webhook's refusals: token only in the query, unknown token, unusable alerts.
    response = await client.post(f"/api/webhooks/tradingview?token={token}",
                                 json={"action": "long_entry", "symbol": "BTCUSDT"})  # fmt: skip
    assert response.status_code == 401, response.text
    unknown = {**long, "token": planted.value("unknown webhook token")}
    assert (await client.post("/api/webhooks/tradingview", json=unknown)).status_code == 401
    for raw, content_type, status in bad_alerts(token):
        response = await client.post("/api/webhooks/tradingview", content=raw,
                                     headers={"Content-Type": content_type})  # fmt: skip
        assert response.status_code == status, (raw[:80], response.text)

    # An internal error while recording an alert: a 500 that says nothing.
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the database refused the statement")

    with monkeypatch.context() as patch:
        patch.setattr("app.api.webhooks.record_alert", broken)
        transport = httpx.ASGITransport(app=harness.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as crashing:
            crash = {**long, "price": "65002"}
            response = await hay.watch(crashing).post("/api/webhooks/tradingview", json=crash)
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"

    # Access tokens refused: tampered, in the query, of the wrong kind, of another scheme.
    tampered = jwt[:-6] + ("AAAAAA" if not jwt.endswith("AAAAAA") else "BBBBBB")
    for headers, params in (({"Authorization": f"Bearer {tampered}"}, {}), ({}, {"token": jwt}),
                            ({"Authorization": f"Bearer {token}"}, {}),
                            ({"Authorization": f"Basic {jwt}"}, {}),
                            ({"Authorization": jwt}, {})):  # fmt: skip
        response = await client.get("/api/me", headers=headers, params=params)
        assert response.status_code == 401, response.text

    # What a dashboard and a scraper read.
    dev = await client.post("/api/auth/dev-token")
    assert dev.status_code == 200
    secrets_seen.add(dev.json()["access_token"])
    for path in ("/api/me", "/api/account/summary", "/api/account/summary?exchange=binance",
                 "/api/webhook-tokens", "/api/exchange-keys", "/api/signals", "/api/trades",
                 "/api/positions", "/api/notifications", "/api/notifications/telegram",
                 "/api/risk-settings", "/api/auth/options", "/.well-known/jwks.json",
                 "/metrics", "/ready", "/health", "/openapi.json"):  # fmt: skip
        response = await client.get(path, headers=auth)
        assert response.status_code == 200, (path, response.text)

    # Browser log lines quoting tokens are re-emitted without them.
    entry = {"timestamp": datetime.now(UTC).isoformat(), "level": "error", "component": "ui",
             "message": f"request failed: Authorization: Bearer {jwt}",
             "hook_url": f"https://engine.example/api/webhooks/tradingview?token={token}",
             "api_key": api_key, "pasted": token}  # fmt: skip
    logged = await client.post("/api/logs", json={"logs": [entry]}, headers=auth)
    assert logged.status_code == 204, logged.text

    # The WebSocket: both ways of giving the token, and refused tokens.
    async with served(harness.app) as server:
        async with ws_client(ws_url(server, jwt)) as socket:
            await socket.next_of("connected")
            await socket.send({"type": "subscribe", "topic": "signals"})
            await socket.next_of("subscribed", topic="signals")
        hay.add_socket(socket)
        async with ws_client(ws_url(server), subprotocols=["bearer", jwt]) as socket:
            await socket.next_of("connected")
        hay.add_socket(socket)
        for bad in (tampered, token, planted.value("unknown webhook token")):
            async with ws_client(ws_url(server, bad)) as socket:
                code, reason = await socket.closed()
            assert code == 4001
            hay.add_socket(socket, reason)

    # The assistant, with Claude's stand-in calling the read-only tools.
    planted.anthropic.script(
        Turn(tool_calls=(ToolCall("get_positions", {}), ToolCall("get_trades", {}),
                         ToolCall("get_risk_settings", {}), ToolCall("get_signals", {}))),
        Turn(text=("Your positions are listed above.",)),
    )  # fmt: skip
    chat = await client.post("/api/chat", json={"message": "what are my positions?"},
                             headers=auth)  # fmt: skip
    assert chat.status_code == 200, chat.text
    stream = await client.post("/api/chat/stream", json={"message": "and my keys?"},
                               headers=auth)  # fmt: skip
    assert stream.status_code == 200 and "[DONE]" in stream.text, stream.text
    refused_key = settings.model_copy(
        update={"ANTHROPIC_API_KEY": SecretStr(planted.value("refused ANTHROPIC_API_KEY"))}
    )
    async with running_app(refused_key) as other, http_client(other) as other_client:
        answer = await hay.watch(other_client).post("/api/chat", json={"message": "hi"},
                                                    headers=auth)  # fmt: skip
        assert answer.status_code == 503, answer.text
    for request in planted.anthropic.requests:
        hay.add("requests to the model", json.dumps(request.body), json.dumps(request.headers))

    # OpenAI embeddings, with the configured key and with a refused one.
    for name in ("OPENAI_API_KEY", "refused OPENAI_API_KEY"):
        embedder = OpenAIEmbedder(planted.value(name), base_url=planted.openai.url, timeout_s=5)
        try:
            (vector,) = await embedder.embed(["how do I set a stop loss?"])
            assert name == "OPENAI_API_KEY" and len(vector) == embedder.dimensions
        except EmbeddingError as exc:
            assert name.startswith("refused")
            hay.add("errors", str(exc), repr(exc), repr(exc.__cause__))
        finally:
            await embedder.aclose()
    for sent in planted.openai.requests:
        hay.add("requests to the embedding API", json.dumps(sent.body), json.dumps(sent.headers))

    # A bot token Telegram refuses.
    async with httpx.AsyncClient() as http:
        wrong = TelegramClient(http, SecretStr(planted.value("refused TELEGRAM_BOT_TOKEN")),
                               base_url=planted.bot.base_url, timeout_s=2)  # fmt: skip
        with pytest.raises(TelegramAuthFailed) as refusal:
            await wrong.send_message(CHAT, "hello")
        hay.add("errors", str(refusal.value), repr(refusal.value), repr(wrong))

    hay.add("Telegram messages", *(text for _, text in planted.bot.messages))
    hay.add("engine log lines", *captured_logs.lines[mark:])
    check(hay, planted)


# --------------------------------------------------------------------------- processes
@dataclass
class Account:
    user_id: str
    token: str
    jwt: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt}"}


async def make_account(db_engine: AsyncEngine, settings: Settings) -> Account:
    async with create_sessionmaker(db_engine)() as session:
        user = await users.create_user(session, f"{uuid.uuid4().hex[:10]}@example.com",
                                       users.Tier.PRO)  # fmt: skip
        issued = await webhook_tokens.issue(session, user.id, "default")
        await session.commit()
    issuer = LocalIssuer.load_or_create(
        settings.LOCAL_DIR / "jwt", settings.local_issuer, settings.COGNITO_APP_CLIENT_ID
    )
    return Account(user.id, issued.token, issuer.mint(user.id, ttl_s=600, username=user.email))


def secret_env(settings: Settings, planted: Planted, **extra: str) -> dict[str, str]:
    """An engine process's environment with every planted secret (engine_env carries the
    database and Redis URLs and the encryption key)."""
    assert settings.TELEGRAM_BOT_TOKEN and settings.ANTHROPIC_API_KEY and settings.OPENAI_API_KEY
    assert settings.LOKI_PASSWORD is not None
    return engine_env(
        settings,
        ENCRYPTION_KEYS_RETIRED=json.dumps([planted.value("retired ENCRYPTION_KEY")]),
        EXCHANGE_API_URLS=json.dumps(settings.EXCHANGE_API_URLS),
        EXCHANGE_TIMEOUT_MS="1000",
        POSITION_SYNC_INTERVAL_S="0.5",
        TELEGRAM_BOT_TOKEN=settings.TELEGRAM_BOT_TOKEN.get_secret_value(),
        TELEGRAM_API_URL=settings.TELEGRAM_API_URL,
        ANTHROPIC_API_KEY=settings.ANTHROPIC_API_KEY.get_secret_value(),
        ANTHROPIC_BASE_URL=planted.anthropic.url,
        OPENAI_API_KEY=settings.OPENAI_API_KEY.get_secret_value(),
        OPENAI_BASE_URL=planted.openai.url,
        EMBEDDING_PROVIDER="local",
        LOKI_URL=planted.loki.url,
        LOKI_USERNAME="jadetrade",
        LOKI_PASSWORD=settings.LOKI_PASSWORD.get_secret_value(),
        LOKI_FLUSH_INTERVAL_S="0.2",
        LOG_LEVEL="DEBUG",
        **extra,
    )


def cli(args: list[str], env: dict[str, str], hay: Haystack, logs: CapturedLogs) -> Any:
    """Run `jadetrade <args> --json`; its one JSON object (stdout), its logs kept for search."""
    result = subprocess.run([JADETRADE, *args, "--json"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    hay.add("CLI output lines", *result.stdout.splitlines(), *result.stderr.splitlines())
    logs.add(result.stderr)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, (result.returncode, result.stdout, result.stderr[-2000:])
    return result.returncode, json.loads(lines[0])


@pytest.mark.timeout(120)
async def test_no_secret_leaves_an_engine_process_or_the_cli(
    planted: Planted,
    settings: Settings,
    db_engine: AsyncEngine,
    binance_server: BinanceFuturesServer,
    secrets_seen: SecretsSeen,
    captured_logs: CapturedLogs,
    tmp_path: Path,
    clean_state: None,
) -> None:
    hay = Haystack()
    account = await make_account(db_engine, settings)
    planted.add(secrets_seen, Secret("webhook token (process)", account.token, "jt_wh_"))
    planted.add(secrets_seen, jwt_secret("access token (process)", account.jwt))
    for name in ("api key", "api secret"):
        planted.add(secrets_seen, Secret(f"exchange {name} (process)", exchange_credential(64)))
    api_key = planted.value("exchange api key (process)")
    api_secret = planted.value("exchange api secret (process)")
    binance_server.add_account(api_key, api_secret, balance=START_BALANCE)

    env = secret_env(settings, planted, PORT=str(free_port()), HOST="127.0.0.1")
    engine = EngineProcess(["serve"], env, tmp_path / "serve.log")
    try:
        await asyncio.to_thread(engine.wait_ready)
        async with httpx.AsyncClient(base_url=engine.url, timeout=10) as raw:
            client = hay.watch(raw)
            auth = account.auth
            key = {"exchange": "binance", "api_key": api_key, "api_secret": api_secret}
            assert (
                await client.post("/api/exchange-keys", json=key, headers=auth)
            ).status_code == 201
            link = {"chat_id": CHAT, "enabled": True}
            assert (await client.put("/api/notifications/telegram", json=link,
                                     headers=auth)).is_success  # fmt: skip
            sent_before = len(planted.bot.messages)
            async with ws_client(f"{engine.ws_url}?token={account.jwt}") as socket:
                await socket.next_of("connected")
                await socket.send({"type": "subscribe", "topic": "signals"})
                await socket.next_of("subscribed", topic="signals")
                long = {"token": account.token, "action": "long_entry", "symbol": "BTCUSDT",
                        "stop_loss": "55000", "qty": "0.002"}  # fmt: skip
                assert await alert(client, auth, **long) == "executed"
                assert await alert(client, auth, **long, exchange="binance") == "executed"
            hay.add_socket(socket)
            async with ws_client(f"{engine.ws_url}?token={account.token}") as refused:
                code, reason = await refused.closed()
            assert code == 4001
            hay.add_socket(refused, reason)
            await eventually(lambda: asyncio.to_thread(lambda: planted.bot.messages),
                             lambda sent: len(sent) >= sent_before + 2,
                             what="Telegram messages from the process")  # fmt: skip
            no_token = {"action": "long_entry", "symbol": "BTCUSDT"}
            response = await client.post(f"/api/webhooks/tradingview?token={account.token}",
                                         json=no_token)  # fmt: skip
            assert response.status_code == 401
            unknown = {**long, "token": planted.value("unknown webhook token")}
            assert (await client.post("/api/webhooks/tradingview", json=unknown)).status_code == 401
            chat = await client.post("/api/chat", json={"message": "how am I doing?"},
                                     headers=auth)  # fmt: skip
            assert chat.status_code == 200, chat.text
            for path in ("/api/me", "/api/exchange-keys", "/api/webhook-tokens",
                         "/api/notifications", "/api/positions", "/metrics", "/ready",
                         "/api/auth/options"):  # fmt: skip
                assert (await client.get(path, headers=auth)).status_code == 200, path
            garbage = await client.get("/api/me", headers={"Authorization": "Bearer x.y.z"})
            assert garbage.status_code == 401
    finally:
        code = await asyncio.to_thread(engine.stop)
        hay.add("engine process output", *engine.output.splitlines())
        captured_logs.add(engine.output)
    assert code == engine.clean_exit_code, engine.output[-3000:]

    # The CLI: rotating the encryption key, migrating, refusing a production configuration.
    retired = json.dumps([planted.value("ENCRYPTION_KEY")])
    rotated_env = {**secret_env(settings, planted), "ENCRYPTION_KEYS_RETIRED": retired,
                   "ENCRYPTION_KEY": planted.value("next ENCRYPTION_KEY")}  # fmt: skip
    status, report = cli(["keys", "rotate"], rotated_env, hay, captured_logs)
    assert status == 0 and report["rotated"] >= 1, report
    status, _ = cli(["db", "upgrade"], secret_env(settings, planted), hay, captured_logs)
    assert status == 0
    production = {**secret_env(settings, planted), "ENVIRONMENT": "production"}
    status, refusal = cli(["db", "upgrade"], production, hay, captured_logs)
    assert status == 2 and refusal["error"]["code"] == "configuration_error", refusal

    await eventually(lambda: asyncio.to_thread(lambda: planted.loki.entries),
                     lambda entries: len(entries) > 0, what="lines pushed to Loki")  # fmt: skip
    hay.add("lines pushed to Loki",
            *(f"{json.dumps(e.labels)} {e.line} {json.dumps(e.metadata)}"
              for e in planted.loki.entries))  # fmt: skip
    hay.add("requests to the model", *(json.dumps(r.body) for r in planted.anthropic.requests))
    hay.add("Telegram messages", *(text for _, text in planted.bot.messages))
    check(hay, planted)
