"""Trading on Binance and Bybit end to end, against the emulators through the real ccxt
clients: a user adds an API key over the REST API, a TradingView alert opens a protected
position on the exchange, the exchange closes it, and reconciliation records the realised PnL;
then the fault drills — an answer lost after the order was placed, 5xx, a rate limit, an order
under the minimum — each ending with no order placed twice.

The engine runs as in production: webhook intake, the Redis queue, the executor, the adapters
built by the factory from the user's stored (encrypted) key, and the position syncer.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from app.config import Settings
from app.workers.position_syncer import sync_all
from tests.conftest import SecretsSeen
from tests.exchange_sim import binance_futures, bybit_v5
from tests.support.live import Exchange, add_key, traded
from tests.support.pipeline import Harness, Trader, eventually

pytest_plugins = ("tests.support.pipeline", "tests.support.live")
pytestmark = pytest.mark.usefixtures("quick_lookups")

D = Decimal
LONG = {"action": "long_entry", "symbol": "BTCUSDT", "stop_loss": "63000",
        "take_profit": "68000"}  # fmt: skip
# 2 % of 10,000 USDT over a 2,000 USDT stop is 0.1 BTC; capped at 1,000 USDT of BTC: 0.015.
SIZE = D("0.015")


@pytest.fixture(scope="module")
def settings(live_settings: Settings) -> Settings:
    return live_settings


async def executed(harness: Harness, trader: Trader, **fields: Any) -> dict[str, Any]:
    response = await harness.alert(trader.token, **fields)
    assert response.status_code == 200, response.text
    return await harness.settled(response.json()["signal_id"], trader.auth)


# --------------------------------------------------------------------------- keys over the API
async def test_a_key_is_checked_with_the_exchange_stored_masked_and_removable(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    trader = await harness.account()
    api_key, secret, added = await add_key(harness, trader, exchange, secrets_seen)
    assert added["status"] == 201, added
    assert added["exchange"] == exchange.name and added["api_key_hint"].endswith(api_key[-4:])
    assert added["permissions"] == {"can_read": True, "can_trade": True, "can_withdraw": False}
    listed = (await harness.client.get("/api/exchange-keys", headers=trader.auth)).text
    assert api_key not in listed and secret not in listed and added["id"] in listed

    other = await harness.account()  # another user sees nothing, deletes nothing
    assert (await harness.client.get("/api/exchange-keys", headers=other.auth)).json() == []
    denied = await harness.client.delete(f"/api/exchange-keys/{added['id']}", headers=other.auth)
    assert denied.status_code == 404

    deleted = await harness.client.delete(f"/api/exchange-keys/{added['id']}", headers=trader.auth)
    assert deleted.status_code == 204
    [key] = (await harness.client.get("/api/exchange-keys", headers=trader.auth)).json()
    assert key["is_active"] is False
    async with harness.app.state.pg.acquire() as conn:
        actions = [row["action"] for row in await conn.fetch(
            "SELECT action FROM audit_log WHERE user_id = $1 AND resource_type = 'exchange_api_key'"
            " ORDER BY created_at", trader.user.id)]  # fmt: skip
        stored = await conn.fetchrow(
            "SELECT * FROM exchange_api_keys WHERE id = $1", uuid.UUID(added["id"])
        )
    assert len(actions) == 2 and actions[0] != actions[1]
    assert stored is not None
    assert all(api_key not in str(v) and secret not in str(v) for v in stored.values())


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"can_withdraw": True}, "withdrawal_permission"),
        ({"can_trade": False}, "no_trade_permission"),
    ],
)
async def test_a_key_that_can_withdraw_or_cannot_trade_is_refused(
    harness: Harness,
    exchange: Exchange,
    secrets_seen: SecretsSeen,
    options: dict[str, bool],
    code: str,
) -> None:
    trader = await harness.account()
    _api_key, _secret, added = await add_key(harness, trader, exchange, secrets_seen, **options)
    assert added["status"] == 422
    assert added["error"]["code"] == code and added["error"]["field"] == "api_key"
    assert (await harness.client.get("/api/exchange-keys", headers=trader.auth)).json() == []


async def test_a_key_the_exchange_refuses_is_not_stored(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    trader = await harness.account()
    api_key, _secret = exchange.add_account()
    wrong = f"wrong{uuid.uuid4().hex}"
    secrets_seen.add(api_key, wrong)
    response = await harness.client.post(
        "/api/exchange-keys",
        json={"exchange": exchange.name, "api_key": api_key, "api_secret": wrong},
        headers=trader.auth,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "key_refused"
    assert api_key not in response.text and wrong not in response.text


async def test_an_unreachable_exchange_answers_503_and_stores_nothing(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    trader = await harness.account()
    asked = binance_futures.API_RESTRICTIONS if exchange.name == "binance" else bybit_v5.QUERY_API
    exchange.server.fail_next("GET", asked, 503, times=10)
    _api_key, _secret, added = await add_key(harness, trader, exchange, secrets_seen)
    assert added["status"] == 503, added
    assert added["error"]["code"] == "exchange_unreachable"
    assert (await harness.client.get("/api/exchange-keys", headers=trader.auth)).json() == []


# --------------------------------------------------------------------------- the round trip
async def test_an_alert_opens_a_protected_position_and_the_stop_closes_it_with_its_pnl(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    live = await traded(harness, exchange, secrets_seen)
    trader, api_key = live.trader, live.api_key
    signal = await executed(harness, trader, **LONG, exchange=exchange.name)
    assert signal["status"] == "executed", signal

    # On the exchange: the position, and its stop loss and take profit resting.
    assert exchange.position(api_key) == SIZE
    resting = exchange.resting(api_key)
    assert len(resting) == 2
    [position] = await harness.positions(trader.auth, "open")
    assert position["exchange"] == exchange.name and D(position["quantity"]) == SIZE
    trades = {t["client_order_id"][-1]: t for t in await harness.trades(trader.auth, signal["id"])}
    assert set(trades) == {"e", "s", "t"}
    assert trades["e"]["status"] == "filled" and D(trades["e"]["avg_fill_price"]) == D("65000")
    assert trades["s"]["status"] == "open" and D(trades["s"]["price"]) == D("63000")
    assert trades["t"]["status"] == "open" and D(trades["t"]["quantity"]) == SIZE

    # The market falls through the stop while nobody watches; the syncer finds out.
    exchange.set_price("62900")
    assert exchange.position(api_key) == 0
    report = await sync_all(
        harness.pipeline.executor, harness.pipeline.adapters, harness.app.state.pg
    )
    assert report.failed == []

    [closed] = await harness.positions(trader.auth, "closed")
    assert closed["id"] == position["id"]
    realized = exchange.realized(api_key)
    assert realized == (D("62900") - D("65000")) * SIZE
    assert D(closed["realized_pnl"]) == realized
    trades = {t["client_order_id"][-1]: t for t in await harness.trades(trader.auth, signal["id"])}
    assert trades["s"]["status"] == "filled" and D(trades["s"]["realized_pnl"]) == realized
    assert trades["t"]["status"] == "canceled"  # no position left to take profit on
    assert exchange.resting(api_key) == []


async def test_a_position_closed_on_the_exchange_website_is_recorded_with_its_pnl(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    live = await traded(harness, exchange, secrets_seen)
    trader, api_key = live.trader, live.api_key
    signal = await executed(harness, trader, **LONG, exchange=exchange.name)
    assert signal["status"] == "executed", signal
    exchange.set_price("66000")
    website = exchange.website(api_key, live.secret)
    try:  # the user closes by hand, without reduce-only, on the exchange
        await website.create_order("BTC/USDT:USDT", "market", "sell", float(SIZE), None, {})
    finally:
        await website.close()
    assert exchange.position(api_key) == 0

    await sync_all(harness.pipeline.executor, harness.pipeline.adapters, harness.app.state.pg)
    [closed] = await harness.positions(trader.auth, "closed")
    assert (
        D(closed["realized_pnl"]) == (D("66000") - D("65000")) * SIZE == exchange.realized(api_key)
    )
    response = await harness.client.get("/api/trades?symbol=BTCUSDT", headers=trader.auth)
    by_source = {t["signal_id"] is None: t for t in response.json()["items"]}
    manual = by_source[True]
    assert manual["side"] == "sell" and D(manual["filled_quantity"]) == SIZE
    assert manual["reduce_only"] is True and manual["position_id"] == closed["id"]
    assert exchange.resting(api_key) == []  # its stop and target canceled


async def test_a_signal_for_an_exchange_without_a_key_fails_with_the_reason(
    harness: Harness, exchange: Exchange
) -> None:
    trader = await harness.account()
    signal = await executed(harness, trader, **LONG, exchange=exchange.name)
    assert signal["status"] == "failed"
    assert f"no active {exchange.name} API key" in signal["status_reason"]


# --------------------------------------------------------------------------- fault drills
async def test_drill_answer_lost_after_the_exchange_placed_the_order(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    live = await traded(harness, exchange, secrets_seen)
    trader, api_key = live.trader, live.api_key
    exchange.server.accept_then_stall("POST", exchange.entry_path, seconds=2.0)
    signal = await executed(harness, trader, **LONG, exchange=exchange.name)
    assert signal["status"] == "executed", signal
    assert len(exchange.entries(api_key)) == 1  # looked up by client id, never sent again
    assert exchange.position(api_key) == SIZE and len(exchange.resting(api_key)) == 2


async def test_drill_one_5xx_before_the_exchange_acted_is_retried_safely(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    live = await traded(harness, exchange, secrets_seen)
    trader, api_key = live.trader, live.api_key
    start = len(exchange.server.requests)
    exchange.server.fail_next("POST", exchange.entry_path, 503)
    signal = await executed(harness, trader, **LONG, exchange=exchange.name)
    assert signal["status"] == "executed", signal
    sent = [r.params.get("newClientOrderId") or r.params.get("orderLinkId")
            for r in exchange.creates_since(start)]  # fmt: skip
    entry_sends = [cid for cid in sent if cid.endswith("e")]
    assert len(entry_sends) == 2 and len(set(entry_sends)) == 1  # the same order, sent again
    assert len(exchange.entries(api_key)) == 1
    assert exchange.position(api_key) == SIZE


async def test_drill_5xx_on_every_attempt_fails_the_signal_with_nothing_placed(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    live = await traded(harness, exchange, secrets_seen)
    trader, api_key = live.trader, live.api_key
    exchange.server.fail_next("POST", exchange.entry_path, 502, times=100)
    response = await harness.alert(trader.token, **LONG, exchange=exchange.name)
    signal = await eventually(
        lambda: harness.signal(response.json()["signal_id"], trader.auth),
        lambda body: body["status"] == "failed",
        what="signal not failed",
        timeout_s=60,
    )
    assert "gave up" in signal["status_reason"]
    assert "no clear answer from the exchange" in signal["status_reason"]
    assert exchange.entries(api_key) == [] and exchange.position(api_key) == 0
    [entry] = [t for t in await harness.trades(trader.auth, signal["id"])]
    assert entry["status"] == "failed"


async def test_drill_a_rate_limit_backs_off_then_executes_once(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    live = await traded(harness, exchange, secrets_seen)
    trader, api_key = live.trader, live.api_key
    start = len(exchange.server.requests)
    exchange.server.fail_next(
        "POST", exchange.entry_path, exchange.rate_limit_status(), retry_after=1
    )
    signal = await executed(harness, trader, **LONG, exchange=exchange.name)
    assert signal["status"] == "executed", signal
    refused, accepted, *_protection = exchange.creates_since(start)
    assert accepted.at - refused.at >= 0.9  # nothing sent before the Retry-After was up
    assert len(exchange.entries(api_key)) == 1


async def test_drill_an_order_under_the_minimum_is_rejected_before_any_request(
    harness: Harness, exchange: Exchange, secrets_seen: SecretsSeen
) -> None:
    live = await traded(harness, exchange, secrets_seen)
    trader, api_key = live.trader, live.api_key
    start = len(exchange.server.requests)
    signal = await executed(harness, trader, **LONG, exchange=exchange.name, qty="0.001")
    assert signal["status"] == "rejected", signal
    assert "minimum" in signal["status_reason"] and "100" in signal["status_reason"]
    assert exchange.creates_since(start) == [] and exchange.entries(api_key) == []
