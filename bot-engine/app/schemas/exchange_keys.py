"""Bodies of `/api/exchange-keys`: a key pair coming in, masked keys going out.

A key's secret travels only inward, once; no response carries it, nor the full key (only its
last four characters), nor any ciphertext.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# Printable ASCII without spaces: what Binance and Bybit issue. Anything else is a paste error.
_KEY_PATTERN = r"^[\x21-\x7e]+$"


class ExchangeKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exchange: Literal["binance", "bybit"]
    mode: Literal["live", "demo"] = Field(
        default="live", description="`demo`: the exchange's demo-trading environment"
    )
    label: str | None = Field(default=None, max_length=100)
    api_key: SecretStr = Field(min_length=8, max_length=256)
    api_secret: SecretStr = Field(min_length=8, max_length=512)
    passphrase: SecretStr | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("api_key", "api_secret", "passphrase")
    @classmethod
    def _printable(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(_KEY_PATTERN, value.get_secret_value()):
            raise ValueError("must be printable characters without spaces")
        return value


class KeyPermissionsOut(BaseModel):
    can_read: bool
    can_trade: bool
    can_withdraw: bool


class ExchangeKeyOut(BaseModel):
    id: uuid.UUID
    exchange: str
    mode: str
    label: str | None
    api_key_hint: str = Field(description="The key's last four characters, e.g. `****abcd`")
    permissions: KeyPermissionsOut
    is_active: bool
    is_valid: bool = Field(description="False once the exchange refused the key")
    last_used_at: datetime | None
    last_validated_at: datetime | None
    created_at: datetime
