"""Notifications: what a user is told about their trading, in the app and on Telegram.

The executor and the reconciliation describe what happened as a `Notice` and hand it to the
event publisher, which queues it on the `jadetrade:notifications` stream; trading never waits
for a notification. The notifier worker (`app.workers.notifier`) then, for each notice:
applies the user's `notify_on_*` settings, stores the `notifications` row (once per
`dedupe_key`, however often the notice is delivered), pushes it over the WebSocket, and queues
its Telegram delivery when the user linked a chat.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

NOTICE_STREAM = "jadetrade:notifications"
TELEGRAM_STREAM = "jadetrade:telegram"

# The risk setting that switches each type off; types not listed are always sent.
PREFERENCE = {
    "trade_executed": "notify_on_trade",
    "position_closed": "notify_on_trade",
    "take_profit_hit": "notify_on_trade",
    "signal_rejected": "notify_on_trade",
    "trade_failed": "notify_on_trade",
    "stop_loss_hit": "notify_on_stop_loss",
    "daily_loss_limit": "notify_on_daily_loss_limit",
}


@dataclass(frozen=True)
class Notice:
    user_id: str
    type: str
    title: str
    message: str
    dedupe_key: str
    related_type: str | None = None
    related_id: str | None = None

    def fields(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Notice:
        values = {k.decode(): v.decode() for k, v in fields.items()}
        return cls(**values)


def _amount(value: Any) -> str:
    """A quantity or price for people: plain notation, no trailing zeros."""
    if value is None:
        return "?"
    text = format(Decimal(value).normalize(), "f")
    return text


def _pnl(value: Any) -> str:
    amount = Decimal(value or 0).quantize(Decimal("0.01"))
    sign = "+" if amount > 0 else ""
    return f"{sign}{amount:f} USDT"


def signal_notice(
    user_id: str,
    signal_id: str,
    signal_type: str,
    symbol: str,
    status: str,
    reason: str | None,
    result: dict[str, Any],
    failed_check: str | None,
) -> Notice | None:
    """What to tell about a signal that finished; None when there is nothing to tell."""
    side = "long" if signal_type.startswith("long") else "short"
    base = {"user_id": user_id, "related_type": "signal", "related_id": signal_id,
            "dedupe_key": f"signal:{signal_id}:{status}"}  # fmt: skip
    if status == "executed" and "entry_order" in result:
        entry = result["entry_order"]
        parts = [
            f"{_amount(entry['filled_quantity'])} {symbol} at {_amount(entry['avg_fill_price'])}"
        ]
        for name, label in (("stop_loss_order", "stop"), ("take_profit_order", "target")):
            if name in result:
                parts.append(f"{label} {_amount(result[name]['stop_price'])}")
        message = ", ".join(parts)
        if reason:
            message += f". {reason}"
        return Notice(type="trade_executed", title=f"Opened {side} {symbol}", message=message,
                      **base)  # fmt: skip
    if status == "executed" and "close_order" in result:
        close = result["close_order"]
        return Notice(
            type="position_closed",
            title=f"Closed {side} {symbol}",
            message=f"{_amount(close['filled_quantity'])} at {_amount(close['avg_fill_price'])}, "
            f"realised PnL {_pnl(close['realized_pnl'])}",
            **base,
        )
    if status == "rejected" and failed_check == "daily_loss":
        message = f"New entries are refused until tomorrow (UTC). {reason or ''}".strip()
        return Notice(type="daily_loss_limit", title="Daily loss limit reached", message=message,
                      **base)  # fmt: skip
    if status == "rejected":
        return Notice(type="signal_rejected", title=f"{symbol} {signal_type} rejected",
                      message=reason or "rejected", **base)  # fmt: skip
    if status == "failed":
        return Notice(type="trade_failed", title=f"{symbol} {signal_type} failed",
                      message=reason or "failed", **base)  # fmt: skip
    return None


def protection_notice(user_id: str, trade: dict[str, Any], leg: str) -> Notice:
    """A stop loss (`leg` "s") or take profit ("t") that filled on the exchange."""
    stop = leg == "s"
    symbol = trade["symbol"]
    return Notice(
        user_id=user_id,
        type="stop_loss_hit" if stop else "take_profit_hit",
        title=f"{'Stop loss' if stop else 'Take profit'} hit on {symbol}",
        message=f"{_amount(trade['filled_quantity'])} {symbol} at "
        f"{_amount(trade['avg_fill_price'])}, realised PnL {_pnl(trade['realized_pnl'])}",
        related_type="trade",
        related_id=str(trade["id"]),
        dedupe_key=f"trade:{trade['client_order_id']}:filled",
    )


def daily_summary_notice(user_id: str, day: str, row: dict[str, Any]) -> Notice:
    message = (
        f"{row['signals']} signals ({row['rejected']} rejected), {row['fills']} fills, "
        f"realised PnL {_pnl(row['realized'])}, {row['open_positions']} positions open"
    )
    return Notice(user_id=user_id, type="daily_summary", title=f"Your trading on {day}",
                  message=message, dedupe_key=f"daily_summary:{day}")  # fmt: skip


def telegram_text(title: str, message: str) -> str:
    return f"{title}\n{message}"
