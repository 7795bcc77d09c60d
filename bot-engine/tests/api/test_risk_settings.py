"""The caller's risk settings over REST: defaults, partial updates with an audit trail,
validation that changes nothing, and limits the pipeline enforces on the next entry."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from app.models import AuditLog, User, UserRiskSettings
from tests.conftest import Factory
from tests.support.pipeline import Harness

pytest_plugins = ("tests.support.pipeline",)

URL = "/api/risk-settings"
DEFAULTS: dict[str, Any] = {
    "max_position_size_usd": "1000.00",
    "max_leverage": 10,
    "max_open_positions": 5,
    "max_daily_trades": 50,
    "max_daily_loss_percent": "10.00",
    "max_portfolio_exposure_percent": "80.00",
    "default_risk_per_trade_percent": "2.00",
    "require_stop_loss": True,
    "notify_on_trade": True,
    "notify_on_stop_loss": True,
    "notify_on_daily_loss_limit": True,
}
LONG = {"action": "long_entry", "symbol": "BTCUSDT", "price": "65000", "stop_loss": "64000",
        "take_profit": "68000"}  # fmt: skip


def without_stamp(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "updated_at"}


async def settings_of(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    response = await client.get(URL, headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def audit_rows(factory: Factory, user: User) -> list[AuditLog]:
    async with factory.app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(AuditLog)
            .where(AuditLog.user_id == user.id, AuditLog.action == "settings.update")
            .order_by(AuditLog.created_at)
        )
        return list(rows)


async def test_a_new_user_has_the_defaults(client: httpx.AsyncClient, factory: Factory) -> None:
    user = await factory.user()
    body = await settings_of(client, factory.auth(user))
    assert without_stamp(body) == DEFAULTS
    assert datetime.fromisoformat(body["updated_at"]).tzinfo is not None


async def test_a_user_without_a_settings_row_gets_the_defaults(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    async with factory.app.state.sessionmaker() as session:
        await session.execute(delete(UserRiskSettings).where(UserRiskSettings.user_id == user.id))
        await session.commit()
    auth = factory.auth(user)
    assert without_stamp(await settings_of(client, auth)) == DEFAULTS
    response = await client.put(URL, json={"max_leverage": 3}, headers=auth)
    assert response.status_code == 200, response.text
    assert without_stamp(response.json()) == {**DEFAULTS, "max_leverage": 3}


async def test_a_partial_update_changes_only_the_given_fields_and_is_audited(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    auth = factory.auth(user)
    before = await settings_of(client, auth)
    update = {"max_leverage": 5, "max_position_size_usd": "250.5", "notify_on_trade": False}

    response = await client.put(URL, json=update, headers=auth)

    assert response.status_code == 200, response.text
    expected = {**DEFAULTS, "max_leverage": 5, "max_position_size_usd": "250.50",
                "notify_on_trade": False}  # fmt: skip
    assert without_stamp(response.json()) == expected
    after = await settings_of(client, auth)
    assert after == response.json()
    assert datetime.fromisoformat(after["updated_at"]) > datetime.fromisoformat(
        before["updated_at"]
    )

    (audit,) = await audit_rows(factory, user)
    assert audit.resource_type == "settings"
    assert audit.success is True
    assert audit.old_value is not None and audit.new_value is not None
    assert audit.old_value == before
    assert audit.new_value == after
    changed = {k for k in audit.new_value if audit.new_value[k] != audit.old_value[k]}
    assert changed == {"max_leverage", "max_position_size_usd", "notify_on_trade", "updated_at"}

    second = await client.put(URL, json={"max_open_positions": 2}, headers=auth)
    assert second.status_code == 200
    assert without_stamp(second.json()) == {**expected, "max_open_positions": 2}
    assert len(await audit_rows(factory, user)) == 2


async def test_concurrent_updates_are_applied_and_audited_one_after_the_other(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    auth = factory.auth(user)
    leverages = [2, 3, 4, 5, 6]
    responses = await asyncio.gather(
        *(client.put(URL, json={"max_leverage": lev}, headers=auth) for lev in leverages)
    )
    assert [r.status_code for r in responses] == [200] * len(leverages)

    # Each update's old value is the previous one's new value: one chain from the default.
    audits = await audit_rows(factory, user)
    step: dict[int, int] = {}
    for audit in audits:
        assert audit.old_value is not None and audit.new_value is not None
        step[audit.old_value["max_leverage"]] = audit.new_value["max_leverage"]
    chain, value = [], DEFAULTS["max_leverage"]
    while value in step:
        value = step.pop(value)
        chain.append(value)
    assert sorted(chain) == leverages
    assert (await settings_of(client, auth))["max_leverage"] == chain[-1]


INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "leverage 0": ({"max_leverage": 0}, "max_leverage"),
    "leverage 126": ({"max_leverage": 126}, "max_leverage"),
    "leverage not whole": ({"max_leverage": 2.5}, "max_leverage"),
    "leverage text": ({"max_leverage": "ten"}, "max_leverage"),
    "leverage null": ({"max_leverage": None}, "max_leverage"),
    "daily loss 0": ({"max_daily_loss_percent": 0}, "max_daily_loss_percent"),
    "daily loss 101": ({"max_daily_loss_percent": 101}, "max_daily_loss_percent"),
    "daily loss 3 decimals": ({"max_daily_loss_percent": "9.999"}, "max_daily_loss_percent"),
    "exposure 101": ({"max_portfolio_exposure_percent": 101}, "max_portfolio_exposure_percent"),
    "risk per trade 0": ({"default_risk_per_trade_percent": 0}, "default_risk_per_trade_percent"),
    "open positions -1": ({"max_open_positions": -1}, "max_open_positions"),
    "daily trades -1": ({"max_daily_trades": -1}, "max_daily_trades"),
    "size 3 decimals": ({"max_position_size_usd": 1000.125}, "max_position_size_usd"),
    "size 0": ({"max_position_size_usd": "0"}, "max_position_size_usd"),
    "size NaN": ({"max_position_size_usd": "NaN"}, "max_position_size_usd"),
    "size negative": ({"max_position_size_usd": "-5"}, "max_position_size_usd"),
    "flag null": ({"require_stop_loss": None}, "require_stop_loss"),
    "unknown field": ({"max_lev": 3}, "max_lev"),
    "one bad among good": ({"max_leverage": 5, "max_open_positions": -1}, "max_open_positions"),
    "good then unknown": ({"max_leverage": 5, "user_id": "someone-else"}, "user_id"),
}


@pytest.mark.parametrize(("body", "field"), INVALID.values(), ids=INVALID.keys())
async def test_an_invalid_update_is_422_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient, factory: Factory, body: dict[str, Any], field: str
) -> None:
    user = await factory.user()
    auth = factory.auth(user)
    before = await settings_of(client, auth)

    response = await client.put(URL, json=body, headers=auth)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["field"] == field
    assert await settings_of(client, auth) == before
    assert await audit_rows(factory, user) == []


async def test_a_body_that_is_not_an_object_is_422(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    auth = factory.auth(user)
    bodies: tuple[Any, ...] = ([], "max_leverage=5", 5)
    for body in bodies:
        response = await client.put(URL, json=body, headers=auth)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "validation_error"
    assert without_stamp(await settings_of(client, auth)) == DEFAULTS


SIZE, EXPOSURE = "max_position_size_usd", "max_portfolio_exposure_percent"
BOUNDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "leverage 1": ({"max_leverage": 1}, {"max_leverage": 1}),
    "leverage 125": ({"max_leverage": 125}, {"max_leverage": 125}),
    "daily loss 100": ({"max_daily_loss_percent": 100}, {"max_daily_loss_percent": "100.00"}),
    "exposure 0.01": ({EXPOSURE: "0.01"}, {EXPOSURE: "0.01"}),
    "open positions 0": ({"max_open_positions": 0}, {"max_open_positions": 0}),
    "size as float": ({SIZE: 100.1}, {SIZE: "100.10"}),
    "size in exponent form": ({SIZE: "2.5e3"}, {SIZE: "2500.00"}),
    "nothing": ({}, {}),
}


@pytest.mark.parametrize(("body", "changed"), BOUNDS.values(), ids=BOUNDS.keys())
async def test_values_at_the_bounds_are_accepted(
    client: httpx.AsyncClient, factory: Factory, body: dict[str, Any], changed: dict[str, Any]
) -> None:
    user = await factory.user()
    auth = factory.auth(user)
    response = await client.put(URL, json=body, headers=auth)
    assert response.status_code == 200, response.text
    assert without_stamp(response.json()) == {**DEFAULTS, **changed}
    assert without_stamp(await settings_of(client, auth)) == {**DEFAULTS, **changed}


async def test_risk_settings_need_authentication(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    for method in ("GET", "PUT"):
        response = await client.request(method, URL, json={"max_leverage": 2})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "missing_token"
        bad_token = await client.request(
            method, URL, json={"max_leverage": 2}, headers={"Authorization": "Bearer nope"}
        )
        assert bad_token.status_code == 401
    async with factory.app.state.sessionmaker() as session:
        assert await session.scalar(select(AuditLog.id).limit(1)) is None


async def test_one_users_update_leaves_another_users_settings(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    alice, bob = await factory.user(), await factory.user()
    response = await client.put(URL, json={"max_leverage": 2}, headers=factory.auth(alice))
    assert response.status_code == 200
    assert without_stamp(await settings_of(client, factory.auth(bob))) == DEFAULTS
    assert await audit_rows(factory, bob) == []


# --------------------------------------------------------------------------- the pipeline
async def test_a_lower_position_size_limit_makes_the_next_position_smaller(
    harness: Harness,
) -> None:
    token, auth = await harness.trader()
    response = await harness.client.put(URL, json={"max_position_size_usd": "500"}, headers=auth)
    assert response.status_code == 200, response.text
    signal_id = (await harness.alert(token, **LONG)).json()["signal_id"]
    assert (await harness.settled(signal_id, auth))["status"] == "executed"
    (position,) = await harness.positions(auth, "open")
    # 500 USDT / 65,000 = 0.00769… BTC, down to the 0.001 step (the default 1,000 gives 0.015).
    assert Decimal(position["quantity"]) == Decimal("0.007")


async def test_positions_open_on_other_symbols_count_against_the_limit(harness: Harness) -> None:
    token, auth = await harness.trader()
    response = await harness.client.put(URL, json={"max_open_positions": 1}, headers=auth)
    assert response.status_code == 200, response.text
    first = (await harness.alert(token, **LONG)).json()["signal_id"]
    assert (await harness.settled(first, auth))["status"] == "executed"
    eth = {"action": "long_entry", "symbol": "ETHUSDT", "price": "3500", "stop_loss": "3400"}
    second = await harness.settled((await harness.alert(token, **eth)).json()["signal_id"], auth)
    assert second["status"] == "rejected"
    assert second["status_reason"] == "you already have 1 open position, your maximum is 1"
    assert [p["symbol"] for p in await harness.positions(auth, "open")] == ["BTCUSDT"]


REFUSALS: dict[str, tuple[dict[str, Any], dict[str, Any], str, str]] = {
    "no open positions allowed": (
        {"max_open_positions": 0},
        {},
        "open_positions",
        "your maximum is 0",
    ),
    "leverage above the maximum": (
        {"max_leverage": 2},
        {"leverage": 5},
        "leverage",
        "exceeds your maximum of 2x",
    ),
    "no trades today allowed": (
        {"max_daily_trades": 0},
        {},
        "daily_trades",
        "your daily maximum is 0",
    ),
}


@pytest.mark.parametrize(
    ("limits", "alert", "check", "reason"), REFUSALS.values(), ids=REFUSALS.keys()
)
async def test_a_changed_limit_rejects_the_next_entry(
    harness: Harness, limits: dict[str, Any], alert: dict[str, Any], check: str, reason: str
) -> None:
    token, auth = await harness.trader()
    response = await harness.client.put(URL, json=limits, headers=auth)
    assert response.status_code == 200, response.text
    signal_id = (await harness.alert(token, **LONG, **alert)).json()["signal_id"]
    signal = await harness.settled(signal_id, auth)
    assert signal["status"] == "rejected", signal
    assert reason in signal["status_reason"]
    assert signal["execution_result"]["failed_check"] == check
    assert await harness.positions(auth, "open") == []
    assert await harness.trades(auth, signal_id) == []
