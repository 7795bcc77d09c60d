"""The caller's signals and trades over REST: newest first, cursor pagination, filters,
validation, money as strings, and tenant isolation."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from app.models import User
from tests.conftest import Factory
from tests.support.pipeline import URL, Harness

pytest_plugins = ("tests.support.pipeline",)

LONG = {"action": "long_entry", "symbol": "BTCUSDT", "price": "65000", "stop_loss": "64000",
        "take_profit": "68000"}  # fmt: skip
ETH_LONG = {"action": "long_entry", "symbol": "ETHUSDT", "price": "3500", "stop_loss": "3400"}
SIGNAL_MONEY = ("price", "suggested_stop_loss", "suggested_take_profit")
TRADE_MONEY = ("quantity", "price", "filled_quantity", "avg_fill_price", "fee", "realized_pnl")


async def send(client: httpx.AsyncClient, token: str, **fields: Any) -> str:
    """Post an alert; the id of the signal it made."""
    response = await client.post(URL, json={"token": token, **fields})
    assert response.status_code == 200, response.text
    assert response.json()["status"] in ("queued", "logged"), response.text
    signal_id: str = response.json()["signal_id"]
    return signal_id


async def signals_of(
    client: httpx.AsyncClient, factory: Factory, user: User, count: int, **fields: Any
) -> list[str]:
    """`count` distinct signals of `user`, oldest first."""
    token = await factory.webhook_token(user)
    alert = {**LONG, **fields}
    return [await send(client, token, **alert, alert_id=f"a-{i}") for i in range(count)]


async def get_page(
    client: httpx.AsyncClient, path: str, auth: dict[str, str], **params: Any
) -> dict[str, Any]:
    response = await client.get(path, params=params, headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def walk(
    client: httpx.AsyncClient, path: str, auth: dict[str, str], limit: int, **params: Any
) -> list[list[dict[str, Any]]]:
    """Every page of a listing, following `next_cursor` to the end."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        body = await get_page(client, path, auth, **query)
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def assert_money_is_text(item: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        value = item[name]
        assert value is None or isinstance(value, str), f"{name} is {value!r}"
        if value is not None:
            assert "e" not in value.lower(), f"{name} is in scientific notation: {value}"
            Decimal(value)


def raw_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


# --------------------------------------------------------------------------- signals
async def test_signals_are_listed_newest_first_and_paged_exactly_once(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    created = await signals_of(client, factory, user, 7)
    auth = factory.auth(user)

    pages = await walk(client, "/api/signals", auth, limit=3)

    assert [len(p) for p in pages] == [3, 3, 1]
    walked = [item_id for page in pages for item_id in ids(page)]
    assert walked == created[::-1]
    stamps = [datetime.fromisoformat(i["created_at"]) for page in pages for i in page]
    assert stamps == sorted(stamps, reverse=True)
    everything = await get_page(client, "/api/signals", auth)
    assert ids(everything["items"]) == created[::-1]
    assert everything["next_cursor"] is None


async def test_an_exact_last_page_has_no_cursor(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    created = await signals_of(client, factory, user, 6)
    pages = await walk(client, "/api/signals", factory.auth(user), limit=3)
    assert [ids(p) for p in pages] == [created[:2:-1], created[2::-1]]


async def test_new_signals_do_not_shift_a_page_in_progress(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    created = await signals_of(client, factory, user, 4)
    auth = factory.auth(user)
    first = await get_page(client, "/api/signals", auth, limit=2)
    token = await factory.webhook_token(user, name="late")
    await send(client, token, **LONG, alert_id="late")
    rest = await get_page(client, "/api/signals", auth, limit=2, cursor=first["next_cursor"])
    assert ids(first["items"]) + ids(rest["items"]) == created[::-1]


async def test_signal_symbol_filter_is_case_insensitive(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    token = await factory.webhook_token(user)
    btc = await send(client, token, **LONG, alert_id="btc")
    eth = await send(client, token, **ETH_LONG, alert_id="eth")
    auth = factory.auth(user)
    for symbol in ("ethusdt", "EthUsdt", "ETHUSDT"):
        assert ids((await get_page(client, "/api/signals", auth, symbol=symbol))["items"]) == [eth]
    assert ids((await get_page(client, "/api/signals", auth, symbol="btcusdt"))["items"]) == [btc]
    assert (await get_page(client, "/api/signals", auth, symbol="SOLUSDT"))["items"] == []


async def test_signals_since_is_inclusive_and_until_exclusive(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    created = await signals_of(client, factory, user, 3)
    auth = factory.auth(user)
    items = (await get_page(client, "/api/signals", auth))["items"]
    stamp = {item["id"]: item["created_at"] for item in items}
    middle = stamp[created[1]]

    since = await get_page(client, "/api/signals", auth, since=middle)
    assert ids(since["items"]) == [created[2], created[1]]
    until = await get_page(client, "/api/signals", auth, until=middle)
    assert ids(until["items"]) == [created[0]]
    window = await get_page(
        client, "/api/signals", auth, since=stamp[created[0]], until=stamp[created[2]]
    )
    assert ids(window["items"]) == [created[1], created[0]]
    later = datetime.fromisoformat(stamp[created[2]]) + timedelta(seconds=1)
    assert (await get_page(client, "/api/signals", auth, since=later.isoformat()))["items"] == []


@pytest.fixture
def local_zone_far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is UTC-11 for the test (the server's zone must not
    matter)."""
    monkeypatch.setenv("TZ", "Pacific/Pago_Pago")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("local_zone_far_from_utc")
async def test_a_timestamp_without_offset_is_utc(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    (created,) = await signals_of(client, factory, user, 1)
    auth = factory.auth(user)
    (item,) = (await get_page(client, "/api/signals", auth))["items"]
    stamp = datetime.fromisoformat(item["created_at"])
    assert stamp.utcoffset() == timedelta(0)
    naive = stamp.replace(tzinfo=None).isoformat()
    assert ids((await get_page(client, "/api/signals", auth, since=naive))["items"]) == [created]
    assert (await get_page(client, "/api/signals", auth, until=naive))["items"] == []


async def test_signal_money_fields_are_strings(client: httpx.AsyncClient, factory: Factory) -> None:
    user = await factory.user()
    token = await factory.webhook_token(user)
    signal_id = await send(
        client, token, action="long_entry", symbol="BTCUSDT", price=65000.5, stop_loss=64000.25,
        take_profit="68000",
    )  # fmt: skip
    auth = factory.auth(user)
    (listed,) = (await get_page(client, "/api/signals", auth))["items"]
    one = await get_page(client, f"/api/signals/{signal_id}", auth)
    for item in (listed, one):
        assert_money_is_text(item, SIGNAL_MONEY)
        assert Decimal(item["price"]) == Decimal("65000.5")
        assert Decimal(item["suggested_stop_loss"]) == Decimal("64000.25")
        assert item["status"] == "queued"
        assert item["symbol"] == "BTCUSDT"
        assert "token" not in item["raw_payload"]


async def test_one_signal_by_id(client: httpx.AsyncClient, factory: Factory) -> None:
    user = await factory.user()
    (created,) = await signals_of(client, factory, user, 1)
    auth = factory.auth(user)
    body = await get_page(client, f"/api/signals/{created}", auth)
    assert body["id"] == created
    assert body["signal_type"] == "long_entry"
    missing = await client.get(f"/api/signals/{uuid.uuid4()}", headers=auth)
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": "not_found", "message": "signal not found", "field": "signal_id"
    }  # fmt: skip
    bad = await client.get("/api/signals/not-a-uuid", headers=auth)
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "signal_id"


# --------------------------------------------------------------------------- validation
MALFORMED_CURSORS = {
    "not base64 json": "not-a-cursor",
    "non ascii": "é",
    "json but not a pair": raw_cursor([1, 2, 3]),
    "null": raw_cursor(None),
    "object": raw_cursor({"created_at": "2024-01-01T00:00:00+00:00", "id": str(uuid.uuid4())}),
    "number as id": raw_cursor(["2024-01-01T00:00:00+00:00", 5]),
    "number as time": raw_cursor([5, str(uuid.uuid4())]),
    "bad time": raw_cursor(["yesterday", str(uuid.uuid4())]),
    "bad id": raw_cursor(["2024-01-01T00:00:00+00:00", "nope"]),
    "time without offset": raw_cursor(["2024-01-01T00:00:00", str(uuid.uuid4())]),
}


@pytest.mark.parametrize("path", ["/api/signals", "/api/trades", "/api/positions"])
@pytest.mark.parametrize("cursor", MALFORMED_CURSORS.values(), ids=MALFORMED_CURSORS.keys())
async def test_a_malformed_cursor_is_422_naming_cursor(
    client: httpx.AsyncClient, factory: Factory, path: str, cursor: str
) -> None:
    user = await factory.user()
    response = await client.get(path, params={"cursor": cursor}, headers=factory.auth(user))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["field"] == "cursor"


@pytest.mark.parametrize("path", ["/api/signals", "/api/trades", "/api/positions"])
@pytest.mark.parametrize("limit", ["0", "-1", "201", "1000000", "ten", "1.5"])
async def test_a_limit_outside_1_to_200_is_422_naming_limit(
    client: httpx.AsyncClient, factory: Factory, path: str, limit: str
) -> None:
    user = await factory.user()
    response = await client.get(path, params={"limit": limit}, headers=factory.auth(user))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["field"] == "limit"


@pytest.mark.parametrize("limit", [1, 200])
async def test_limits_at_the_bounds_are_accepted(
    client: httpx.AsyncClient, factory: Factory, limit: int
) -> None:
    user = await factory.user()
    created = await signals_of(client, factory, user, 2)
    body = await get_page(client, "/api/signals", factory.auth(user), limit=limit)
    assert ids(body["items"]) == created[::-1][:limit]
    assert (body["next_cursor"] is None) == (limit == 200)


@pytest.mark.parametrize("path", ["/api/signals", "/api/trades", "/api/positions"])
async def test_listings_need_authentication(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"


# --------------------------------------------------------------------------- isolation
async def test_another_users_signals_are_invisible(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    alice, bob = await factory.user(), await factory.user()
    created = await signals_of(client, factory, alice, 2)
    mine = await signals_of(client, factory, bob, 1)
    bob_auth = factory.auth(bob)

    for signal_id in created:
        response = await client.get(f"/api/signals/{signal_id}", headers=bob_auth)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert ids((await get_page(client, "/api/signals", bob_auth))["items"]) == mine
    filtered = await get_page(client, "/api/signals", bob_auth, symbol="BTCUSDT", limit=200)
    assert ids(filtered["items"]) == mine
    assert (await get_page(client, "/api/trades", bob_auth, signal_id=created[0]))["items"] == []
    # Alice's cursor does not reveal her rows to Bob either.
    alice_page = await get_page(client, "/api/signals", factory.auth(alice), limit=1)
    from_cursor = await get_page(client, "/api/signals", bob_auth, cursor=alice_page["next_cursor"])
    assert set(ids(from_cursor["items"])) <= set(mine)


# --------------------------------------------------------------------------- with trades
async def test_trades_are_paged_newest_first_and_filtered(harness: Harness) -> None:
    token, auth = await harness.trader()
    client = harness.client
    btc_entry = (await harness.alert(token, **LONG)).json()["signal_id"]
    assert (await harness.settled(btc_entry, auth))["status"] == "executed"
    btc_exit = (await harness.alert(token, action="long_exit", symbol="BTCUSDT")).json()
    assert (await harness.settled(btc_exit["signal_id"], auth))["status"] == "executed"
    eth_entry = (await harness.alert(token, **ETH_LONG)).json()["signal_id"]
    assert (await harness.settled(eth_entry, auth))["status"] == "executed"
    # BTC entry, stop, take profit, close; ETH entry, stop.
    everything = await get_page(client, "/api/trades", auth, limit=200)
    assert len(everything["items"]) == 6
    stamps = [datetime.fromisoformat(t["created_at"]) for t in everything["items"]]
    assert stamps == sorted(stamps, reverse=True)

    pages = await walk(client, "/api/trades", auth, limit=4)
    assert [len(p) for p in pages] == [4, 2]
    assert [t for p in pages for t in ids(p)] == ids(everything["items"])

    by_signal = await get_page(client, "/api/trades", auth, signal_id=btc_entry)
    assert {t["client_order_id"][-1] for t in by_signal["items"]} == {"e", "s", "t"}
    assert {t["signal_id"] for t in by_signal["items"]} == {btc_entry}
    eth = await get_page(client, "/api/trades", auth, symbol="ethusdt")
    assert {t["signal_id"] for t in eth["items"]} == {eth_entry}
    assert len(eth["items"]) == 2
    filled = await get_page(client, "/api/trades", auth, status="filled")
    assert sorted(t["client_order_id"][-1] for t in filled["items"]) == ["c", "e", "e"]
    canceled = await get_page(client, "/api/trades", auth, status="canceled", symbol="BTCUSDT")
    assert sorted(t["client_order_id"][-1] for t in canceled["items"]) == ["s", "t"]

    middle = everything["items"][3]["created_at"]
    since = await get_page(client, "/api/trades", auth, since=middle, limit=200)
    until = await get_page(client, "/api/trades", auth, until=middle, limit=200)
    assert ids(since["items"]) + ids(until["items"]) == ids(everything["items"])
    assert ids(since["items"])[-1] == everything["items"][3]["id"]

    for trade in everything["items"]:
        assert_money_is_text(trade, TRADE_MONEY)
        one = await get_page(client, f"/api/trades/{trade['id']}", auth)
        assert one == trade
    (entry,) = [t for t in by_signal["items"] if t["client_order_id"].endswith("e")]
    assert Decimal(entry["avg_fill_price"]) == Decimal("65065")
    assert Decimal(entry["filled_quantity"]) == Decimal("0.015")


async def test_signal_status_filter(harness: Harness) -> None:
    token, auth = await harness.trader()
    entry = (await harness.alert(token, **LONG)).json()["signal_id"]
    skipped = (await harness.alert(token, action="short_exit", symbol="ETHUSDT")).json()
    await harness.settled(entry, auth)
    await harness.settled(skipped["signal_id"], auth)
    client = harness.client
    executed = await get_page(client, "/api/signals", auth, status="executed")
    assert ids(executed["items"]) == [entry]
    only_skipped = await get_page(client, "/api/signals", auth, status="skipped")
    assert ids(only_skipped["items"]) == [skipped["signal_id"]]
    assert (await get_page(client, "/api/signals", auth, status="queued"))["items"] == []
    both = await get_page(client, "/api/signals", auth, status="executed", symbol="btcusdt")
    assert ids(both["items"]) == [entry]


async def test_another_users_trades_are_invisible(harness: Harness) -> None:
    token, alice = await harness.trader()
    _, bob = await harness.trader()
    entry = (await harness.alert(token, **LONG)).json()["signal_id"]
    await harness.settled(entry, alice)
    trades = await harness.trades(alice, entry)
    assert len(trades) == 3
    client = harness.client
    for trade in trades:
        response = await client.get(f"/api/trades/{trade['id']}", headers=bob)
        assert response.status_code == 404
        assert response.json()["error"] == {
            "code": "not_found", "message": "trade not found", "field": "trade_id"
        }  # fmt: skip
    assert (await get_page(client, "/api/trades", bob, limit=200))["items"] == []
    assert (await get_page(client, "/api/trades", bob, signal_id=entry))["items"] == []
    assert (await get_page(client, "/api/trades", bob, symbol="BTCUSDT"))["items"] == []
    missing = await client.get(f"/api/trades/{uuid.uuid4()}", headers=alice)
    assert missing.status_code == 404
