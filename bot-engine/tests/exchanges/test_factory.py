"""The adapter factory: which adapter a user's signal trades through, one ccxt client per API
key reused and closed, markets loaded once per exchange environment, demo trading."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core import users
from app.core.credentials import Keyring
from app.core.exchange_keys import mark_invalid, store_key
from app.core.metrics import Metrics
from app.core.pg import Pool
from app.exchanges.base import ApiCredentials, KeyPermissions
from app.exchanges.errors import AuthenticationFailed
from app.exchanges.factory import AdapterFactory, ExchangeUnavailable, NoApiKey
from app.exchanges.paper import PaperExchange
from app.exchanges.price_feed import ManualPriceFeed
from tests.conftest import make_settings
from tests.exchange_sim.binance_futures import BinanceFuturesServer
from tests.exchange_sim.bybit_v5 import BybitV5Server
from tests.support.venues import new_credentials

if TYPE_CHECKING:
    from tests.conftest import TestServers

pytest_plugins = ("tests.support.live",)  # the emulators

TRADING = KeyPermissions(can_read=True, can_trade=True, can_withdraw=False)


@pytest.fixture
def factory_settings(
    database_url: str,
    servers: TestServers,
    local_dir: Path,
    binance_server: BinanceFuturesServer,
    bybit_server: BybitV5Server,
) -> Settings:
    return make_settings(
        database_url,
        servers.redis_url,
        local_dir,
        EXCHANGE_API_URLS={"binance": binance_server.api_urls, "bybit": bybit_server.api_urls},
    )


@pytest.fixture
async def factory(
    factory_settings: Settings, pg_pool: Pool, clean_state: None
) -> AsyncIterator[AdapterFactory]:
    made = AdapterFactory(factory_settings, pg_pool, ManualPriceFeed())
    yield made
    await made.aclose()


async def test_each_key_gets_one_client_reused_and_markets_are_loaded_once(
    factory: AdapterFactory, binance_server: BinanceFuturesServer
) -> None:
    first_key, second_key = new_credentials(), new_credentials()
    for api_key, secret in (first_key, second_key):
        binance_server.add_account(api_key, secret)
    loads = len(binance_server.requests_to("GET", "/fapi/v1/exchangeInfo"))

    first = await factory.live("binance", "live", ApiCredentials(*first_key), key_id="k1")
    again = await factory.live("binance", "live", ApiCredentials(*first_key), key_id="k1")
    second = await factory.live("binance", "live", ApiCredentials(*second_key), key_id="k2")
    assert again is first and second is not first and second.client is not first.client
    assert await first.get_equity() > 0 and await second.get_equity() > 0
    await first.market("BTCUSDT")
    await second.market("ETHUSDT")
    assert len(binance_server.requests_to("GET", "/fapi/v1/exchangeInfo")) == loads + 1

    # A key stored again under a new secret is a new client, not the old one.
    renewed = await factory.live(
        "binance", "live", ApiCredentials(first_key[0], "another-secret-xx"), key_id="k1"
    )
    assert renewed is not first

    await factory.aclose()
    assert first.client.session is None and second.client.session is None
    assert renewed.client.session is None


def test_demo_mode_talks_to_the_exchanges_demo_trading_hosts(
    pg_pool: Pool, settings: Settings
) -> None:
    factory = AdapterFactory(settings, pg_pool, ManualPriceFeed())  # the real exchanges' URLs
    binance = factory.new_adapter("binance", "demo", ApiCredentials("k" * 16, "s" * 16), key_id="d")
    bybit = factory.new_adapter("bybit", "demo", ApiCredentials("k" * 16, "s" * 16), key_id="d")
    live = factory.new_adapter("binance", "live", ApiCredentials("k" * 16, "s" * 16), key_id="l")
    assert binance.client.urls["api"]["fapiPrivate"].startswith("https://demo-fapi.binance.com/")
    assert bybit.client.urls["api"]["private"].startswith("https://api-demo.")
    assert live.client.urls["api"]["fapiPrivate"].startswith("https://fapi.binance.com/")


async def test_a_user_trades_with_the_active_key_of_the_signals_exchange(
    factory: AdapterFactory,
    factory_settings: Settings,
    pg_pool: Pool,
    session: AsyncSession,
    bybit_server: BybitV5Server,
) -> None:
    user = await users.create_user(session, f"{uuid.uuid4().hex[:10]}@example.com", users.Tier.PRO)
    await session.commit()
    assert isinstance(await factory.for_user(user.id, "paper"), PaperExchange)
    with pytest.raises(NoApiKey) as missing:
        await factory.for_user(user.id, "bybit")
    assert missing.value.code == "no_api_key" and "POST /api/exchange-keys" in missing.value.message
    with pytest.raises(ExchangeUnavailable):
        await factory.for_user(user.id, "kraken")

    api_key, secret = new_credentials()
    bybit_server.add_account(api_key, secret)
    stored = await store_key(
        pg_pool, Keyring.from_settings(factory_settings), user_id=user.id, exchange="bybit",
        mode="live", label=None, credentials=ApiCredentials(api_key, secret),
        permissions=TRADING,
    )  # fmt: skip
    adapter = await factory.for_user(user.id, "bybit")
    assert adapter.name == "bybit" and await adapter.get_equity() > 0
    assert await factory.for_user(user.id, "bybit") is adapter

    await mark_invalid(pg_pool, stored.id, "refused by the exchange")
    with pytest.raises(NoApiKey) as invalid:
        await factory.for_user(user.id, "bybit")
    assert invalid.value.code == "api_key_invalid"


async def test_exchange_errors_are_counted_by_exchange_and_class(
    factory_settings: Settings, pg_pool: Pool, clean_state: None
) -> None:
    metrics = Metrics()
    made = AdapterFactory(factory_settings, pg_pool, ManualPriceFeed(), metrics=metrics)
    try:
        unknown = await made.live("binance", "live", ApiCredentials(*new_credentials()),
                                  key_id="k-unknown")  # fmt: skip
        with pytest.raises(AuthenticationFailed):
            await unknown.get_equity()  # the emulator has no such key
    finally:
        await made.aclose()
    counted = metrics.registry.get_sample_value(
        "jadetrade_exchange_errors_total",
        {"exchange": "binance", "error_class": "authentication_failed"},
    )
    assert counted == 1
