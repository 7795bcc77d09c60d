"""Redaction of secrets from log events — by a processor, not by discipline.

Two layers: values under sensitive keys are replaced whole, and every string anywhere in the
event (including rendered exceptions) is scrubbed of things that look like credentials:
bearer tokens, JWTs, webhook tokens, `token=` query parameters, passwords in URLs, exchange
API keys in request headers and Telegram bot tokens (which sit in every Bot API URL).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from structlog.typing import EventDict, WrappedLogger

REDACTED = "[REDACTED]"

# Key fragments that mark a value as secret (matched case-insensitively against the key).
_SENSITIVE_KEY = re.compile(
    r"token|secret|passw|passphrase|authori[sz]ation|api[_-]?key|apikey|cookie|credential"
    r"|private[_-]?key|encryption[_-]?key|signature|session[_-]?id",
    re.IGNORECASE,
)
# Keys that match the pattern above but hold no secret.
_SAFE_KEYS = frozenset(
    {
        "token_prefix",
        "token_id",
        "token_use",
        "input_tokens",
        "output_tokens",
        "max_tokens",
        "tokens_used",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "api_key_id",
    }
)

_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Telegram bot tokens, `<bot id>:<secret>`, bare or in a Bot API URL (`/bot<token>/...`).
    # The bot id is public and kept. Digits glued to a preceding word (other than `bot`) are
    # not a token: that keeps ids such as `...-a123456:<hash>` intact. First, so that no
    # other pattern (`Bearer <token>`) takes the id and leaves the secret.
    (
        re.compile(r"(?:(?<=bot)|(?<![A-Za-z0-9_-]))(\d{5,16}):[A-Za-z0-9_-]{30,}"),
        r"\1:" + REDACTED,
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"\bjt_wh_[A-Za-z0-9_-]{12,}"), "jt_wh_" + REDACTED),
    (
        re.compile(r"(?i)([?&](?:token|access_token|api_key|apikey|secret|signature)=)[^&\s\"']+"),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(://[^/:@\s]+:)[^@/\s]+@"), r"\1" + REDACTED + "@"),
    (re.compile(r"(?i)\b(sk-ant-|sk-)[A-Za-z0-9_-]{8,}"), r"\1" + REDACTED),
    # Exchange API keys and signatures in request headers, as an HTTP client prints them.
    (
        re.compile(
            r"(?i)(x-(?:mbx-apikey|bapi-api-key|bapi-sign)['\"]?\s*[:=]\s*['\"]?)[^'\",\s}]+"
        ),
        r"\1" + REDACTED,
    ),
)


# One pass that finds whether any pattern above could match: most strings in a log event
# (event names, ids, symbols, amounts) contain none of these markers and are left as they are.
_MAYBE_SECRET = re.compile(
    r"bearer|basic|eyJ|jt_wh_|[?&](?:token|access_token|api_key|apikey|secret|signature)="
    r"|://[^/:@\s]+:[^@/\s]+@|sk-|x-mbx-apikey|x-bapi-|\d{5}:[A-Za-z0-9_-]{30}",
    re.IGNORECASE,
)
_SHORTEST_SECRET = 7  # "://a:b@"; every other pattern needs more characters
_PLAIN = (int, float, Decimal, UUID, datetime, type(None))


@functools.lru_cache(maxsize=1024)
def is_sensitive_key(key: str) -> bool:
    return key not in _SAFE_KEYS and bool(_SENSITIVE_KEY.search(key))


def scrub_text(text: str) -> str:
    if len(text) < _SHORTEST_SECRET or not _MAYBE_SECRET.search(text):
        return text
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and is_sensitive_key(k) else redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    if isinstance(value, bytes):
        return scrub_text(value.decode("utf-8", "replace"))
    return value


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact every field of the event."""
    for key, value in list(event_dict.items()):
        if key.startswith("_"):
            continue
        if is_sensitive_key(key) and value is not None:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = redact_value(value)
    return event_dict
