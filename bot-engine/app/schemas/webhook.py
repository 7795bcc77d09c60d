"""The TradingView webhook's value types: the validated `Alert` and the response body.

`Alert` is what `app.core.signal_processor.parse_alert` makes of a raw webhook body. It is a
frozen, slotted dataclass rather than a Pydantic model: it is built once per alert on the hot
path from values that the processor has already validated, so a model's per-field validation
would only repeat work (and cost several microseconds). Treat its mappings as read-only.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

# A Decimal whose exponent is outside this range is rendered in scientific notation, so that
# a hostile `1e999999999` never turns into a billion-character string.
_PLAIN_EXPONENT_RANGE = range(-30, 31)


class SignalAction(StrEnum):
    """What the alert asks for; the values are those of `trading_signals.signal_type`."""

    LONG_ENTRY = "long_entry"
    LONG_EXIT = "long_exit"
    SHORT_ENTRY = "short_entry"
    SHORT_EXIT = "short_exit"

    @property
    def is_entry(self) -> bool:
        return self in (SignalAction.LONG_ENTRY, SignalAction.SHORT_ENTRY)

    @property
    def side(self) -> Literal["long", "short"]:
        """The side of the position the action opens or closes."""
        return "long" if self in (SignalAction.LONG_ENTRY, SignalAction.LONG_EXIT) else "short"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """A validated, normalised TradingView alert.

    Money and sizes are exact `Decimal`s, normalised (`65000.50` is `Decimal("65000.5")`).
    `token` is the alert's token as sent (None when absent or not a string): the caller
    authenticates it. It is left out of `repr` and of `payload_without_token()`.
    """

    action: SignalAction
    symbol: str  # canonical: BTCUSDT
    symbol_as_sent: str  # e.g. BYBIT:BTCUSDT.P
    exchange: str  # lower case, one of the configured exchanges
    token: str | None = field(default=None, repr=False)
    price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    leverage: int | None = None
    qty: Decimal | None = None
    notional_usd: Decimal | None = None
    risk_percent: Decimal | None = None
    strategy_id: uuid.UUID | None = None
    alert_id: str | None = None
    timenow: datetime | None = None  # aware, UTC
    message: str | None = None
    comment: str | None = None
    # Fields the engine does not know, as parsed (floats are Decimals).
    extra: Mapping[str, Any] = field(default_factory=dict)
    # The whole JSON object as parsed, token included: read it through payload_without_token().
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_entry(self) -> bool:
        return self.action.is_entry

    @property
    def is_exit(self) -> bool:
        return not self.action.is_entry

    @property
    def side(self) -> Literal["long", "short"]:
        return self.action.side

    def payload_without_token(self) -> dict[str, Any]:
        """The alert as sent minus its token, JSON-serialisable (Decimals as strings)."""
        return payload_without_token(self.raw)


def payload_without_token(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` (a parsed alert object) without its `token`, with Decimals as strings.

    Usable on an object that failed validation, to record what was received.
    """
    return {key: jsonable(value) for key, value in data.items() if key != "token"}


def jsonable(value: Any) -> Any:
    """`value` (parsed JSON) with every Decimal replaced by its exact string."""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    return value


def decimal_text(value: Decimal) -> str:
    """The exact text of `value`: positional (`0.00000001`) unless the exponent is extreme."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent in _PLAIN_EXPONENT_RANGE:
        return format(value, "f")
    return str(value)


class WebhookAccepted(BaseModel):
    """Body of the webhook's success answer."""

    status: Literal["queued", "logged", "duplicate"] = Field(
        description="queued: will be executed; logged: recorded only (tier rules); "
        "duplicate: this alert was already received"
    )
    message: str
    signal_id: uuid.UUID = Field(description="The trading signal recorded for this alert")
