"""The Telegram client through real HTTP against the local Bot API server: delivery, the
length limit, and every way Telegram refuses — each as the error the caller acts on, and
none of them carrying the bot token."""

from __future__ import annotations

import json
import traceback
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pydantic import SecretStr

from app.core.telegram import (
    MAX_MESSAGE_LENGTH,
    TelegramAuthFailed,
    TelegramClient,
    TelegramError,
    TelegramRetryLater,
    TelegramUndeliverable,
)
from app.embedded.ports import free_port
from tests.conftest import SecretsSeen
from tests.support.telegram_server import TelegramBotApiServer, new_bot_token

CHAT = "123456789"


@pytest.fixture
def telegram(secrets_seen: SecretsSeen) -> Iterator[TelegramBotApiServer]:
    with TelegramBotApiServer() as server:
        secrets_seen.add(server.token)
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def client_for(
    server: TelegramBotApiServer,
    http: httpx.AsyncClient,
    token: str | None = None,
    *,
    timeout_s: float = 5.0,
) -> TelegramClient:
    return TelegramClient(
        http, SecretStr(token or server.token), base_url=server.base_url, timeout_s=timeout_s
    )


@pytest.fixture
def bot(telegram: TelegramBotApiServer, http: httpx.AsyncClient) -> TelegramClient:
    return client_for(telegram, http)


def assert_token_hidden(error: TelegramError, token: str) -> None:
    """Neither the token nor its secret half is in anything an error shows or logs."""
    secret = token.rpartition(":")[2]
    shown = [str(error), repr(error), error.message, "".join(traceback.format_exception(error))]
    for text in shown:
        assert token not in text
        assert secret not in text
    # No httpx exception (whose message holds the URL) is chained to be shown with it.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


# ----------------------------------------------------------------------------- delivery
async def test_a_message_is_delivered_to_the_chat_as_plain_text(
    bot: TelegramClient, telegram: TelegramBotApiServer
) -> None:
    text = "BTCUSDT long filled at 65,000 <b>not html</b> *not markdown* https://example.com"
    first = await bot.send_message(CHAT, text)
    second = await bot.send_message(CHAT, "second")

    assert telegram.messages == [(CHAT, text), (CHAT, "second")]
    assert second == first + 1
    call = telegram.calls[0]
    assert (call.http_method, call.method) == ("POST", "sendMessage")
    assert call.content_type == "application/json"
    assert call.params["link_preview_options"] == {"is_disabled": True}
    assert "parse_mode" not in call.params


async def test_a_text_over_the_limit_is_cut_to_it(
    bot: TelegramClient, telegram: TelegramBotApiServer
) -> None:
    await bot.send_message(CHAT, "a" * MAX_MESSAGE_LENGTH)
    await bot.send_message(CHAT, "b" * (MAX_MESSAGE_LENGTH + 904))

    (_, exact), (_, cut) = telegram.messages
    assert exact == "a" * MAX_MESSAGE_LENGTH
    assert len(cut) == MAX_MESSAGE_LENGTH
    assert cut == "b" * (MAX_MESSAGE_LENGTH - 1) + "…"


async def test_get_me_answers_the_bot_user(
    bot: TelegramClient, telegram: TelegramBotApiServer
) -> None:
    me = await bot.get_me()
    assert me["id"] == telegram.bot_id
    assert me["is_bot"] is True
    assert me["username"] == telegram.username


async def test_the_server_takes_form_encoded_and_query_parameters_as_the_real_api_does(
    telegram: TelegramBotApiServer, http: httpx.AsyncClient
) -> None:
    url = f"{telegram.base_url}/bot{telegram.token}/sendMessage"
    form = await http.post(
        url,
        data={
            "chat_id": "-1001234567890",
            "text": "from a form",
            "link_preview_options": json.dumps({"is_disabled": True}),
        },
    )
    query = await http.get(url, params={"chat_id": CHAT, "text": "from a query"})

    assert form.status_code == 200
    answer = form.json()
    assert answer["ok"] is True
    assert answer["result"]["chat"] == {
        "id": -1001234567890,
        "title": "Traders",
        "type": "supergroup",
    }
    assert answer["result"]["text"] == "from a form"
    assert isinstance(answer["result"]["message_id"], int)
    assert query.json()["result"]["chat"]["type"] == "private"
    assert telegram.messages == [("-1001234567890", "from a form"), (CHAT, "from a query")]
    assert telegram.calls[0].content_type == "application/x-www-form-urlencoded"


async def test_the_server_refuses_what_telegram_refuses(
    telegram: TelegramBotApiServer, http: httpx.AsyncClient
) -> None:
    url = f"{telegram.base_url}/bot{telegram.token}/sendMessage"
    too_long = await http.post(url, json={"chat_id": CHAT, "text": "x" * 4097})
    empty = await http.post(url, json={"chat_id": CHAT, "text": ""})
    unknown_method = await http.post(f"{telegram.base_url}/bot{telegram.token}/sendTelepathy")

    assert too_long.status_code == 400
    assert too_long.json() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: message is too long",
    }
    assert empty.json()["description"] == "Bad Request: message text is empty"
    assert unknown_method.status_code == 404
    assert telegram.messages == []


