"""Position sizing: each method, the cap, rounding down to the step, the exchange minimums,
every refusal, and exact `Decimal` arithmetic throughout."""

from __future__ import annotations

from dataclasses import fields, replace
from decimal import Decimal
from typing import Any

import pytest

from app.core.position_sizing import Sizing, SizingError, SizingRequest, size_position

# 10,000 USDT of equity, a long on BTC at 65,000 with its stop 1,000 below, the user's default
# risk of 2 % (200 USDT), and a cap high enough to stay out of the way unless a test lowers it.
BASE = SizingRequest(
    equity=Decimal("10000"),
    side="long",
    entry_price=Decimal("65000"),
    stop_loss=Decimal("64000"),
    qty=None,
    notional_usd=None,
    risk_percent=None,
    default_risk_percent=Decimal("2"),
    max_position_size_usd=Decimal("100000"),
    leverage=1,
    amount_step=Decimal("0.001"),
    min_amount=Decimal("0.001"),
    min_notional=Decimal("5"),
    base_asset="BTC",
)


@pytest.mark.parametrize(
    ("changes", "method", "quantity", "notional", "risk_amount"),
    [
        # risk: 2 % of 10,000 = 200 USDT over a 1,000 stop distance = 0.2 BTC
        pytest.param({}, "risk", "0.200", "13000.000", "200.000", id="risk-default-percent"),
        pytest.param(
            {"risk_percent": Decimal("1")},
            "risk",
            "0.100",
            "6500.000",
            "100.000",
            id="risk-alert-1pc",
        ),
        pytest.param(
            {"side": "short", "stop_loss": Decimal("66000")},
            "risk",
            "0.200",
            "13000.000",
            "200.000",
            id="risk-short",
        ),
        pytest.param(
            {"qty": Decimal("0.05")}, "qty", "0.050", "3250.000", "50.000", id="qty-with-stop"
        ),
        pytest.param(
            {"qty": Decimal("0.05"), "stop_loss": None},
            "qty",
            "0.050",
            "3250.000",
            None,
            id="qty-no-stop",
        ),
        # 1,000 / 65,000 = 0.01538… → 0.015
        pytest.param(
            {"notional_usd": Decimal("1000")},
            "notional",
            "0.015",
            "975.000",
            "15.000",
            id="notional",
        ),
        pytest.param(
            {"notional_usd": Decimal("1000"), "stop_loss": None},
            "notional",
            "0.015",
            "975.000",
            None,
            id="notional-no-stop",
        ),
        # precedence when an alert carries several: qty, then notional, then risk
        pytest.param(
            {"qty": Decimal("0.05"), "notional_usd": Decimal("1000"), "risk_percent": Decimal("1")},
            "qty",
            "0.050",
            "3250.000",
            "50.000",
            id="qty-wins",
        ),
        pytest.param(
            {"notional_usd": Decimal("1000"), "risk_percent": Decimal("1")},
            "notional",
            "0.015",
            "975.000",
            "15.000",
            id="notional-wins-over-risk",
        ),
        # equity only matters to the risk method
        pytest.param(
            {"qty": Decimal("0.05"), "equity": Decimal("0")},
            "qty",
            "0.050",
            "3250.000",
            "50.000",
            id="qty-0-eq",
        ),
    ],
)
def test_sizing_methods(
    changes: dict[str, Any],
    method: str,
    quantity: str,
    notional: str,
    risk_amount: str | None,
) -> None:
    sizing = size_position(replace(BASE, **changes))
    assert sizing.method == method
    assert sizing.quantity == Decimal(quantity)
    assert sizing.notional == Decimal(notional)
    assert sizing.risk_amount == (None if risk_amount is None else Decimal(risk_amount))
    assert sizing.capped is False


@pytest.mark.parametrize("leverage", [1, 3, 10, 125])
def test_leverage_does_not_change_the_risk_based_size(leverage: int) -> None:
    sizing = size_position(replace(BASE, leverage=leverage))
    assert sizing.quantity == Decimal("0.2")
    assert sizing.risk_amount == Decimal("200")


@pytest.mark.parametrize(
    ("changes", "quantity", "requested"),
    [
        # risk asks for 0.2 BTC = 13,000 USDT; the cap of 1,000 allows 0.01538… → 0.015
        pytest.param({}, "0.015", "0.2", id="risk"),
        pytest.param({"qty": Decimal("1")}, "0.015", "1", id="qty"),
        pytest.param(
            {"notional_usd": Decimal("5000")},
            "0.015",
            "0.07692307692307692307692307692",
            id="notional",
        ),
    ],
)
def test_the_notional_is_capped_at_the_max_position_size(
    changes: dict[str, Any], quantity: str, requested: str
) -> None:
    sizing = size_position(replace(BASE, max_position_size_usd=Decimal("1000"), **changes))
    assert sizing.capped is True
    assert sizing.quantity == Decimal(quantity)
    assert sizing.notional == Decimal("975")
    assert sizing.notional <= Decimal("1000")
    assert sizing.requested_quantity == Decimal(requested)


