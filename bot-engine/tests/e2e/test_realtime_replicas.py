"""Real time in the deployment's shape: two API processes (`jadetrade serve --no-workers`) and
one worker process (`jadetrade worker`) sharing PostgreSQL and Redis. A dashboard on either
API process sees its own user's alert become a signal, an order and a position, in that
order, whichever process received the alert — and nothing of anyone else's. The worker's
Telegram deliveries go to a local Bot API server that hangs: execution does not wait for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.models import User
from tests.conftest import Factory
from tests.support.pipeline import eventually
from tests.support.processes import EngineProcess, engine_env, stop_all, wait_all_started
from tests.support.telegram_server import TelegramBotApiServer
from tests.support.ws import WsClient, open_dashboard, ws_client

STORY = ["signal_received", "trade_executed", "trade_update", "position_update", "signal_update"]
CHAT = "5550001"


@pytest.fixture
def bot(factory: Factory) -> Iterator[TelegramBotApiServer]:
    server = TelegramBotApiServer()
    factory.secrets.add(server.token)
    with server:
        yield server


@pytest.fixture
def replicas(
    settings: Settings, tmp_path: Path, bot: TelegramBotApiServer, clean_state: None
) -> Iterator[tuple[EngineProcess, EngineProcess, EngineProcess]]:
    api1 = EngineProcess.api(settings, tmp_path, "api-1")
    api2 = EngineProcess.api(settings, tmp_path, "api-2")
    env = engine_env(settings, TELEGRAM_BOT_TOKEN=bot.token, TELEGRAM_API_URL=bot.base_url)
    worker = EngineProcess(["worker"], env, tmp_path / "worker.log")
    try:
        wait_all_started([api1, api2, worker])
        yield api1, api2, worker
    finally:
        stop_all([api1, api2, worker])


def _user_events(client: WsClient) -> list[dict[str, Any]]:
    return [m for m in client.messages if m["type"] in STORY]


def _signal_of(message: dict[str, Any]) -> str:
    data = message["data"]
    return str(data["id"] if message["type"].startswith("signal_") else data["signal_id"])


async def _link_telegram(factory: Factory, user: User) -> None:
    async with factory.app.state.pg.acquire() as conn:
        await conn.execute(
            "UPDATE users SET telegram_chat_id = $2, telegram_enabled = true WHERE id = $1",
            user.id,
            CHAT,
        )


async def _alert(api: EngineProcess, token: str) -> str:
    alert = {
        "token": token,
        "action": "long_entry",
        "symbol": "BTCUSDT",
        "qty": "0.002",
        "stop_loss": "55000",
    }
    async with httpx.AsyncClient(base_url=api.url) as http:
        response = await http.post("/api/webhooks/tradingview", json=alert)
    assert response.status_code == 200, response.text
    signal_id: str = response.json()["signal_id"]
    return signal_id


async def test_each_user_sees_their_own_alert_on_every_replica_in_order(
    replicas: tuple[EngineProcess, EngineProcess, EngineProcess],
    factory: Factory,
    bot: TelegramBotApiServer,
) -> None:
    api1, api2, worker = replicas
    alice, bob = await factory.user(), await factory.user()
    await _link_telegram(factory, alice)
    alice_hook, bob_hook = await factory.webhook_token(alice), await factory.webhook_token(bob)
    alice_jwt, bob_jwt = factory.access_token(alice), factory.access_token(bob)
    bot.set_latency(60)  # the Bot API hangs until released
    async with (
        ws_client(f"{api1.ws_url}?token={alice_jwt}") as alice_on_1,
        ws_client(api2.ws_url, subprotocols=["bearer", alice_jwt]) as alice_on_2,
        ws_client(api2.ws_url, subprotocols=["bearer", bob_jwt]) as bob_on_2,
    ):
        await asyncio.gather(*(open_dashboard(c) for c in (alice_on_1, alice_on_2, bob_on_2)))
        # Each alert enters through the other user's replica.
        alice_signal = await _alert(api2, alice_hook)
        bob_signal = await _alert(api1, bob_hook)
        for client, signal_id in ((alice_on_1, alice_signal), (alice_on_2, alice_signal),
                                  (bob_on_2, bob_signal)):  # fmt: skip
            done = await client.next_of("signal_update", id=signal_id)
            assert done["data"]["status"] == "executed", done["data"]["status_reason"]
        # Executed while Telegram still holds the notification's request.
        held = await eventually(lambda: _held(bot), lambda n: n >= 1, what="telegram request held")
        assert held == 1 and bot.messages == []

    for client, signal_id in ((alice_on_1, alice_signal), (alice_on_2, alice_signal),
                              (bob_on_2, bob_signal)):  # fmt: skip
        told = _user_events(client)
        assert [m["type"] for m in told] == STORY
        assert {_signal_of(m) for m in told} == {signal_id}  # nothing of the other user's
        seqs = [m["seq"] for m in client.messages]
        assert seqs == list(range(1, len(seqs) + 1))
    stop, opened = (m["data"] for m in _user_events(alice_on_1)[2:4])
    assert (stop["order_type"], stop["status"], stop["price"]) == ("stop_market", "open",
                                                                   "55000.00000000")  # fmt: skip
    assert (opened["symbol"], opened["quantity"], opened["status"]) == ("BTCUSDT", "0.00200000",
                                                                        "open")  # fmt: skip

    bot.clear_faults()  # the Bot API answers again: the held delivery completes
    await eventually(lambda: _messages(bot), lambda m: len(m) == 1, what="telegram delivered")
    ((chat, text),) = bot.messages
    assert chat == CHAT and text.startswith("Opened long BTCUSDT\n0.002 BTCUSDT at ")

    # The access token in `?token=` never reaches a log line; its redaction does.
    outputs = [api1.output, api2.output, worker.output]
    assert not any(secret in out for out in outputs for secret in (alice_jwt, bob_jwt, bot.token))
    assert "token=[REDACTED]" in api1.output


async def _held(bot: TelegramBotApiServer) -> int:
    return bot.held


async def _messages(bot: TelegramBotApiServer) -> list[tuple[str, str]]:
    return bot.messages
