"""TradingView alert parsing: every accepted form of each field, every rejection with the
exact field, SL/TP ordering, the dedupe fingerprint, the staleness check, and the token
never leaking into a stored payload or an error message.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from app.core.errors import AppError, BadRequest, ValidationFailed
from app.core.signal_processor import (
    alert_fingerprint,
    canonical_symbol,
    is_stale,
    load_alert_object,
    parse_alert,
    split_symbol,
    validate_alert,
)
from app.schemas.webhook import Alert, SignalAction, WebhookAccepted

EXCHANGES = frozenset({"paper", "binance", "bybit"})
TOKEN = "jt_wh_Zk3fQ9pL2xW7rT5yU1iO8aS4dF6gH0jKmN2bV5cX8zQ"
STRATEGY_ID = "0b9c1c8e-2b8a-4a3c-9d7e-0f6c2b8b1a11"
BASE: dict[str, Any] = {"token": TOKEN, "action": "long_entry", "symbol": "BTCUSDT"}


def body(**fields: Any) -> bytes:
    """A JSON body: BASE updated with `fields` (a value of None removes the field)."""
    data = {**BASE, **fields}
    return json.dumps({key: value for key, value in data.items() if value is not None}).encode()


def parse(raw: bytes) -> Alert:
    return parse_alert(raw, default_exchange="paper", exchanges=EXCHANGES)


def alert(**fields: Any) -> Alert:
    return parse(body(**fields))


def rejection(raw: bytes) -> AppError:
    with pytest.raises(AppError) as caught:
        parse(raw)
    error = caught.value
    assert TOKEN not in error.message
    return error


def invalid(**fields: Any) -> ValidationFailed:
    """The ValidationFailed for BASE updated with `fields`; its field is named in its message."""
    error = rejection(body(**fields))
    assert isinstance(error, ValidationFailed)
    assert error.status_code == 422
    assert error.field is not None and error.field in error.message
    return error


# --------------------------------------------------------------------------- action
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"action": "long_entry"}, SignalAction.LONG_ENTRY),
        ({"action": "long_exit"}, SignalAction.LONG_EXIT),
        ({"action": "short_entry"}, SignalAction.SHORT_ENTRY),
        ({"action": "short_exit"}, SignalAction.SHORT_EXIT),
        ({"action": "LONG_ENTRY"}, SignalAction.LONG_ENTRY),
        ({"action": "  Short_Exit\n"}, SignalAction.SHORT_EXIT),
        ({"action": "long entry"}, SignalAction.LONG_ENTRY),
        ({"action": "Short-Entry"}, SignalAction.SHORT_ENTRY),
        # The direct form ignores market_position.
        ({"action": "long_exit", "market_position": "long"}, SignalAction.LONG_EXIT),
        # Strategy form: the order's action and the market position after it.
        ({"action": "buy", "market_position": "long"}, SignalAction.LONG_ENTRY),
        ({"action": "sell", "market_position": "flat"}, SignalAction.LONG_EXIT),
        ({"action": "sell", "market_position": "short"}, SignalAction.SHORT_ENTRY),
        ({"action": "buy", "market_position": "flat"}, SignalAction.SHORT_EXIT),
        ({"action": "BUY", "market_position": " Long "}, SignalAction.LONG_ENTRY),
        ({"action": " Sell", "market_position": "FLAT"}, SignalAction.LONG_EXIT),
        (
            {"action": "buy", "market_position": "long", "prev_market_position": "flat"},
            SignalAction.LONG_ENTRY,
        ),
        (  # a reversal: the engine's reversal path closes the short first
            {"action": "buy", "market_position": "long", "prev_market_position": "short"},
            SignalAction.LONG_ENTRY,
        ),
        (  # pyramiding
            {"action": "sell", "market_position": "short", "prev_market_position": "short"},
            SignalAction.SHORT_ENTRY,
        ),
        (
            {"action": "sell", "market_position": "flat", "prev_market_position": "long"},
            SignalAction.LONG_EXIT,
        ),
        (
            {"action": "buy", "market_position": "flat", "prev_market_position": "short"},
            SignalAction.SHORT_EXIT,
        ),
    ],
)
def test_action_forms(fields: dict[str, Any], expected: SignalAction) -> None:
    parsed = alert(**fields)
    assert parsed.action is expected
    assert "market_position" not in parsed.extra
    assert "prev_market_position" not in parsed.extra


@pytest.mark.parametrize(
    ("action", "is_entry", "side"),
    [
        (SignalAction.LONG_ENTRY, True, "long"),
        (SignalAction.LONG_EXIT, False, "long"),
        (SignalAction.SHORT_ENTRY, True, "short"),
        (SignalAction.SHORT_EXIT, False, "short"),
    ],
)
def test_action_helpers(action: SignalAction, is_entry: bool, side: str) -> None:
    parsed = alert(action=action.value)
    assert (parsed.is_entry, parsed.is_exit, parsed.side) == (is_entry, not is_entry, side)
    assert (action.is_entry, action.side) == (is_entry, side)


@pytest.mark.parametrize(
    ("fields", "field", "code", "in_message"),
    [
        ({"action": None}, "action", "validation_error", "long_entry, long_exit"),
        ({"action": "open_long"}, "action", "validation_error", "short_entry, short_exit"),
        ({"action": "entry"}, "action", "validation_error", "'entry'"),
        ({"action": 1}, "action", "validation_error", "string"),
        ({"action": ""}, "action", "unexpanded_placeholder", "did not expand"),
        ({"action": "   "}, "action", "unexpanded_placeholder", "did not expand"),
        (
            {"action": "{{strategy.order.action}}"},
            "action",
            "unexpanded_placeholder",
            "{{strategy.order.action}}",
        ),
        ({"action": "buy"}, "market_position", "validation_error", "needs market_position"),
        ({"action": "sell"}, "market_position", "validation_error", "needs market_position"),
        (
            {"action": "buy", "market_position": "short"},
            "market_position",
            "validation_error",
            "partial reductions are not supported",
        ),
        (
            {"action": "sell", "market_position": "long"},
            "market_position",
            "validation_error",
            "partial reductions are not supported",
        ),
        (
            {"action": "buy", "market_position": "up"},
            "market_position",
            "validation_error",
            "long, short or flat",
        ),
        (
            {"action": "buy", "market_position": ""},
            "market_position",
            "unexpanded_placeholder",
            "did not expand",
        ),
        (
            {"action": "buy", "market_position": "{{strategy.market_position}}"},
            "market_position",
            "unexpanded_placeholder",
            "{{strategy.market_position}}",
        ),
        (
            {"action": "sell", "market_position": "flat", "prev_market_position": "short"},
            "prev_market_position",
            "validation_error",
            "closes a long position",
        ),
        (
            {"action": "buy", "market_position": "flat", "prev_market_position": "flat"},
            "prev_market_position",
            "validation_error",
            "closes a short position",
        ),
        (
            {"action": "buy", "market_position": "long", "prev_market_position": "sideways"},
            "prev_market_position",
            "validation_error",
            "long, short or flat",
        ),
    ],
)
def test_action_rejections(fields: dict[str, Any], field: str, code: str, in_message: str) -> None:
    error = invalid(**fields)
    assert (error.field, error.code) == (field, code)
    assert in_message in error.message


# --------------------------------------------------------------------------- symbol
@pytest.mark.parametrize(
    "sent",
    [
        "BTCUSDT",
        "btcusdt",
        "BINANCE:BTCUSDT",
        "BYBIT:BTCUSDT.P",
        "BTCUSDT.P",
        "btcusdt.p",
        "BTCUSDTPERP",
        "BTCUSDT_PERP",
        "BTC/USDT",
        "BTC/USDT:USDT",
        "BINANCE:BTC/USDT:USDT",
        "BTC-USDT",
        "btc_usdt",
        "  BTCUSDT ",
    ],
)
def test_symbol_forms(sent: str) -> None:
    parsed = alert(symbol=sent)
    assert parsed.symbol == "BTCUSDT"
    assert parsed.symbol_as_sent == sent.strip()
    assert canonical_symbol(sent) == "BTCUSDT"
    assert split_symbol(parsed.symbol) == ("BTC", "USDT")


@pytest.mark.parametrize(
    ("sent", "canonical", "base", "quote"),
    [
        ("ETH-USDC", "ETHUSDC", "ETH", "USDC"),
        ("BTCUSD", "BTCUSD", "BTC", "USD"),
        ("BTC/USD:BTC", "BTCUSD", "BTC", "USD"),
        ("BNBBUSD", "BNBBUSD", "BNB", "BUSD"),
        ("BTCFDUSD", "BTCFDUSD", "BTC", "FDUSD"),
        ("BINANCE:1000PEPEUSDT.P", "1000PEPEUSDT", "1000PEPE", "USDT"),
        ("PERPUSDT", "PERPUSDT", "PERP", "USDT"),
        ("sol_usdc", "SOLUSDC", "SOL", "USDC"),
    ],
)
def test_symbol_canonical_and_split(sent: str, canonical: str, base: str, quote: str) -> None:
    assert canonical_symbol(sent) == canonical
    assert split_symbol(canonical) == (base, quote)


def test_exchange_prefix_of_the_symbol_is_not_the_execution_exchange() -> None:
    assert alert(symbol="BYBIT:BTCUSDT.P").exchange == "paper"
    assert alert(symbol="BYBIT:BTCUSDT.P", exchange="binance").exchange == "binance"


@pytest.mark.parametrize(
    ("sent", "code", "in_message"),
    [
        ("", "unexpanded_placeholder", "did not expand"),
        ("{{ticker}}", "unexpanded_placeholder", "{{ticker}}"),
        ("BINANCE:{{ticker}}", "unexpanded_placeholder", "{{ticker}}"),
        ("BTC USDT", "validation_error", "whitespace"),
        ("BTC\tUSDT", "validation_error", "whitespace"),
        ("A" * 29 + "USDT", "validation_error", "longer than 32"),
        ("BINANCE:" + "A" * 60 + "USDT", "validation_error", "longer than 64"),
        ("BTC.USDT", "validation_error", "letters and digits"),
        ("BTCUSDT!", "validation_error", "letters and digits"),
        ("BTCUSDT.PM", "validation_error", "letters and digits"),
        ("ÄBCUSDT", "validation_error", "letters and digits"),
        ("ETHBTC", "validation_error", "quote currency"),
        ("ETH/BTC", "validation_error", "quote currency"),
        ("BTC-PERP", "validation_error", "quote currency"),
        ("USDT", "validation_error", "quote currency"),
        ("BTC/USDT/X", "validation_error", "more than one separator"),
        ("BTC-USDT_X", "validation_error", "more than one separator"),
        ("/USDT", "validation_error", "base or quote"),
        ("BTC/", "validation_error", "base or quote"),
        (":BTCUSDT", "validation_error", "exchange prefix"),
        ("BINANCE.X:BTCUSDT", "validation_error", "exchange prefix"),
        ("A:B:C", "validation_error", "':'"),
    ],
)
def test_symbol_rejections(sent: str, code: str, in_message: str) -> None:
    error = invalid(symbol=sent)
    assert (error.field, error.code) == ("symbol", code)
    assert in_message in error.message
    with pytest.raises(ValidationFailed):
        canonical_symbol(sent)


@pytest.mark.parametrize(("sent", "in_message"), [(None, "required"), (123, "string")])
def test_symbol_missing_or_not_a_string(sent: Any, in_message: str) -> None:
    raw = json.dumps({**BASE, "symbol": sent} if sent is not None else {"action": "long_exit"})
    error = rejection(raw.encode())
    assert error.field == "symbol"
    assert in_message in error.message


def test_split_symbol_refuses_what_it_cannot_split() -> None:
    for text in ("ETHBTC", "USDT", ""):
        with pytest.raises(ValueError, match="quote currency"):
            split_symbol(text)


# --------------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    ("raw_value", "expected"),
    [
        (b"65000", Decimal("65000")),
        (b"65000.0", Decimal("65000")),
        (b"65000.50", Decimal("65000.5")),
        (b"6.5e4", Decimal("65000")),
        (b"6.5E+4", Decimal("65000")),
        (b"0.1", Decimal("0.1")),
        (b"0.00000001", Decimal("0.00000001")),
        (b"0.000000000000000001", Decimal("1e-18")),
        (b"999999999999.99", Decimal("999999999999.99")),
        (b"1.1" + b"0" * 70, Decimal("1.1")),
        (b"1." + b"0" * 38 + b"1" + b"0" * 9, Decimal("1." + "0" * 38 + "1")),
        (b"0.0000000000000000011", Decimal("1.1e-18")),
        (b"1.0000000000000002e-08", Decimal("1.0000000000000002e-08")),
        (b'"0.000123456789012345678"', Decimal("0.000123456789012345678")),
        (b'"65000"', Decimal("65000")),
        (b'" 65000.5 "', Decimal("65000.5")),
        (b'"65000."', Decimal("65000")),
        (b'".5"', Decimal("0.5")),
        (b'"+7"', Decimal("7")),
        (b'"1e3"', Decimal("1000")),
        (b'"0.30000000000000004"', Decimal("0.30000000000000004")),
    ],
)
@pytest.mark.parametrize(
    "field", ["price", "stop_loss", "take_profit", "qty", "notional_usd", "contracts"]
)
def test_number_forms(field: str, raw_value: bytes, expected: Decimal) -> None:
    # An exit, so that SL/TP ordering against other fields does not apply.
    raw = b'{"action":"long_exit","symbol":"BTCUSDT","%s":%s}' % (field.encode(), raw_value)
    parsed = parse(raw)
    value = getattr(parsed, "qty" if field == "contracts" else field)
    assert isinstance(value, Decimal)
    assert value == expected
    assert "E+" not in str(value)
    assert not ("." in str(value) and str(value).endswith("0"))


def test_numbers_are_normalised_without_exponent() -> None:
    parsed = parse(b'{"action":"long_exit","symbol":"BTCUSDT","price":6.5e4,"qty":"1.50"}')
    assert str(parsed.price) == "65000"
    assert str(parsed.qty) == "1.5"


@pytest.mark.parametrize(
    ("raw_value", "code", "in_message"),
    [
        (b'"65,000.5"', "validation_error", "thousands separators"),
        (b'"65,5"', "validation_error", "thousands separators"),
        (b'""', "unexpanded_placeholder", "did not expand"),
        (b'"  "', "unexpanded_placeholder", "did not expand"),
        (b'"{{close}}"', "unexpanded_placeholder", "{{close}}"),
        (b'"{{strategy.order.price}}"', "unexpanded_placeholder", "{{strategy.order.price}}"),
        (b'"abc"', "validation_error", "not a number"),
        (b'"1_000"', "validation_error", "not a number"),
        (b'"NaN"', "validation_error", "not a number"),
        (b'"Infinity"', "validation_error", "not a number"),
        (b'"0x10"', "validation_error", "not a number"),
        (b'"\xd9\xa1"', "validation_error", "not a number"),  # Arabic-Indic digit one
        (b"NaN", "not_finite", "NaN"),
        (b"Infinity", "not_finite", "Infinity"),
        (b"-Infinity", "not_finite", "-Infinity"),
        (b"0", "validation_error", "greater than 0"),
        (b"0.0", "validation_error", "greater than 0"),
        (b"-1", "validation_error", "greater than 0"),
        (b'"-65000"', "validation_error", "greater than 0"),
        (b"1000000000000", "validation_error", "less than"),
        (b"1e400", "validation_error", "less than"),
        (b"1e-19", "validation_error", "at least 1E-18"),
        (b"0.00000000000000000099", "validation_error", "at least 1E-18"),
        (b"1e-999999999", "validation_error", "at least 1E-18"),
        (b"1." + b"0" * 39 + b"1", "validation_error", "more than 40 significant digits"),
        (b"true", "validation_error", "not a boolean"),
        (b"[1]", "validation_error", "not an array"),
        (b'{"v":1}', "validation_error", "not an object"),
    ],
)
@pytest.mark.parametrize(
    "field", ["price", "stop_loss", "take_profit", "qty", "notional_usd", "risk_percent"]
)
def test_number_rejections(field: str, raw_value: bytes, code: str, in_message: str) -> None:
    raw = b'{"action":"long_exit","symbol":"BTCUSDT","%s":%s}' % (field.encode(), raw_value)
    error = rejection(raw)
    assert isinstance(error, ValidationFailed)
    assert (error.field, error.code) == (field, code)
    assert field in error.message
    assert in_message in error.message


def test_risk_percent_at_most_100() -> None:
    assert alert(risk_percent=100).risk_percent == Decimal(100)
    assert alert(risk_percent="0.5").risk_percent == Decimal("0.5")
    error = invalid(risk_percent="100.01")
    assert error.field == "risk_percent"
    assert "at most 100" in error.message


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"qty": 1, "notional_usd": 100}, "notional_usd"),
        ({"qty": 1, "risk_percent": 1}, "risk_percent"),
        ({"notional_usd": 100, "risk_percent": 1}, "risk_percent"),
        ({"contracts": 1, "risk_percent": 1}, "risk_percent"),
        ({"qty": 1, "notional_usd": 100, "risk_percent": 1}, "notional_usd"),
        ({"qty": 1, "contracts": 1}, "contracts"),
        ({"qty": 1, "contracts": 2}, "contracts"),
    ],
)
def test_at_most_one_sizing(fields: dict[str, Any], field: str) -> None:
    assert invalid(**fields).field == field


def test_sizing_fields() -> None:
    parsed = alert(notional_usd="250.00")
    assert (parsed.qty, parsed.notional_usd, parsed.risk_percent) == (None, Decimal(250), None)
    parsed = alert(contracts="0.015")
    assert parsed.qty == Decimal("0.015")
    assert "contracts" not in parsed.extra


def test_close_is_the_price_only_when_price_is_absent() -> None:
    parsed = alert(close="64999.5")
    assert parsed.price == Decimal("64999.5")
    assert "close" not in parsed.extra
    parsed = alert(price=65000, close="64999.5")
    assert parsed.price == Decimal(65000)
    assert parsed.extra == {"close": "64999.5"}
    # Not validated when it is not used: it is the user's own data then.
    assert alert(price=65000, close="{{close}}").extra == {"close": "{{close}}"}
    error = invalid(close="{{close}}")
    assert (error.field, error.code) == ("close", "unexpanded_placeholder")


# --------------------------------------------------------------------------- leverage
@pytest.mark.parametrize(
    ("raw_value", "expected"),
    [
        (b"10", 10),
        (b"1", 1),
        (b"125", 125),
        (b"10.0", 10),
        (b"1e1", 10),
        (b'"10"', 10),
        (b'"10x"', 10),
        (b'" 20X "', 20),
        (b'"5 x"', 5),
        (b"null", None),
    ],
)
def test_leverage_forms(raw_value: bytes, expected: int | None) -> None:
    parsed = parse(b'{"action":"long_entry","symbol":"BTCUSDT","leverage":%s}' % raw_value)
    assert parsed.leverage == expected
    assert parsed.leverage is None or type(parsed.leverage) is int


@pytest.mark.parametrize(
    ("raw_value", "code", "in_message"),
    [
        (b"0", "validation_error", "from 1 to 125"),
        (b"126", "validation_error", "from 1 to 125"),
        (b'"0x"', "validation_error", "from 1 to 125"),
        (b'"500"', "validation_error", "from 1 to 125"),
        (b"1e9", "validation_error", "from 1 to 125"),
        (b"10.5", "validation_error", "whole number"),
        (b'"10.5"', "validation_error", "whole number"),
        (b'"x10"', "validation_error", "whole number"),
        (b'"x"', "validation_error", "whole number"),
        (b'"-5"', "validation_error", "whole number"),
        (b"true", "validation_error", "boolean"),
        (b"[10]", "validation_error", "array"),
        (b'""', "unexpanded_placeholder", "did not expand"),
        (b'"{{plot_1}}"', "unexpanded_placeholder", "{{plot_1}}"),
    ],
)
def test_leverage_rejections(raw_value: bytes, code: str, in_message: str) -> None:
    error = rejection(b'{"action":"long_entry","symbol":"BTCUSDT","leverage":%s}' % raw_value)
    assert isinstance(error, ValidationFailed)
    assert (error.field, error.code) == ("leverage", code)
    assert in_message in error.message


# --------------------------------------------------------------------------- SL/TP
@pytest.mark.parametrize(
    "fields",
    [
        {"action": "long_entry", "price": 65000, "stop_loss": 64000, "take_profit": 67000},
        {"action": "long_entry", "price": 65000, "stop_loss": 64999.99},
        {"action": "long_entry", "price": 65000, "take_profit": "65000.01"},
        {"action": "long_entry", "stop_loss": 64000, "take_profit": 67000},
        {"action": "long_entry", "stop_loss": 64000},
        {"action": "short_entry", "price": 65000, "stop_loss": 66000, "take_profit": 63000},
        {"action": "short_entry", "price": 65000, "stop_loss": "65000.01"},
        {"action": "short_entry", "stop_loss": 66000, "take_profit": 63000},
        {"action": "short_entry", "close": 65000, "take_profit": 64000},
        # Exits are not checked: their SL/TP are not placed.
        {"action": "long_exit", "price": 65000, "stop_loss": 66000, "take_profit": 63000},
        {"action": "short_exit", "price": 65000, "stop_loss": 64000, "take_profit": 67000},
    ],
)
def test_protection_accepted(fields: dict[str, Any]) -> None:
    alert(**fields)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"action": "long_entry", "price": 65000, "stop_loss": 66000},
            "stop_loss",
            "stop_loss 66000 must be below the price 65000 for a long entry",
        ),
        (
            {"action": "long_entry", "price": 65000, "stop_loss": 65000},
            "stop_loss",
            "stop_loss 65000 must be below the price 65000 for a long entry",
        ),
        (
            {"action": "long_entry", "price": 65000, "stop_loss": 64000, "take_profit": 64500},
            "take_profit",
            "take_profit 64500 must be above the price 65000 for a long entry",
        ),
        (
            {"action": "long_entry", "close": "65000.0", "take_profit": "65000"},
            "take_profit",
            "take_profit 65000 must be above the close 65000 for a long entry",
        ),
        (
            {"action": "short_entry", "price": 65000, "stop_loss": 64000},
            "stop_loss",
            "stop_loss 64000 must be above the price 65000 for a short entry",
        ),
        (
            {"action": "short_entry", "price": 65000, "stop_loss": 66000, "take_profit": 65500.5},
            "take_profit",
            "take_profit 65500.5 must be below the price 65000 for a short entry",
        ),
        (
            {"action": "long_entry", "stop_loss": 66000, "take_profit": 65000},
            "stop_loss",
            "stop_loss 66000 must be below take_profit 65000 for a long entry",
        ),
        (
            {"action": "short_entry", "stop_loss": 64000, "take_profit": 65000},
            "stop_loss",
            "stop_loss 64000 must be above take_profit 65000 for a short entry",
        ),
        (
            {"action": "buy", "market_position": "long", "price": 1, "stop_loss": 2},
            "stop_loss",
            "stop_loss 2 must be below the price 1 for a long entry",
        ),
    ],
)
def test_protection_rejected(fields: dict[str, Any], field: str, message: str) -> None:
    error = invalid(**fields)
    assert (error.field, error.message) == (field, message)


# --------------------------------------------------------------------------- other fields
def test_exchange() -> None:
    assert alert().exchange == "paper"
    assert alert(exchange="binance").exchange == "binance"
    assert alert(exchange=" ByBit ").exchange == "bybit"
    assert parse_alert(body(), default_exchange="BINANCE", exchanges=EXCHANGES).exchange == (
        "binance"
    )


@pytest.mark.parametrize(
    ("value", "code", "in_message"),
    [
        ("kraken", "validation_error", "binance, bybit, paper"),
        ("BINANCE:", "validation_error", "not supported"),
        (1, "validation_error", "string"),
        ("", "unexpanded_placeholder", "did not expand"),
        ("{{exchange}}", "unexpanded_placeholder", "{{exchange}}"),
    ],
)
def test_exchange_rejections(value: Any, code: str, in_message: str) -> None:
    error = invalid(exchange=value)
    assert (error.field, error.code) == ("exchange", code)
    assert in_message in error.message


def test_strategy_id() -> None:
    assert alert(strategy_id=STRATEGY_ID).strategy_id == uuid.UUID(STRATEGY_ID)
    assert alert(strategy_id=STRATEGY_ID.upper()).strategy_id == uuid.UUID(STRATEGY_ID)
    assert alert().strategy_id is None


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("not-a-uuid", "validation_error"),
        (STRATEGY_ID[:-1], "validation_error"),
        (12, "validation_error"),
        ("", "unexpanded_placeholder"),
        ("{{strategy_id}}", "unexpanded_placeholder"),
    ],
)
def test_strategy_id_rejections(value: Any, code: str) -> None:
    error = invalid(strategy_id=value)
    assert (error.field, error.code) == ("strategy_id", code)


def test_alert_id() -> None:
    assert alert(alert_id="tv-2024-05-01-1").alert_id == "tv-2024-05-01-1"
    assert alert(alert_id=1714564800).alert_id == "1714564800"
    assert alert(alert_id="x" * 128).alert_id == "x" * 128
    # {{strategy.order.id}} is not unique, so `id` is not an alias: it stays an extra.
    parsed = alert(id="Long")
    assert parsed.alert_id is None
    assert parsed.extra == {"id": "Long"}


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("x" * 129, "validation_error"),
        (["a"], "validation_error"),
        (True, "validation_error"),
        ("", "unexpanded_placeholder"),
        ("{{timenow}}", "unexpanded_placeholder"),
    ],
)
def test_alert_id_rejections(value: Any, code: str) -> None:
    error = invalid(alert_id=value)
    assert (error.field, error.code) == ("alert_id", code)


@pytest.mark.parametrize(
    ("raw_value", "expected"),
    [
        (b'"2024-05-01T12:00:00Z"', datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (b'"2024-05-01T12:00:00.250Z"', datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)),
        (b'"2024-05-01T14:00:00+02:00"', datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (b'"2024-05-01 12:00:00+00:00"', datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (b"1714564800", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (b"1714564800000", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (b"1714564800.5", datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        (b'"1714564800"', datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (b'" 1714564800000 "', datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (b"0", datetime(1970, 1, 1, tzinfo=UTC)),
        (b"null", None),
    ],
)
def test_timenow_forms(raw_value: bytes, expected: datetime | None) -> None:
    parsed = parse(b'{"action":"long_entry","symbol":"BTCUSDT","timenow":%s}' % raw_value)
    assert parsed.timenow == expected
    assert parsed.timenow is None or parsed.timenow.tzinfo is UTC


@pytest.mark.parametrize(
    ("raw_value", "code", "in_message"),
    [
        (b'"2024-05-01T12:00:00"', "validation_error", "no time zone"),
        (b'"2024-05-01"', "validation_error", "no time zone"),
        (b'"yesterday"', "validation_error", "ISO 8601"),
        (b'"2024-13-01T12:00:00Z"', "validation_error", "ISO 8601"),
        (b'"9999-12-31T23:00:00-02:00"', "validation_error", "out of range"),
        (b"-1", "validation_error", "positive epoch"),
        (b"253402300800000", "validation_error", "year 9999"),
        (b"1e30", "validation_error", "year 9999"),
        (b"true", "validation_error", "boolean"),
        (b"{}", "validation_error", "an object"),
        (b'""', "unexpanded_placeholder", "did not expand"),
        (b'"{{timenow}}"', "unexpanded_placeholder", "{{timenow}}"),
        (b'"' + b"2" * 50 + b'"', "validation_error", "too long"),
    ],
)
def test_timenow_rejections(raw_value: bytes, code: str, in_message: str) -> None:
    error = rejection(b'{"action":"long_entry","symbol":"BTCUSDT","timenow":%s}' % raw_value)
    assert isinstance(error, ValidationFailed)
    assert (error.field, error.code) == ("timenow", code)
    assert in_message in error.message


@pytest.mark.parametrize("field", ["message", "comment"])
def test_texts(field: str) -> None:
    assert getattr(alert(**{field: "breakout {{weird}}"}), field) == "breakout {{weird}}"
    assert getattr(alert(**{field: ""}), field) == ""
    assert getattr(alert(**{field: "é" * 1000}), field) == "é" * 1000
    assert invalid(**{field: "x" * 1001}).field == field
    assert invalid(**{field: 5}).field == field


def test_extra_fields_are_kept() -> None:
    parsed = alert(interval="15", plots={"rsi": 71.25, "levels": [1, 2.5]}, note=None)
    assert parsed.extra == {
        "interval": "15",
        "plots": {"rsi": Decimal("71.25"), "levels": [1, Decimal("2.5")]},
    }


# --------------------------------------------------------------------------- body
@pytest.mark.parametrize(
    ("raw", "code", "in_message"),
    [
        (b"", "empty_body", "empty"),
        (b" \r\n\t ", "empty_body", "empty"),
        (b"\xef\xbb\xbf", "empty_body", "empty"),
        (b'{"action": "long_entry",\n "symbol": \xff}', "invalid_json", "line 2, column 12"),
        (b"long_entry BTCUSDT", "invalid_json", "line 1, column 1"),
        (b'{"action": "long_entry", "price": }', "invalid_json", "line 1, column 35"),
        (b'{"action": "long_entry",\n"price": ,}', "invalid_json", "line 2, column 10"),
        (b'{"a": 1} {"b": 2}', "invalid_json", "Extra data"),
        (b"{'a': 1}", "invalid_json", "line 1, column 2"),
        (b"[]", "invalid_json", "not an array"),
        (b'"long_entry"', "invalid_json", "not a string"),
        (b"65000", "invalid_json", "not a number"),
        (b"null", "invalid_json", "not null"),
        (b"NaN", "invalid_json", "not a number"),
        (b'{"a": ' * 40 + b"1" + b"}" * 40, "invalid_json", "deeper than 32"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json", "deeper than 32"),
        (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_json", "deeper than 32"),
        (b'{"a": ' + b"9" * 5000 + b"}", "invalid_json", "too large"),
        (b'{"a": "\\u0000"}', "invalid_json", "\\u0000"),
        (b'{"a": "\\udc00"}', "invalid_json", "surrogate"),
        (b'{"a\\u0000": 1}', "invalid_json", "\\u0000"),
        (b'{"action": "long_entry", "action": "long_exit"}', "duplicate_key", "'action'"),
        (b'{"x": {"k": 1, "k": 2}}', "duplicate_key", "'k'"),
        (b'\xff\xfe{\x00"\x00a\x00"\x00:\x001\x00}\x00', "invalid_json", "UTF-8"),
    ],
)
def test_body_rejections(raw: bytes, code: str, in_message: str) -> None:
    error = rejection(raw)
    assert isinstance(error, BadRequest)
    assert (error.status_code, error.code) == (400, code)
    assert in_message in error.message


def test_depth_limit_is_32_levels() -> None:
    assert load_alert_object(b'{"a": ' * 32 + b"1" + b"}" * 32)
    assert load_alert_object(b'{"a": ' * 31 + b"[1]" + b"}" * 31)
    with pytest.raises(BadRequest, match="deeper than 32"):
        load_alert_object(b'{"a": ' * 33 + b"1" + b"}" * 33)


def test_non_finite_value_names_its_field() -> None:
    error = rejection(b'{"action": "long_entry", "symbol": "BTCUSDT", "plots": [1, NaN]}')
    assert (error.field, error.code, error.status_code) == ("plots", "not_finite", 422)
    assert "'plots' contains NaN" in error.message


def test_body_with_byte_order_mark_and_surrogate_pairs() -> None:
    raw = b'\xef\xbb\xbf{"action": "long_entry", "symbol": "BTCUSDT", "note": "\\ud83d\\ude80"}'
    assert parse(raw).extra == {"note": "🚀"}


def test_body_is_never_echoed() -> None:
    raw = f'{{"token": "{TOKEN}", "action": long_entry}}'.encode()
    error = rejection(raw)
    assert error.code == "invalid_json"
    assert "long_entry" not in error.message


def test_text_plain_body_is_parsed_like_json() -> None:
    # TradingView's content type does not matter: only the bytes do.
    parsed = parse(b'{"action":"long_entry","symbol":"BTCUSDT"}\n')
    assert (parsed.action, parsed.symbol) == (SignalAction.LONG_ENTRY, "BTCUSDT")


# --------------------------------------------------------------------------- token
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, TOKEN),
        ({"token": None}, None),
        ({"token": 12345}, None),
        ({"token": ""}, ""),
        ({"token": "x" * 500}, "x" * 500),  # the caller decides what to answer
    ],
)
def test_token_is_returned_as_given(fields: dict[str, Any], expected: str | None) -> None:
    assert alert(**fields).token == expected


def test_token_is_not_in_repr_or_payload() -> None:
    parsed = alert(price="65000.50", extra_field={"deep": [1.5]})
    assert TOKEN not in repr(parsed)
    payload = parsed.payload_without_token()
    assert "token" not in payload
    serialised = json.dumps(payload)
    assert TOKEN not in serialised
    assert payload == {
        "action": "long_entry",
        "symbol": "BTCUSDT",
        "price": "65000.50",
        "extra_field": {"deep": ["1.5"]},
    }


def test_payload_decimals_are_exact_strings() -> None:
    raw = b'{"token":"t","action":"long_exit","symbol":"X","p":0.00000001,"q":1e-40,"r":1E+999}'
    payload = validate_alert(
        {**load_alert_object(raw), "symbol": "BTCUSDT"},
        default_exchange="paper",
        exchanges=EXCHANGES,
    ).payload_without_token()
    assert payload["p"] == "0.00000001"
    assert Decimal(payload["q"]) == Decimal("1e-40")
    assert payload["r"] == "1E+999"
    json.dumps(payload)


FAILING_FIELDS: list[dict[str, Any]] = [
    {"action": "nope"},
    {"action": TOKEN},
    {"action": "buy", "market_position": TOKEN},
    {"symbol": TOKEN},
    {"symbol": TOKEN[:20] + " x"},
    {"price": TOKEN},
    {"price": -1},
    {"exchange": TOKEN},
    {"strategy_id": TOKEN},
    {"alert_id": TOKEN * 5},
    {"timenow": TOKEN},
    {"leverage": TOKEN},
    {"message": [TOKEN]},
    {"price": 1, "stop_loss": 2},
]


@pytest.mark.parametrize("fields", FAILING_FIELDS)
@pytest.mark.parametrize("token", [TOKEN, "short-token"])
def test_token_never_in_error_messages(fields: dict[str, Any], token: str) -> None:
    fields = {key: token if value == TOKEN else value for key, value in fields.items()}
    with pytest.raises(ValidationFailed) as caught:
        parse(body(**{**fields, "token": token}))
    assert token not in caught.value.message
    assert token not in str(caught.value)


def test_token_never_in_body_level_error_messages() -> None:
    for raw in (
        f'{{"token": "{TOKEN}", "token": "{TOKEN}"}}',
        f'{{"token": "{TOKEN}", "x": NaN}}',
        f'{{"token": "{TOKEN}"',
        f'["{TOKEN}"]',
        f'{{"{TOKEN}": 1, "{TOKEN}": 2}}',
    ):
        assert TOKEN not in rejection(raw.encode()).message


# --------------------------------------------------------------------------- fingerprint
FULL: dict[str, Any] = {
    "token": TOKEN,
    "action": "long_entry",
    "symbol": "BINANCE:BTCUSDT.P",
    "exchange": "binance",
    "price": 65000,
    "stop_loss": 64000,
    "take_profit": 67000,
    "leverage": 10,
    "risk_percent": 1,
    "strategy_id": STRATEGY_ID,
    "alert_id": "a-1",
    "timenow": "2024-05-01T12:00:00Z",
    "message": "breakout",
    "comment": "Long",
    "interval": "15",
}


def fingerprint_of(raw: bytes | dict[str, Any]) -> str:
    return alert_fingerprint(parse(raw if isinstance(raw, bytes) else json.dumps(raw).encode()))


@pytest.mark.parametrize(
    "variant",
    [
        {**FULL},
        {"token": "another-token-entirely-0123456789"},
        {"token": None},
        {"action": " LONG_ENTRY "},
        {"action": "buy", "market_position": "long"},
        {"symbol": "BTC/USDT:USDT"},
        {"symbol": "btcusdt"},
        {"exchange": "Binance"},
        {"price": "65000.000"},
        {"price": 65000.0},
        {"price": "6.5e4"},
        {"stop_loss": "64000"},
        {"leverage": "10x"},
        {"risk_percent": "1.0"},
        {"strategy_id": STRATEGY_ID.upper()},
        {"timenow": "2024-05-01T14:00:00+02:00"},
        {"timenow": 1714564800},
        {"timenow": 1714564800000},
    ],
)
def test_fingerprint_equal_for_equivalent_alerts(variant: dict[str, Any]) -> None:
    data = {**FULL, **variant}
    data = {key: value for key, value in data.items() if value is not None}
    assert fingerprint_of(data) == fingerprint_of(FULL)
    # Key order does not matter either.
    assert fingerprint_of(dict(reversed(list(data.items())))) == fingerprint_of(FULL)


@pytest.mark.parametrize(
    "variant",
    [
        {"action": "short_entry", "stop_loss": 66000, "take_profit": 63000},
        {"symbol": "ETHUSDT"},
        {"exchange": "bybit"},
        {"exchange": None},
        {"price": 65000.01},
        {"price": None},
        {"stop_loss": 63999},
        {"stop_loss": None},
        {"take_profit": 67001},
        {"leverage": 11},
        {"leverage": None},
        {"risk_percent": 2},
        {"risk_percent": None, "qty": 1},
        {"risk_percent": None, "notional_usd": 1},
        {"strategy_id": str(uuid.UUID(int=1))},
        {"alert_id": "a-2"},
        {"timenow": "2024-05-01T12:00:01Z"},
        {"timenow": None},
        {"message": "breakout!"},
        {"message": None},
        {"comment": "Long 2"},
        {"interval": "60"},
        {"interval": 15},  # a string and a number differ unless both are numbers
        {"interval": None},
        {"custom": "x"},
    ],
)
def test_fingerprint_differs_when_a_defining_field_differs(variant: dict[str, Any]) -> None:
    data = {key: value for key, value in {**FULL, **variant}.items() if value is not None}
    assert fingerprint_of(data) != fingerprint_of(FULL)


def test_fingerprint_normalises_numbers_in_extra_fields() -> None:
    base = b'{"action":"long_exit","symbol":"BTCUSDT","x":{"a":[65000, 0.5]}}'
    same = b'{"x":{"a":[65000.000, 5e-1]},"symbol":"BTCUSDT","action":"long_exit"}'
    other = b'{"action":"long_exit","symbol":"BTCUSDT","x":{"a":[65000, 0.51]}}'
    assert fingerprint_of(base) == fingerprint_of(same)
    assert fingerprint_of(base) != fingerprint_of(other)
    assert fingerprint_of(b'{"action":"long_exit","symbol":"BTCUSDT","z":-0.0}') == (
        fingerprint_of(b'{"action":"long_exit","symbol":"BTCUSDT","z":0}')
    )


def test_fingerprint_is_hex_sha256() -> None:
    value = fingerprint_of(FULL)
    assert len(value) == 64
    assert int(value, 16) >= 0


# --------------------------------------------------------------------------- staleness
NOW = datetime(2024, 5, 1, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("timenow", "max_age_s", "stale"),
    [
        ("2024-05-01T12:00:00Z", None, False),
        (None, 30, False),
        ("2024-05-01T12:00:00Z", 30, True),
        ("2024-05-01T12:00:00Z", 60, False),  # exactly max_age_s old
        ("2024-05-01T12:00:00Z", 59, True),
        ("2024-05-01T12:00:30Z", 60, False),
        ("2024-05-01T12:05:00Z", 1, False),  # from the future (clock skew): not stale
        ("2024-05-01T14:00:00+02:00", 30, True),
    ],
)
def test_is_stale(timenow: str | None, max_age_s: int | None, stale: bool) -> None:
    parsed = alert(timenow=timenow)
    assert is_stale(parsed, now=NOW, max_age_s=max_age_s) is stale
    other_zone = NOW.astimezone(timezone(timedelta(hours=-5)))
    assert is_stale(parsed, now=other_zone, max_age_s=max_age_s) is stale


def test_is_stale_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        is_stale(alert(timenow="2024-05-01T12:00:00Z"), now=datetime(2024, 5, 1), max_age_s=5)  # noqa: DTZ001


# --------------------------------------------------------------------------- response
def test_webhook_accepted() -> None:
    signal_id = uuid.uuid4()
    accepted = WebhookAccepted(status="queued", message="queued for execution", signal_id=signal_id)
    assert accepted.model_dump(mode="json") == {
        "status": "queued",
        "message": "queued for execution",
        "signal_id": str(signal_id),
    }
    with pytest.raises(ValidationError):
        WebhookAccepted.model_validate(
            {"status": "executed", "message": "", "signal_id": str(signal_id)}
        )


def test_full_alert() -> None:
    parsed = parse(json.dumps(FULL).encode())
    assert parsed == Alert(
        token=TOKEN,
        action=SignalAction.LONG_ENTRY,
        symbol="BTCUSDT",
        symbol_as_sent="BINANCE:BTCUSDT.P",
        exchange="binance",
        price=Decimal(65000),
        stop_loss=Decimal(64000),
        take_profit=Decimal(67000),
        leverage=10,
        risk_percent=Decimal(1),
        strategy_id=uuid.UUID(STRATEGY_ID),
        alert_id="a-1",
        timenow=datetime(2024, 5, 1, 12, tzinfo=UTC),
        message="breakout",
        comment="Long",
        extra={"interval": "15"},
    )