def test_a_size_exactly_at_the_cap_is_not_capped() -> None:
    sizing = size_position(
        replace(
            BASE,
            entry_price=Decimal("1000"),
            stop_loss=None,
            qty=Decimal("1"),
            max_position_size_usd=Decimal("1000"),
        )
    )
    assert (sizing.quantity, sizing.notional, sizing.capped) == (
        Decimal("1"),
        Decimal("1000"),
        False,
    )


# Entry 100, stop 97: 200 USDT at risk over a distance of 3 asks for 66.666… units.
@pytest.mark.parametrize(
    ("step", "quantity"),
    [
        ("0.001", "66.666"),
        ("0.01", "66.66"),
        ("0.1", "66.6"),
        ("0.5", "66.5"),
        ("1", "66"),
        ("10", "60"),
    ],
)
def test_the_quantity_is_rounded_down_to_the_step(step: str, quantity: str) -> None:
    req = replace(
        BASE,
        entry_price=Decimal("100"),
        stop_loss=Decimal("97"),
        amount_step=Decimal(step),
        min_amount=Decimal("0"),
        min_notional=Decimal("0"),
    )
    sizing = size_position(req)
    assert sizing.quantity == Decimal(quantity)
    assert sizing.quantity % Decimal(step) == 0
    assert sizing.notional == sizing.quantity * Decimal("100")
    # Rounding down keeps the loss at the stop within the 200 USDT budget.
    assert sizing.risk_amount is not None and sizing.risk_amount <= Decimal("200")
    assert sizing.requested_quantity == Decimal("66.66666666666666666666666666")
    assert sizing.capped is False


def test_rounding_is_exact_just_below_a_step() -> None:
    # 65.999…9 (30 nines) is below 66: a quotient rounded to 28 digits first would read 66.
    almost = Decimal("65." + "9" * 30)
    req = replace(
        BASE,
        entry_price=Decimal("1"),
        stop_loss=None,
        notional_usd=almost,
        amount_step=Decimal("1"),
    )
    assert size_position(req).quantity == Decimal("65")


def test_rounding_down_applies_to_an_explicit_qty() -> None:
    sizing = size_position(replace(BASE, qty=Decimal("0.0129")))
    assert sizing.quantity == Decimal("0.012")
    assert sizing.requested_quantity == Decimal("0.0129")


@pytest.mark.parametrize(
    ("changes", "quantity", "notional"),
    [
        pytest.param({"qty": Decimal("0.001")}, "0.001", "65", id="exactly-min-amount"),
        pytest.param(
            {
                "qty": Decimal("0.0001"),
                "amount_step": Decimal("0.0001"),
                "min_amount": Decimal("0.0001"),
                "min_notional": Decimal("6.5"),
            },
            "0.0001",
            "6.5",
            id="exactly-min-notional",
        ),
        pytest.param(
            {
                "qty": Decimal("0.0001"),
                "amount_step": Decimal("0.0001"),
                "min_amount": Decimal("0"),
                "min_notional": Decimal("0"),
            },
            "0.0001",
            "6.5",
            id="no-minimums",
        ),
    ],
)
def test_a_size_at_the_exchange_minimum_passes(
    changes: dict[str, Any], quantity: str, notional: str
) -> None:
    sizing = size_position(replace(BASE, **changes))
    assert (sizing.quantity, sizing.notional) == (Decimal(quantity), Decimal(notional))


