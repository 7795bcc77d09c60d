"""Alert bodies for the benchmarks: every one unique (its own `alert_id`), so none is answered
as a duplicate.

- `exit_mix`: the throughput mix, identical to bench/webhook.lua — long_exit and short_exit
  alternating over 12 symbols. With no position open the executor only looks and skips them,
  so the workers' share of the CPU stays small and the webhook path dominates.
- `EntryExitCycle`: the alert-to-order mix — per (user, symbol) key, a long_entry that really
  trades on the paper exchange (notional 200 USDT, stop loss 3 % below the synthetic market
  price of this second) and then the long_exit that closes it, so positions never pile up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from app.exchanges.price_feed import synthetic_price
from app.exchanges.symbols import paper_market

EXIT_SYMBOLS = (
    ("BTCUSDT", "65000"),
    ("ETHUSDT", "3500"),
    ("SOLUSDT", "150"),
    ("BNBUSDT", "600"),
    ("XRPUSDT", "0.6"),
    ("DOGEUSDT", "0.15"),
    ("ADAUSDT", "0.45"),
    ("AVAXUSDT", "35"),
    ("LINKUSDT", "15"),
    ("DOTUSDT", "7"),
    ("LTCUSDT", "80"),
    ("NEARUSDT", "5"),
)
ENTRY_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "LINKUSDT", "LTCUSDT")
ENTRY_NOTIONAL_USD = "200"
STOP_DISTANCE = Decimal("0.97")


def exit_mix(token: str, tag: str) -> Callable[[int], bytes]:
    """Body function for request i (1-based numbering, as in the Lua script)."""

    def body(i: int) -> bytes:
        n = i + 1
        symbol, price = EXIT_SYMBOLS[n % len(EXIT_SYMBOLS)]
        action = "long_exit" if n % 2 == 0 else "short_exit"
        return (
            f'{{"token":"{token}","action":"{action}","symbol":"{symbol}",'
            f'"price":"{price}","alert_id":"{tag}-{n}"}}'
        ).encode()

    return body


@dataclass(frozen=True)
class Key:
    token: str
    symbol: str


class EntryExitCycle:
    """Request i goes to key i mod K; a key's alerts alternate long_entry, long_exit."""

    def __init__(self, tokens: list[str], tag: str, price_seed: int = 0) -> None:
        self.keys = [Key(token, symbol) for token in tokens for symbol in ENTRY_SYMBOLS]
        self.tag = tag
        self.seed = price_seed
        self._prices: dict[tuple[str, int], Decimal] = {}

    def _price(self, symbol: str) -> Decimal:
        second = int(time.time())
        cached = self._prices.get((symbol, second))
        if cached is None:
            cached = synthetic_price(self.seed, symbol, second)
            self._prices[(symbol, second)] = cached
        return cached

    def __call__(self, i: int) -> bytes:
        key = self.keys[i % len(self.keys)]
        step = i // len(self.keys)
        alert: dict[str, str] = {
            "token": key.token,
            "symbol": key.symbol,
            "alert_id": f"{self.tag}-{i}",
        }
        price = self._price(key.symbol)
        alert["price"] = str(price)
        if step % 2 == 0:
            market = paper_market(key.symbol)
            assert market is not None
            alert["action"] = "long_entry"
            alert["stop_loss"] = str(market.floor_price(price * STOP_DISTANCE))
            alert["notional_usd"] = ENTRY_NOTIONAL_USD
        else:
            alert["action"] = "long_exit"
        return json.dumps(alert, separators=(",", ":")).encode()
