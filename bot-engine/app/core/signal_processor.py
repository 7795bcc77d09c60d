"""From the raw body of a TradingView webhook to a validated, normalised `Alert`.

Pure and fast (no database, no network): this runs on every alert, inside TradingView's
3-second budget. Two steps, usable separately so the caller can authenticate the token
between them:

- `load_alert_object(body)`: the body as a JSON object, whatever the Content-Type
  (TradingView sends `text/plain` when the message is not valid JSON). Non-JSON is a
  `BadRequest` (`empty_body` / `invalid_json` / `duplicate_key`) that says where, never
  echoing the body (it holds the token).
- `validate_alert(data, ...)`: the fields, normalised; a bad field is a `ValidationFailed`
  (422) naming it in `field` and in the message.

`parse_alert` does both. `alert_fingerprint` hashes what makes two alerts "the same" (for
dedupe), `is_stale` applies the optional MAX_ALERT_AGE_S check.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, Inexact
from typing import Any, Final, NoReturn

from app.core.errors import BadRequest, ValidationFailed
from app.schemas.webhook import Alert, SignalAction, decimal_text

__all__ = [
    "MAX_DEPTH",
    "QUOTE_CURRENCIES",
    "alert_fingerprint",
    "canonical_symbol",
    "is_stale",
    "load_alert_object",
    "parse_alert",
    "split_symbol",
    "validate_alert",
]

MAX_DEPTH: Final = 32  # nesting of objects/arrays in a body; alerts are flat in practice
QUOTE_CURRENCIES: Final = ("FDUSD", "USDT", "USDC", "BUSD", "USD")  # longest first
MAX_SYMBOL_CHARS: Final = 32  # canonical symbol
MAX_SYMBOL_AS_SENT_CHARS: Final = 64
MAX_ALERT_ID_CHARS: Final = 128
MAX_TEXT_CHARS: Final = 1000  # message, comment
MAX_LEVERAGE: Final = 125
# Numbers: from 10^-18 to below 10^12 (the integer part of NUMERIC(20, 8)), with at most 40
# significant digits: exact, never rounded, and never an unbounded exponent. (A float that Pine
# computed can render with 17 significant digits, far below the point on a small price.)
MAX_NUMBER: Final = Decimal(10) ** 12
MIN_NUMBER: Final = Decimal("1e-18")
MAX_SIGNIFICANT_DIGITS: Final = 40

_ACTIONS: Final = {action.value: action for action in SignalAction}
_ACCEPTED_ACTIONS: Final = (
    "long_entry, long_exit, short_entry, short_exit, or buy/sell with market_position"
)
# (order action, market position after the order) -> signal, for strategy alerts.
_STRATEGY_ACTIONS: Final = {
    ("buy", "long"): SignalAction.LONG_ENTRY,
    ("sell", "flat"): SignalAction.LONG_EXIT,
    ("sell", "short"): SignalAction.SHORT_ENTRY,
    ("buy", "flat"): SignalAction.SHORT_EXIT,
}
# An exit to flat can only come from the position it closes.
_EXIT_PREVIOUS: Final = {SignalAction.LONG_EXIT: "long", SignalAction.SHORT_EXIT: "short"}
_POSITIONS: Final = frozenset({"long", "short", "flat"})

# Every field the engine interprets; anything else is kept in `Alert.extra`. `close` is
# interpreted only when it stands in for an absent `price`.
_KNOWN_FIELDS: Final = frozenset(
    {
        "token", "action", "market_position", "prev_market_position", "symbol", "exchange",
        "price", "stop_loss", "take_profit", "qty", "contracts", "notional_usd",
        "risk_percent", "leverage", "strategy_id", "alert_id", "timenow", "message", "comment",
    }
)  # fmt: skip

_NUMBER_RE: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,6})?", re.ASCII)
_DIGITS_RE: Final = re.compile(r"\d{1,4}", re.ASCII)
_EPOCH_RE: Final = re.compile(r"\d{1,16}(?:\.\d{1,9})?", re.ASCII)
_PLACEHOLDER_RE: Final = re.compile(r"\{\{[^{}]{0,64}\}\}")
_SYMBOL_CHARS_RE: Final = re.compile(r"[A-Z0-9]+")
_WHITESPACE_RE: Final = re.compile(r"\s")
_EXCHANGE_PREFIX_RE: Final = re.compile(r"[A-Z0-9_]+")
_UNSTORABLE_RE: Final = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL JSONB refuses these
_SEPARATORS: Final = ("/", "-", "_")
_SHOWN_CHARS: Final = 32

_EXACT: Final = Context(prec=MAX_SIGNIFICANT_DIGITS, traps=[Inexact])
_ONE: Final = Decimal(1)
_HUNDRED: Final = Decimal(100)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_MS_FROM: Final = Decimal(10) ** 11  # 10^11 s is the year 5138; 10^11 ms is 1973
_EPOCH_S_UNTIL: Final = Decimal(253402300800)  # 10000-01-01T00:00:00Z


# --------------------------------------------------------------------------- public API
def parse_alert(body: bytes, *, default_exchange: str, exchanges: frozenset[str]) -> Alert:
    """The alert in `body`, validated and normalised.

    Raises `BadRequest` when the body is not a JSON object and `ValidationFailed` (422,
    `field` set) when a field is missing or invalid.
    """
    return validate_alert(
        load_alert_object(body), default_exchange=default_exchange, exchanges=exchanges
    )


def load_alert_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, parsed exactly (floats as `Decimal`).

    Refused with `BadRequest`: empty body (`empty_body`); invalid UTF-8, invalid JSON, NaN or
    Infinity outside a top-level field, nesting deeper than MAX_DEPTH, `\\u0000` or an
    unpaired surrogate (PostgreSQL cannot store them), not an object (`invalid_json`); a key
    repeated in one object (`duplicate_key`: which value would win is ambiguous). NaN or
    Infinity as (or inside) the value of a top-level field is a `ValidationFailed` on it
    (code `not_finite`): TradingView renders a plot that is `na` as `NaN`.
    """
    if body.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte order mark
        body = body[3:]
    if not body.strip():
        raise BadRequest(
            "the body is empty; the alert message must be a JSON object", code="empty_body"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_column(body, exc.start)
        raise BadRequest(
            f"the body is not valid UTF-8 (line {line}, column {column})", code="invalid_json"
        ) from None
    try:
        data = _DECODER.decode(text)
    except json.JSONDecodeError as exc:  # its message names no part of the document
        raise BadRequest(
            f"the alert message is not valid JSON: {exc.msg} (line {exc.lineno}, column "
            f"{exc.colno}); a placeholder that rendered empty can cause this",
            code="invalid_json",
        ) from None
    except _DuplicateKey as exc:
        raise BadRequest(
            f"the key {_show_key(exc.key)} appears more than once in one object",
            field=_key_field(exc.key),
            code="duplicate_key",
        ) from None
    except RecursionError:
        raise BadRequest(
            f"the alert message nests deeper than {MAX_DEPTH} levels", code="invalid_json"
        ) from None
    except (ValueError, ArithmeticError):  # an integer or exponent too large to convert
        raise BadRequest(
            "the alert message holds a number too large to read", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise BadRequest(
            f"the alert message must be a JSON object, not {_json_type(data)}",
            code="invalid_json",
        )
    if text.count("{") + text.count("[") > MAX_DEPTH and _depth(data) > MAX_DEPTH:
        raise BadRequest(
            f"the alert message nests deeper than {MAX_DEPTH} levels", code="invalid_json"
        )
    if ("NaN" in text or "Infinity" in text) and _find_non_finite(data) is not None:
        _refuse_non_finite(data)
    if "\\u" in text and _has_unstorable_text(data):
        raise BadRequest(
            "the alert message contains \\u0000 or an unpaired surrogate escape, "
            "which cannot be stored",
            code="invalid_json",
        )
    return data


def validate_alert(
    data: Mapping[str, Any], *, default_exchange: str, exchanges: frozenset[str]
) -> Alert:
    """The alert object `data` (from `load_alert_object`), validated and normalised.

    Raises `ValidationFailed` naming the first invalid field. Messages never contain the
    token: a field's value is shown only when short (a real token is longer), and a message
    that would still contain it (the token sent in another field) is withheld.
    """
    token = data.get("token")
    if not isinstance(token, str):
        token = None
    try:
        return _validate(data, token, default_exchange, exchanges)
    except ValidationFailed as exc:
        if token and token in exc.message:
            exc.message = f"{exc.field} is invalid (details withheld: they contain the token)"
            exc.args = (exc.message,)
        raise


def canonical_symbol(text: str) -> str:
    """`BINANCE:BTCUSDT`, `BTCUSDT.P`, `BTC/USDT:USDT`, `btc_usdt`, ... -> `BTCUSDT`.

    Drops an exchange prefix (`BINANCE:`), a perpetual suffix (`.P`, `PERP`) and a settle
    currency (`:USDT`); upper-cases; joins base and quote. The quote must be one of
    QUOTE_CURRENCIES. Raises `ValidationFailed` on `symbol` otherwise.
    """
    if not isinstance(text, str):
        _fail("symbol", f"symbol must be a string, not {_json_type(text)}")
    sent = text.strip()
    _refuse_placeholder("symbol", sent)
    if len(sent) > MAX_SYMBOL_AS_SENT_CHARS:
        _fail("symbol", f"symbol is longer than {MAX_SYMBOL_AS_SENT_CHARS} characters")
    if _WHITESPACE_RE.search(sent):
        _fail("symbol", f"symbol {_show(sent)} contains whitespace")
    upper = sent.upper()
    parts = upper.split(":")
    if len(parts) > 1 and "/" not in parts[0]:  # TradingView's exchange prefix
        if not _EXCHANGE_PREFIX_RE.fullmatch(parts[0]):
            _fail("symbol", f"symbol {_show(sent)} has a malformed exchange prefix")
        parts = parts[1:]
    if len(parts) == 2 and "/" in parts[0]:  # ccxt's settle currency: BTC/USDT:USDT
        parts = parts[:1]
    if len(parts) != 1:
        _fail("symbol", f"symbol {_show(sent)} has too many ':' separators")
    core = parts[0]
    if core.endswith(".P"):
        core = core[:-2]
    elif core.endswith("PERP") and len(core) > 4:
        core = core[:-4].rstrip("-_")
    canonical, quote = _join_base_quote(sent, core)
    if not _SYMBOL_CHARS_RE.fullmatch(canonical):
        _fail(
            "symbol",
            f"symbol {_show(sent)} must be letters and digits, optionally with an exchange "
            "prefix (BINANCE:), one separator (/ - _) and a .P or PERP suffix",
        )
    if len(canonical) > MAX_SYMBOL_CHARS:
        _fail("symbol", f"symbol is longer than {MAX_SYMBOL_CHARS} characters")
    if quote is None:
        _fail("symbol", _unknown_quote(sent))
    return canonical


def split_symbol(canonical: str) -> tuple[str, str]:
    """`BTCUSDT` -> `("BTC", "USDT")`: the longest known quote currency that ends it.

    Raises ValueError when no quote currency in QUOTE_CURRENCIES ends `canonical`, which
    `canonical_symbol` guarantees for its results.
    """
    for quote in QUOTE_CURRENCIES:
        if canonical.endswith(quote) and len(canonical) > len(quote):
            return canonical[: -len(quote)], quote
    raise ValueError(f"{canonical!r} does not end in a known quote currency")


def alert_fingerprint(alert: Alert) -> str:
    """Hex SHA-256 of what makes two alerts the same, for dedupe; the token is not part of it.

    Canonical serialisation: sorted keys, no whitespace, numbers normalised (`"65000"`,
    `65000` and `65000.0` hash alike, in the known fields and in `extra`), the time in UTC.
    """
    content = {
        "v": 1,
        "action": alert.action.value,
        "symbol": alert.symbol,
        "exchange": alert.exchange,
        "price": _number_key(alert.price),
        "stop_loss": _number_key(alert.stop_loss),
        "take_profit": _number_key(alert.take_profit),
        "qty": _number_key(alert.qty),
        "notional_usd": _number_key(alert.notional_usd),
        "risk_percent": _number_key(alert.risk_percent),
        "leverage": alert.leverage,
        "strategy_id": str(alert.strategy_id) if alert.strategy_id else None,
        "alert_id": alert.alert_id,
        "timenow": alert.timenow.astimezone(UTC).isoformat() if alert.timenow else None,
        "message": alert.message,
        "comment": alert.comment,
        "extra": _canonical_value(alert.extra),
    }
    return hashlib.sha256(_CANONICAL_JSON.encode(content).encode()).hexdigest()


def is_stale(alert: Alert, *, now: datetime, max_age_s: int | None) -> bool:
    """Whether the alert fired more than `max_age_s` seconds before `now` (aware).

    False when the check is off (`max_age_s` None) or the alert carries no `timenow`: an
    alert's age is then unknown, and refusing it would refuse every alert without one.
    """
    if max_age_s is None or alert.timenow is None:
        return False
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return now - alert.timenow > timedelta(seconds=max_age_s)


# --------------------------------------------------------------------------- validation
def _validate(
    data: Mapping[str, Any], token: str | None, default_exchange: str, exchanges: frozenset[str]
) -> Alert:
    action = _action(data)
    symbol_sent = data.get("symbol")
    if symbol_sent is None:
        _fail("symbol", 'symbol is required, e.g. "symbol": "{{ticker}}"')
    symbol = canonical_symbol(symbol_sent)

    price_field = "price" if data.get("price") is not None else "close"
    price = _number(data, price_field)
    stop_loss = _number(data, "stop_loss")
    take_profit = _number(data, "take_profit")
    if data.get("contracts") is not None and data.get("qty") is not None:
        _fail("contracts", "contracts is an alias of qty: send one of them, not both")
    qty_field = "qty" if data.get("qty") is not None else "contracts"
    qty = _number(data, qty_field)
    notional_usd = _number(data, "notional_usd")
    risk_percent = _number(data, "risk_percent")
    if risk_percent is not None and risk_percent > _HUNDRED:
        _fail("risk_percent", f"risk_percent {_show_number(risk_percent)} must be at most 100")
    sizing = [
        name
        for name, value in (
            (qty_field, qty),
            ("notional_usd", notional_usd),
            ("risk_percent", risk_percent),
        )
        if value is not None
    ]
    if len(sizing) > 1:
        _fail(
            sizing[1],
            f"give at most one of qty, notional_usd and risk_percent; got {', '.join(sizing)}",
        )
    if action.is_entry:
        _check_protection(action, price, price_field, stop_loss, take_profit)

    extra_skip = _KNOWN_FIELDS if price_field == "price" else _KNOWN_FIELDS | {"close"}
    return Alert(
        token=token,
        action=action,
        symbol=symbol,
        symbol_as_sent=symbol_sent.strip(),
        exchange=_exchange(data, default_exchange, exchanges),
        price=price,
        stop_loss=stop_loss,
        take_profit=take_profit,
        leverage=_leverage(data.get("leverage")),
        qty=qty,
        notional_usd=notional_usd,
        risk_percent=risk_percent,
        strategy_id=_strategy_id(data.get("strategy_id")),
        alert_id=_alert_id(data.get("alert_id")),
        timenow=_timenow(data.get("timenow")),
        message=_text(data, "message"),
        comment=_text(data, "comment"),
        extra={key: value for key, value in data.items() if key not in extra_skip},
        raw=data,
    )


def _action(data: Mapping[str, Any]) -> SignalAction:
    raw = data.get("action")
    if raw is None:
        _fail("action", f"action is required; accepted: {_ACCEPTED_ACTIONS}")
    word = _word("action", raw)
    action = _ACTIONS.get(word)
    if action is not None:
        return action
    if word not in ("buy", "sell"):
        _fail("action", f"action {_show(raw)} is not accepted; accepted: {_ACCEPTED_ACTIONS}")
    raw_position = data.get("market_position")
    if raw_position is None:
        _fail(
            "market_position",
            f"action {word!r} needs market_position (long, short or flat), e.g. "
            '"market_position": "{{strategy.market_position}}"',
        )
    position = _position("market_position", raw_position)
    action = _STRATEGY_ACTIONS.get((word, position))
    if action is None:
        reduced = "short" if word == "buy" else "long"
        _fail(
            "market_position",
            f"{word} with market_position {position!r} means a {reduced} position was reduced "
            "but not closed; partial reductions are not supported (close it fully, or send "
            f"{reduced}_exit)",
        )
    raw_previous = data.get("prev_market_position")
    if raw_previous is not None:
        previous = _position("prev_market_position", raw_previous)
        expected = _EXIT_PREVIOUS.get(action)
        if expected is not None and previous != expected:
            _fail(
                "prev_market_position",
                f"{word} to flat closes a {expected} position, but prev_market_position is "
                f"{previous!r}",
            )
    return action


def _position(field: str, raw: Any) -> str:
    position = _word(field, raw)
    if position not in _POSITIONS:
        _fail(field, f"{field} {_show(raw)} must be long, short or flat")
    return position


def _word(field: str, raw: Any) -> str:
    """A keyword in any case, surrounding whitespace ignored, inner spaces/hyphens as `_`."""
    if not isinstance(raw, str):
        _fail(field, f"{field} must be a string, not {_json_type(raw)}")
    text = raw.strip()
    _refuse_placeholder(field, text)
    return "_".join(text.lower().replace("-", " ").split())


def _join_base_quote(sent: str, core: str) -> tuple[str, str | None]:
    """`core` without its separator, and its quote currency if recognised."""
    separators = [sep for sep in _SEPARATORS if sep in core]
    if not separators:
        for quote in QUOTE_CURRENCIES:
            if core.endswith(quote) and len(core) > len(quote):
                return core, quote
        return core, None
    if len(separators) > 1 or core.count(separators[0]) > 1:
        _fail("symbol", f"symbol {_show(sent)} has more than one separator")
    base, quote = core.split(separators[0])
    if not base or not quote:
        _fail("symbol", f"symbol {_show(sent)} lacks a base or quote currency")
    return base + quote, quote if quote in QUOTE_CURRENCIES else None


def _unknown_quote(sent: str) -> str:
    return (
        f"symbol {_show(sent)} does not end in a supported quote currency "
        f"({', '.join(QUOTE_CURRENCIES)})"
    )


def _number(data: Mapping[str, Any], field: str) -> Decimal | None:
    """A strictly positive, finite, exact number: a JSON number or a numeric string."""
    raw = data.get(field)
    if raw is None:
        return None
    if isinstance(raw, Decimal):
        value = raw
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = Decimal(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        _refuse_placeholder(field, text)
        if "," in text:
            _fail(
                field,
                f"{field} {_show(raw)} contains a comma; write numbers without thousands "
                "separators and with a dot for decimals (65000.5)",
            )
        if not _NUMBER_RE.fullmatch(text):
            _fail(field, f"{field} {_show(raw)} is not a number")
        value = Decimal(text)
    else:
        _fail(field, f"{field} must be a number, not {_json_type(raw)}")
    return _bounded(field, value)


def _bounded(field: str, value: Decimal) -> Decimal:
    if not value > 0:
        _fail(field, f"{field} {_show_number(value)} must be greater than 0")
    if value >= MAX_NUMBER:
        _fail(field, f"{field} {_show_number(value)} must be less than {MAX_NUMBER}")
    if value < MIN_NUMBER:
        _fail(field, f"{field} {_show_number(value)} must be at least {MIN_NUMBER}")
    try:
        value = value.normalize(_EXACT)
    except Inexact:
        _fail(field, f"{field} has more than {MAX_SIGNIFICANT_DIGITS} significant digits")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    return value.quantize(_ONE) if exponent > 0 else value  # 6.5E+4 -> 65000


def _check_protection(
    action: SignalAction,
    price: Decimal | None,
    price_field: str,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
) -> None:
    """Stop below and target above the price for a long, the other way round for a short."""
    long = action is SignalAction.LONG_ENTRY
    entry = f"{'long' if long else 'short'} entry"
    if price is not None:
        the_price = f"the {price_field} {_show_number(price)}"
        if stop_loss is not None and (stop_loss >= price if long else stop_loss <= price):
            where = "below" if long else "above"
            _fail(
                "stop_loss",
                f"stop_loss {_show_number(stop_loss)} must be {where} {the_price} for a {entry}",
            )
        if take_profit is not None and (take_profit <= price if long else take_profit >= price):
            where = "above" if long else "below"
            _fail(
                "take_profit",
                f"take_profit {_show_number(take_profit)} must be {where} {the_price} for a "
                f"{entry}",
            )
    elif (
        stop_loss is not None
        and take_profit is not None
        and (stop_loss >= take_profit if long else stop_loss <= take_profit)
    ):
        where = "below" if long else "above"
        _fail(
            "stop_loss",
            f"stop_loss {_show_number(stop_loss)} must be {where} take_profit "
            f"{_show_number(take_profit)} for a {entry}",
        )


def _leverage(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        _fail("leverage", "leverage must be a whole number, not a boolean")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, Decimal):
        if not 1 <= raw <= MAX_LEVERAGE:
            _fail("leverage", f"leverage {_show_number(raw)} must be from 1 to {MAX_LEVERAGE}")
        if raw != raw.to_integral_value():
            _fail("leverage", f"leverage {_show_number(raw)} must be a whole number")
        value = int(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        _refuse_placeholder("leverage", text)
        digits = text[:-1].rstrip() if text[-1:] in ("x", "X") else text
        if not _DIGITS_RE.fullmatch(digits):
            _fail("leverage", f'leverage {_show(raw)} must be a whole number such as 10 or "10x"')
        value = int(digits)
    else:
        _fail("leverage", f"leverage must be a whole number, not {_json_type(raw)}")
    if not 1 <= value <= MAX_LEVERAGE:
        _fail("leverage", f"leverage {value} must be from 1 to {MAX_LEVERAGE}")
    return value


def _exchange(data: Mapping[str, Any], default: str, exchanges: frozenset[str]) -> str:
    raw = data.get("exchange")
    if raw is None:
        return default.lower()
    if not isinstance(raw, str):
        _fail("exchange", f"exchange must be a string, not {_json_type(raw)}")
    name = raw.strip()
    _refuse_placeholder("exchange", name)
    name = name.lower()
    if name not in exchanges:
        _fail(
            "exchange",
            f"exchange {_show(raw)} is not supported; supported: {', '.join(sorted(exchanges))}",
        )
    return name


def _strategy_id(raw: Any) -> uuid.UUID | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        _fail("strategy_id", f"strategy_id must be a UUID string, not {_json_type(raw)}")
    text = raw.strip()
    _refuse_placeholder("strategy_id", text)
    try:
        return uuid.UUID(text)
    except ValueError:
        _fail("strategy_id", f"strategy_id {_show(raw)} is not a UUID")


def _alert_id(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        _fail("alert_id", f"alert_id must be a string, not {_json_type(raw)}")
    _refuse_placeholder("alert_id", raw.strip())
    if len(raw) > MAX_ALERT_ID_CHARS:
        _fail("alert_id", f"alert_id is longer than {MAX_ALERT_ID_CHARS} characters")
    return raw


def _timenow(raw: Any) -> datetime | None:
    """An aware UTC time from TradingView's `{{timenow}}` (ISO 8601) or an epoch (s or ms)."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        _fail("timenow", "timenow must be an ISO 8601 time or an epoch, not a boolean")
    if isinstance(raw, int | Decimal):
        return _from_epoch(Decimal(raw))
    if not isinstance(raw, str):
        _fail("timenow", f"timenow must be an ISO 8601 time or an epoch, not {_json_type(raw)}")
    text = raw.strip()
    _refuse_placeholder("timenow", text)
    if _EPOCH_RE.fullmatch(text):
        return _from_epoch(Decimal(text))
    if len(text) > 40:
        _fail("timenow", "timenow is too long for an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail("timenow", f"timenow {_show(raw)} is not an ISO 8601 time like 2024-05-01T12:00:00Z")
    if moment.tzinfo is None:
        _fail(
            "timenow",
            f"timenow {_show(raw)} has no time zone; send UTC as {{{{timenow}}}} renders it "
            "(2024-05-01T12:00:00Z)",
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00:00-02:00 is in the year 10000 in UTC
        _fail("timenow", f"timenow {_show(raw)} is out of range")


def _from_epoch(value: Decimal) -> datetime:
    if not value.is_finite() or value < 0:
        _fail("timenow", "timenow must be a positive epoch in seconds or milliseconds")
    seconds = value / 1000 if value >= _EPOCH_MS_FROM else value
    if seconds >= _EPOCH_S_UNTIL:
        _fail("timenow", "timenow is after the year 9999")
    return _EPOCH + timedelta(microseconds=int(seconds * 1_000_000))


def _text(data: Mapping[str, Any], field: str) -> str | None:
    raw = data.get(field)
    if raw is None:
        return None
    if not isinstance(raw, str):
        _fail(field, f"{field} must be a string, not {_json_type(raw)}")
    if len(raw) > MAX_TEXT_CHARS:
        _fail(field, f"{field} is longer than {MAX_TEXT_CHARS} characters")
    return raw


def _refuse_placeholder(field: str, text: str) -> None:
    """Refuse a value that a TradingView placeholder should have filled but did not."""
    if not text:
        _fail(
            field,
            f"{field} is empty: the placeholder meant to fill it did not expand (TradingView "
            "renders strategy placeholders empty in non-strategy alerts)",
            code="unexpanded_placeholder",
        )
    if "{{" in text:
        match = _PLACEHOLDER_RE.search(text)
        shown = match.group() if match else "{{...}}"
        _fail(
            field,
            f"{field} contains the placeholder {shown} unexpanded: TradingView did not fill "
            "it (check its spelling and that it exists for this kind of alert)",
            code="unexpanded_placeholder",
        )


# --------------------------------------------------------------------------- helpers
def _fail(field: str, message: str, *, code: str | None = None) -> NoReturn:
    raise ValidationFailed(message, field=field, code=code)


def _show(value: object) -> str:
    """A value for an error message: short strings quoted, never a long one (a token?)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= _SHOWN_CHARS else f"(a {len(value)}-character text)"
    if isinstance(value, Decimal):
        return _show_number(value)
    return _json_type(value)


def _show_number(value: Decimal) -> str:
    text = decimal_text(value)
    return text if len(text) <= _SHOWN_CHARS else f"{value:.6e}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | Decimal | _NonFinite):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _number_key(value: Decimal | None) -> str | None:
    """Validated numbers are normalised and bounded, so the positional text is canonical."""
    return None if value is None else format(value, "f")


def _canonical_value(value: Any) -> Any:
    """Parsed JSON with every number (int or Decimal) as normalised scientific text.

    `65000`, `65000.0` and `6.5e4` all become `"65e3"`; the text stays short whatever the
    exponent. Numbers and numeric strings in `extra` therefore hash alike when equal.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | Decimal):
        sign, digits, exponent = Decimal(value).as_tuple()
        assert isinstance(exponent, int)
        coefficient = "".join(map(str, digits)).rstrip("0")
        if not coefficient:
            return "0"
        exponent += len(digits) - len(coefficient)
        return f"{'-' if sign else ''}{coefficient}e{exponent}"
    if isinstance(value, Mapping):
        return {key: _canonical_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical_value(item) for item in value]
    raise TypeError(f"not parsed JSON: {type(value).__name__}")


class _NonFinite:
    """Stands in for NaN / Infinity while parsing, so that the field holding one is named."""

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return data


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_non_finite(data: dict[str, Any]) -> NoReturn:
    for key, value in data.items():
        found = _find_non_finite(value)
        if found is not None:
            verb = "is" if found is value else "contains"
            raise ValidationFailed(
                f"{_show_key(key)} {verb} {found.literal}, which JSON cannot carry (a plot "
                "or price that was na when the alert fired?)",
                field=_key_field(key),
                code="not_finite",
            )
    raise AssertionError("a non-finite constant was parsed but not found")  # pragma: no cover


def _find_non_finite(value: Any) -> _NonFinite | None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _NonFinite):
            return item
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _depth(data: Any) -> int:
    deepest = 0
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _has_unstorable_text(data: Any) -> bool:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE_RE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _show_key(key: str) -> str:
    return repr(key) if len(key) <= _SHOWN_CHARS else f"a {len(key)}-character key"


def _key_field(key: str) -> str | None:
    """`key` as an error's `field`, unless it is too long to be a field name (a token?)."""
    return key if len(key) <= _SHOWN_CHARS else None


def _line_column(body: bytes, offset: int) -> tuple[int, int]:
    line_start = body.rfind(b"\n", 0, offset) + 1
    return body.count(b"\n", 0, offset) + 1, offset - line_start + 1


# Stateless, so shared; built once because json.loads() builds a decoder per call with hooks.
_DECODER: Final = json.JSONDecoder(
    parse_float=Decimal, parse_constant=_NonFinite, object_pairs_hook=_unique_keys
)
_CANONICAL_JSON: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
