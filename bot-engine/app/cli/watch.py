"""`jadetrade watch`: follow a user's live events over the WebSocket API in a terminal, one
line per event — what a dashboard would show, without a dashboard."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson
from websockets.asyncio.client import connect

DEFAULT_TOPICS = ("signals", "trades", "positions")


def ws_url(base_url: str) -> str:
    """`http(s)://host` → `ws(s)://host/ws/connect`."""
    scheme, rest = base_url.rstrip("/").split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws/connect"


def describe(message: dict[str, Any]) -> str | None:
    """One line for an event; None for the protocol's own messages."""
    kind, data = message["type"], message.get("data") or {}
    clock = str(message.get("ts", ""))[11:23]
    if kind in ("signal_received", "signal_update"):
        reason = f"  ({data['status_reason']})" if data.get("status_reason") else ""
        what = f"{data['symbol']} {data['signal_type']} {data['status']}{reason}"
    elif kind in ("trade_executed", "trade_update"):
        price = data.get("avg_fill_price") or data.get("price") or "market"
        what = (f"{data['symbol']} {data['side']} {data['order_type']} {data['status']} "
                f"{data['filled_quantity']}/{data['quantity']} @ {price}")  # fmt: skip
    elif kind == "position_update":
        what = (f"{data['symbol']} {data['side']} {data['status']} {data['quantity']} "
                f"entry {data['entry_price']} mark {data['current_price']} "
                f"uPnL {data['unrealized_pnl']} PnL {data['realized_pnl']}")  # fmt: skip
    elif kind == "price_update":
        what = f"{data['exchange']} {data['symbol']} {data['price']}"
    elif kind == "notification":
        what = f"{data['title']}: {data['message']}"
    elif kind == "connected":
        what = f"as user {data['user_id']}, following {', '.join(data['topics'])}"
    elif kind in ("error", "resync"):
        what = str(data)
    else:
        return None
    return f"{clock}  {kind:<16} {what}"


async def watch(
    url: str,
    token: str,
    *,
    topics: Iterable[str] = DEFAULT_TOPICS,
    show: Callable[[str], None] = print,
    count: int | None = None,
) -> int:
    """Print events until the connection ends (or `count` events were shown); the close code."""
    shown = 0
    wanted = list(dict.fromkeys(topics))
    waiting = len(wanted)  # `connected` is shown once every subscription is answered
    hello: dict[str, Any] | None = None
    async with connect(url, subprotocols=["bearer", token]) as connection:  # type: ignore[list-item]
        for topic in wanted:
            await connection.send(orjson.dumps({"type": "subscribe", "topic": topic}).decode())
        async for raw in connection:
            message = orjson.loads(raw)
            kind = message["type"]
            if kind == "ping":
                await connection.send('{"type": "pong"}')
                continue
            if kind == "connected":
                hello = message
            elif kind == "subscribed" or (kind == "error" and "topic" in message["data"]):
                waiting -= 1
            if hello is not None and waiting <= 0:
                hello["data"]["topics"] = wanted
                show(str(describe(hello)))
                hello = None
            if kind in ("connected", "subscribed"):
                continue
            line = describe(message)
            if line is None:
                continue
            show(line)
            shown += 1
            if count is not None and shown >= count:
                break
    close = connection.protocol.close_rcvd
    return close.code if close else 1000
