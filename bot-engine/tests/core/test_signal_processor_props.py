"""Property tests of TradingView alert parsing: whatever the body, `parse_alert` returns an
`Alert` or raises `BadRequest` / `ValidationFailed`, never anything else; an accepted alert's
stored payload and fingerprint behave; the token never shows in an error message.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.errors import BadRequest, ValidationFailed
from app.core.signal_processor import (
    alert_fingerprint,
    canonical_symbol,
    parse_alert,
    split_symbol,
)
from app.schemas.webhook import Alert

EXCHANGES = frozenset({"paper", "binance", "bybit"})
FIELDS = (
    "token", "action", "market_position", "prev_market_position", "symbol", "exchange",
    "price", "close", "stop_loss", "take_profit", "qty", "contracts", "notional_usd",
    "risk_percent", "leverage", "strategy_id", "alert_id", "timenow", "message", "comment",
)  # fmt: skip
INTERESTING_TEXT = (
    "long_entry", " Long_Exit ", "short entry", "SHORT-EXIT", "buy", "sell", "long", "short",
    "flat", "BTCUSDT", "BINANCE:BTCUSDT.P", "BTC/USDT:USDT", "btc_usdt", "BTCUSDTPERP",
    "ETHBTC", "paper", "Binance", "kraken", "65000", "65,000.5", "0", "-1", "1e-19", "1e12",
    "10x", "125", "126", "NaN", "Infinity", "", " ", "{{close}}", "{{strategy.order.action}}",
    "2024-05-01T12:00:00Z", "2024-05-01T12:00:00", "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+05:00", "1714564800", "1714564800000",
    "0b9c1c8e-2b8a-4a3c-9d7e-0f6c2b8b1a11",
)  # fmt: skip

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: json.dumps writes them as NaN / Infinity
    | st.text(max_size=40)
    | st.sampled_from(INTERESTING_TEXT)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
field_values = (
    st.sampled_from(INTERESTING_TEXT)
    | st.integers(min_value=-10, max_value=10**14)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str)
    | st.floats(min_value=1e-9, max_value=1e13)
    | json_values
)
tokens = st.text(min_size=14, max_size=60).map(lambda tail: "jt_wh_" + tail)
alert_objects = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=12), field_values, max_size=12
)
# Mostly valid alerts, so that the properties of accepted alerts get exercised too.
amounts = (
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10**6), places=4).map(str)
    | st.integers(min_value=1, max_value=10**6)
    | st.floats(min_value=1e-4, max_value=1e6)
)
near_valid_objects = st.tuples(
    st.fixed_dictionaries(
        {
            "action": st.sampled_from(["long_entry", "long_exit", "short_entry", " Short_Exit"]),
            "symbol": st.sampled_from(["BTCUSDT", "BINANCE:ETHUSDT.P", "sol/usdc:USDC"]),
        },
        optional={
            "price": amounts | field_values,
            "stop_loss": amounts,
            "take_profit": amounts,
            "qty": amounts,
            "risk_percent": st.integers(min_value=1, max_value=100) | field_values,
            "leverage": st.integers(min_value=1, max_value=125) | st.just("10x") | field_values,
            "exchange": st.sampled_from(["paper", "Binance", " bybit "]) | field_values,
            "strategy_id": st.uuids().map(str) | field_values,
            "alert_id": st.text(min_size=1, max_size=20),
            "timenow": st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)
            | st.integers(min_value=0, max_value=10**13),
            "message": st.text(max_size=30),
            "comment": st.text(max_size=30),
        },
    ),
    st.dictionaries(st.text(max_size=12), json_values, max_size=4),
).map(lambda parts: {**parts[1], **parts[0]})


def parse(body: bytes) -> Alert:
    return parse_alert(body, default_exchange="paper", exchanges=EXCHANGES)


def outcome(body: bytes, token: str | None = None) -> Alert | None:
    """The alert, or None when refused the documented way (and without the token)."""
    try:
        return parse(body)
    except (BadRequest, ValidationFailed) as exc:
        refusal = exc
    if token is not None:
        assert token not in refusal.message
        assert token not in str(refusal)
    return None


@given(st.binary(max_size=512))
def test_arbitrary_bytes(body: bytes) -> None:
    outcome(body)


@given(st.text(alphabet='{}[]":,.0123456789eE+-NaInfity \\u\n', max_size=80))
def test_arbitrary_json_like_text(text: str) -> None:
    outcome(text.encode())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(alert_objects | near_valid_objects, tokens, st.randoms(use_true_random=False))
def test_arbitrary_objects(data: dict[str, Any], token: str, random: Any) -> None:
    data = {**data, "token": token}
    body = json.dumps(data).encode()
    alert = outcome(body, token)
    if alert is None:
        return
    assert alert.token == token
    payload = alert.payload_without_token()
    assert "token" not in payload
    assert token not in json.dumps(payload)
    assert alert.symbol == canonical_symbol(alert.symbol)
    assert "".join(split_symbol(alert.symbol)) == alert.symbol
    # The same alert in another key order and with another token: the same fingerprint.
    items = list(data.items())
    random.shuffle(items)
    other = json.dumps({**dict(items), "token": "jt_wh_another_token_0123456789"}).encode()
    assert alert_fingerprint(parse(other)) == alert_fingerprint(alert)


@given(st.sampled_from(FIELDS), st.text(min_size=14, max_size=40), tokens)
def test_token_in_another_field_is_not_echoed(field: str, junk: str, token: str) -> None:
    for value in (token, token + junk, junk + token):
        data = {"action": "long_entry", "symbol": "BTCUSDT", field: value, "token": token}
        outcome(json.dumps(data).encode(), token)


@given(
    st.sampled_from(["", "binance:", "BYBIT:"]),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=10),
    st.sampled_from(["USDT", "USDC", "USD", "BUSD", "FDUSD"]),
    st.sampled_from(["{}{}", "{}/{}", "{}-{}", "{}_{}", "{}{}.P", "{}{}PERP", "{}/{}:USDT"]),
    st.booleans(),
)
def test_symbol_forms(prefix: str, base: str, quote: str, form: str, lower: bool) -> None:
    sent = prefix + form.format(base, quote)
    sent = sent.lower() if lower else sent
    canonical = canonical_symbol(sent)
    assert canonical == base + quote
    assert canonical_symbol(canonical) == canonical
    assert "".join(split_symbol(canonical)) == canonical


@given(st.decimals(min_value=Decimal("1e-8"), max_value=Decimal("1e11"), places=8))
def test_numbers_are_exact(value: Decimal) -> None:
    if value <= 0:
        return
    as_number = f'{{"action":"long_exit","symbol":"BTCUSDT","price":{value}}}'.encode()
    as_string = f'{{"action":"long_exit","symbol":"BTCUSDT","price":"{value}"}}'.encode()
    assert parse(as_number).price == parse(as_string).price == value


@given(st.floats(min_value=1e-8, max_value=1e11))
def test_float_renderings_parse_to_their_shortest_decimal(value: float) -> None:
    assert math.isfinite(value)
    body = json.dumps({"action": "long_exit", "symbol": "BTCUSDT", "qty": value}).encode()
    assert parse(body).qty == Decimal(repr(value))