@pytest.mark.parametrize(
    ("changes", "code", "reason"),
    [
        pytest.param(
            {"stop_loss": None},
            "no_stop_loss",
            "no stop_loss to size from: send stop_loss, qty or notional_usd",
            id="no-stop",
        ),
        pytest.param(
            {"stop_loss": None, "risk_percent": Decimal("1")},
            "no_stop_loss",
            "no stop_loss to size from: send stop_loss, qty or notional_usd",
            id="no-stop-alert-risk",
        ),
        pytest.param(
            {
                "entry_price": Decimal("65000"),
                "notional_usd": Decimal("26"),
                "amount_step": Decimal("0.0001"),
            },
            "below_minimum",
            "position of 0.0004 BTC (26.00 USDT)"
            " is below the exchange minimum of 0.001 BTC / 5 USDT",
            id="below-min-amount",
        ),
        pytest.param(
            {
                "qty": Decimal("0.002"),
                "entry_price": Decimal("2000"),
                "stop_loss": Decimal("1900"),
                "min_notional": Decimal("5"),
            },
            "below_minimum",
            "position of 0.002 BTC (4.00 USDT) is below the exchange minimum of 0.001 BTC / 5 USDT",
            id="below-min-notional",
        ),
        pytest.param(
            # 4.999 USDT must not read as 5.00: the "below" amount is rounded down
            {"qty": Decimal("0.001"), "entry_price": Decimal("4999"), "stop_loss": Decimal("4000")},
            "below_minimum",
            "position of 0.001 BTC (4.99 USDT) is below the exchange minimum of 0.001 BTC / 5 USDT",
            id="below-min-notional-rounds-down",
        ),
        pytest.param(
            {
                "notional_usd": Decimal("26"),
                "min_amount": Decimal("0"),
                "min_notional": Decimal("0"),
            },
            "below_minimum",
            "position of 0.0004 BTC rounds down to 0 at the exchange's amount step of 0.001 BTC",
            id="rounds-to-zero",
        ),
        pytest.param(
            {"stop_loss": Decimal("66000")},
            "invalid_stop",
            "stop_loss 66,000 is above the entry price 65,000: a long's stop must be below the "
            "entry",
            id="long-stop-above",
        ),
        pytest.param(
            {"stop_loss": Decimal("65000")},
            "invalid_stop",
            "stop_loss 65,000 is equal to the entry price 65,000: a long's stop must be below the "
            "entry",
            id="long-stop-equal",
        ),
        pytest.param(
            {"side": "short"},
            "invalid_stop",
            "stop_loss 64,000 is below the entry price 65,000: a short's stop must be above the "
            "entry",
            id="short-stop-below",
        ),
        pytest.param(
            {"side": "short", "stop_loss": Decimal("65000")},
            "invalid_stop",
            "stop_loss 65,000 is equal to the entry price 65,000: a short's stop must be above "
            "the entry",
            id="short-stop-equal",
        ),
        pytest.param(
            {"stop_loss": Decimal("0")},
            "invalid_stop",
            "stop_loss 0 is not a positive price",
            id="zero",
        ),
        pytest.param(
            # a wrong stop is refused whatever the sizing method
            {"qty": Decimal("0.05"), "stop_loss": Decimal("70000.5")},
            "invalid_stop",
            "stop_loss 70,000.5 is above the entry price 65,000: a long's stop must be below the "
            "entry",
            id="qty-with-wrong-stop",
        ),
        pytest.param(
            {"equity": Decimal("0")},
            "no_equity",
            "account equity is 0.00 USDT: there is nothing to risk a percentage of (send qty or "
            "notional_usd, or fund the account)",
            id="zero-equity",
        ),
        pytest.param(
            {"equity": Decimal("-12.5")},
            "no_equity",
            "account equity is -12.50 USDT: there is nothing to risk a percentage of (send qty "
            "or notional_usd, or fund the account)",
            id="negative-equity",
        ),
    ],
)
def test_sizing_errors(changes: dict[str, Any], code: str, reason: str) -> None:
    with pytest.raises(SizingError) as caught:
        size_position(replace(BASE, **changes))
    assert caught.value.code == code
    assert caught.value.reason == reason
    assert str(caught.value) == reason


def test_the_minimum_message_without_a_base_asset() -> None:
    req = replace(BASE, notional_usd=Decimal("26"), amount_step=Decimal("0.0001"), base_asset="")
    with pytest.raises(SizingError, match=r"^position of 0\.0004 \(26\.00 USDT\) is below the "):
        size_position(req)


def test_every_number_is_a_decimal() -> None:
    for req in (
        BASE,
        replace(BASE, qty=Decimal("0.05")),
        replace(BASE, notional_usd=Decimal("1000")),
    ):
        sizing = size_position(req)
        for f in fields(Sizing):
            value = getattr(sizing, f.name)
            if f.name in ("quantity", "notional", "risk_amount", "requested_quantity"):
                assert type(value) is Decimal, f.name


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        pytest.param({"equity": 10000.0}, TypeError, id="float-equity"),
        pytest.param({"entry_price": 65000.0}, TypeError, id="float-price"),
        pytest.param({"stop_loss": 64000.0}, TypeError, id="float-stop"),
        pytest.param({"qty": 1}, TypeError, id="int-qty"),
        pytest.param({"leverage": True}, TypeError, id="bool-leverage"),
        pytest.param({"leverage": 0}, ValueError, id="zero-leverage"),
        pytest.param({"side": "buy"}, ValueError, id="side"),
        pytest.param({"entry_price": Decimal("0")}, ValueError, id="zero-price"),
        pytest.param({"entry_price": Decimal("NaN")}, ValueError, id="nan-price"),
        pytest.param({"amount_step": Decimal("0")}, ValueError, id="zero-step"),
        pytest.param({"min_notional": Decimal("-1")}, ValueError, id="negative-minimum"),
        pytest.param({"qty": Decimal("0")}, ValueError, id="zero-qty"),
        pytest.param({"notional_usd": Decimal("-5")}, ValueError, id="negative-notional"),
        pytest.param({"risk_percent": Decimal("0")}, ValueError, id="zero-risk"),
        pytest.param({"risk_percent": Decimal("101")}, ValueError, id="risk-over-100"),
        pytest.param({"max_position_size_usd": Decimal("0")}, ValueError, id="zero-cap"),
    ],
)
def test_a_malformed_request_is_a_programming_error(
    changes: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        replace(BASE, **changes)