# ----------------------------------------------------------------------------- retry later
async def test_rate_limit_is_retry_later_with_telegrams_wait(
    bot: TelegramClient, telegram: TelegramBotApiServer
) -> None:
    telegram.fail_next(1, 429, retry_after=7)

    with pytest.raises(TelegramRetryLater) as caught:
        await bot.send_message(CHAT, "rate limited")

    error = caught.value
    assert error.retry_after_s == 7.0
    assert error.status == 429
    assert error.code == "telegram_retry_later"
    assert error.message == "Too Many Requests: retry after 7"
    assert_token_hidden(error, telegram.token)
    assert telegram.messages == []
    await bot.send_message(CHAT, "after the wait")  # the fault was for one request
    assert telegram.messages == [(CHAT, "after the wait")]


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retry_later(
    bot: TelegramClient, telegram: TelegramBotApiServer, status: int
) -> None:
    telegram.fail_next(1, status)

    with pytest.raises(TelegramRetryLater) as caught:
        await bot.send_message(CHAT, "server error")

    assert caught.value.status == status
    assert caught.value.retry_after_s is None
    assert_token_hidden(caught.value, telegram.token)
    assert telegram.messages == []


async def test_an_answer_that_is_not_the_bot_api_is_retry_later(
    bot: TelegramClient, telegram: TelegramBotApiServer
) -> None:
    telegram.fail_next(1, 502, raw_body=b"<html><body>502 Bad Gateway</body></html>")

    with pytest.raises(TelegramRetryLater) as caught:
        await bot.send_message(CHAT, "through a broken proxy")

    assert caught.value.status == 502
    assert_token_hidden(caught.value, telegram.token)


async def test_a_hanging_api_is_retry_later_after_the_timeout(
    telegram: TelegramBotApiServer, http: httpx.AsyncClient
) -> None:
    telegram.set_latency(30)
    bot = client_for(telegram, http, timeout_s=0.2)

    with pytest.raises(TelegramRetryLater) as caught:
        await bot.send_message(CHAT, "into the void")

    assert caught.value.message == "Telegram did not answer in time"
    assert caught.value.status is None
    assert_token_hidden(caught.value, telegram.token)
    telegram.clear_faults()


async def test_an_unreachable_api_is_retry_later(
    http: httpx.AsyncClient, secrets_seen: SecretsSeen
) -> None:
    token = new_bot_token()
    secrets_seen.add(token)
    bot = TelegramClient(http, SecretStr(token), base_url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(TelegramRetryLater) as caught:
        await bot.send_message(CHAT, "nobody listens")

    assert caught.value.message == "the request failed: ConnectError"
    assert_token_hidden(caught.value, token)


# ----------------------------------------------------------------------------- never for that chat
async def test_a_chat_that_blocked_the_bot_is_undeliverable(
    bot: TelegramClient, telegram: TelegramBotApiServer
) -> None:
    telegram.block_chat(CHAT)

    with pytest.raises(TelegramUndeliverable) as caught:
        await bot.send_message(CHAT, "are you there?")

    error = caught.value
    assert error.message == "Forbidden: bot was blocked by the user"
    assert error.status == 403
    assert error.code == "telegram_undeliverable"
    assert_token_hidden(error, telegram.token)
    await bot.send_message("987654321", "another user still gets it")
    assert telegram.messages == [("987654321", "another user still gets it")]


@pytest.mark.parametrize("chat_id", ["555000111", "not-a-chat"])
async def test_an_unknown_chat_is_undeliverable(
    bot: TelegramClient, telegram: TelegramBotApiServer, chat_id: str
) -> None:
    telegram.mark_chat_missing("555000111")

    with pytest.raises(TelegramUndeliverable) as caught:
        await bot.send_message(chat_id, "hello?")

    assert caught.value.message == "Bad Request: chat not found"
    assert caught.value.status == 400
    assert_token_hidden(caught.value, telegram.token)
    assert telegram.messages == []


async def test_cleared_faults_deliver_again(
    bot: TelegramClient, telegram: TelegramBotApiServer
) -> None:
    telegram.block_chat(CHAT)
    telegram.fail_next(3, 500)
    telegram.clear_faults()

    await bot.send_message(CHAT, "back to normal")
    assert telegram.messages == [(CHAT, "back to normal")]


# ----------------------------------------------------------------------------- bad token
async def test_a_wrong_token_is_auth_failed(
    telegram: TelegramBotApiServer, http: httpx.AsyncClient, secrets_seen: SecretsSeen
) -> None:
    wrong = new_bot_token()
    secrets_seen.add(wrong)
    bot = client_for(telegram, http, wrong)

    with pytest.raises(TelegramAuthFailed) as sending:
        await bot.send_message(CHAT, "with someone else's token")
    with pytest.raises(TelegramAuthFailed) as checking:
        await bot.get_me()

    for error in (sending.value, checking.value):
        assert (error.status, error.message) == (401, "Unauthorized")
        assert error.code == "telegram_auth_failed"
        assert_token_hidden(error, wrong)
    assert telegram.messages == []


async def test_a_malformed_token_is_auth_failed(
    telegram: TelegramBotApiServer, http: httpx.AsyncClient, secrets_seen: SecretsSeen
) -> None:
    malformed = "not-a-bot-token-" + "x" * 30
    secrets_seen.add(malformed)
    bot = client_for(telegram, http, malformed)

    with pytest.raises(TelegramAuthFailed) as caught:
        await bot.get_me()

    assert caught.value.status == 404
    assert_token_hidden(caught.value, malformed)


def test_the_client_does_not_show_its_token(
    telegram: TelegramBotApiServer, http: httpx.AsyncClient
) -> None:
    bot = client_for(telegram, http)
    assert telegram.token not in repr(bot)
    assert telegram.token.split(":", 1)[1] not in str(vars(bot))
