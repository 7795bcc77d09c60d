"""Read-only look-ups the model may call while answering: the caller's positions, signals,
trades and risk settings. None of them can change anything.

The user a tool reads is the one the chat request was authenticated as; it is bound when
the tool box is made and no tool input can name another. Bad input from the model is
answered as a tool error (the model can correct itself), never raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ai import context_builder as data
from app.models.signal import SIGNAL_STATUSES

_LIMIT = {"type": "integer", "minimum": 1, "maximum": data.MAX_ROWS, "default": 10}
_SYMBOL = {
    "type": "string",
    "description": "Part of a symbol, e.g. ETH or ETHUSDT; case does not matter",
    "maxLength": 40,
}
_SINCE_DAYS = {
    "type": "integer",
    "minimum": 1,
    "maximum": 365,
    "description": "Only items from the last N days",
}

TOOLS: list[dict[str, Any]] = [
    {
        "name": "get_positions",
        "description": "The trader's positions, newest first: open ones by default, or "
        "closed ones with their realised PnL.",
        "input_schema": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["open", "closed"], "default": "open"},
                "symbol": _SYMBOL,
                "limit": _LIMIT,
            },
            "additionalProperties": False,
        },
    },
    {
        "name": "get_signals",
        "description": "The trader's signals (received alerts), newest first, with status "
        "and the reason a signal was rejected, skipped or failed.",
        "input_schema": {
            "type": "object",
            "properties": {
                "symbol": _SYMBOL,
                "status": {"type": "string", "enum": list(SIGNAL_STATUSES)},
                "since_days": _SINCE_DAYS,
                "limit": _LIMIT,
            },
            "additionalProperties": False,
        },
    },
    {
        "name": "get_trades",
        "description": "The trader's orders, newest first, with fills, fees and realised PnL.",
        "input_schema": {
            "type": "object",
            "properties": {
                "symbol": _SYMBOL,
                "status": {"type": "string", "maxLength": 20},
                "since_days": _SINCE_DAYS,
                "limit": _LIMIT,
            },
            "additionalProperties": False,
        },
    },
    {
        "name": "get_risk_settings",
        "description": "The trader's current risk settings.",
        "input_schema": {"type": "object", "properties": {}, "additionalProperties": False},
    },
]
# The input keys each tool takes; anything else in a call is refused.
_PARAMETERS: dict[str, frozenset[str]] = {
    tool["name"]: frozenset(tool["input_schema"]["properties"]) for tool in TOOLS
}
TOOL_NAMES = frozenset(_PARAMETERS)


class ToolInputError(ValueError):
    pass


@dataclass(frozen=True)
class ToolResult:
    content: str  # JSON text
    is_error: bool = False


def _symbol(args: dict[str, Any]) -> str | None:
    value = args.get("symbol")
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 40:
        raise ToolInputError("symbol must be a string of 1 to 40 characters")
    return value


def _int(args: dict[str, Any], name: str, default: int | None, top: int) -> int | None:
    value = args.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
        raise ToolInputError(f"{name} must be an integer from 1 to {top}")
    return value


def _since(args: dict[str, Any]) -> datetime | None:
    days = _int(args, "since_days", None, 365)
    return None if days is None else datetime.now(UTC) - timedelta(days=days)


def _status(args: dict[str, Any], allowed: tuple[str, ...] | None = None) -> str | None:
    value = args.get("status")
    if value is None:
        return None
    if not isinstance(value, str) or (allowed is not None and value not in allowed):
        raise ToolInputError(f"status must be one of {', '.join(allowed or ())}")
    return value


Runner = Callable[[AsyncSession, str, dict[str, Any]], Awaitable[Any]]


async def _get_positions(session: AsyncSession, user_id: str, args: dict[str, Any]) -> Any:
    status = _status(args, ("open", "closed")) or "open"
    limit = _int(args, "limit", 10, data.MAX_ROWS) or 10
    return await data.positions(session, user_id, status=status, symbol=_symbol(args), limit=limit)


async def _get_signals(session: AsyncSession, user_id: str, args: dict[str, Any]) -> Any:
    return await data.signals(
        session,
        user_id,
        symbol=_symbol(args),
        status=_status(args, SIGNAL_STATUSES),
        since=_since(args),
        limit=_int(args, "limit", 10, data.MAX_ROWS) or 10,
    )


async def _get_trades(session: AsyncSession, user_id: str, args: dict[str, Any]) -> Any:
    return await data.trades(
        session,
        user_id,
        symbol=_symbol(args),
        status=_status(args),
        since=_since(args),
        limit=_int(args, "limit", 10, data.MAX_ROWS) or 10,
    )


async def _get_risk_settings(session: AsyncSession, user_id: str, args: dict[str, Any]) -> Any:
    return await data.risk_settings(session, user_id)


_RUNNERS: dict[str, Runner] = {
    "get_positions": _get_positions,
    "get_signals": _get_signals,
    "get_trades": _get_trades,
    "get_risk_settings": _get_risk_settings,
}


class ToolBox:
    """The tools, bound to one user."""

    definitions = TOOLS

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], user_id: str) -> None:
        self._sessionmaker = sessionmaker
        self._user_id = user_id
        self.calls: list[str] = []

    async def run(self, name: str, args: object) -> ToolResult:
        self.calls.append(name)
        runner = _RUNNERS.get(name)
        if runner is None:
            return ToolResult(orjson.dumps({"error": f"unknown tool {name}"}).decode(), True)
        if not isinstance(args, dict) or set(args) - _PARAMETERS[name]:
            return ToolResult(orjson.dumps({"error": "unexpected tool input"}).decode(), True)
        try:
            async with self._sessionmaker() as session:
                result = await runner(session, self._user_id, args)
        except ToolInputError as exc:
            return ToolResult(orjson.dumps({"error": str(exc)}).decode(), True)
        return ToolResult(
            orjson.dumps({"items": result} if isinstance(result, list) else result).decode()
        )
