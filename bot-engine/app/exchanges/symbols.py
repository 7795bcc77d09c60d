"""Canonical symbols ("BTCUSDT") and the markets the paper exchange lists.

TradingView sends `BTCUSDT`, `BINANCE:BTCUSDT` or `BTCUSDT.P`; ccxt names the linear perpetual
`BTC/USDT:USDT`. The engine speaks one form, base + quote in upper case without separators;
`canonical_symbol` turns the others into it.

The paper markets mirror Binance USDⓈ-M perpetuals' filters (step sizes, tick sizes,
minimum quantity and notional, maximum leverage) closely enough that an order the paper
exchange accepts is shaped like one a real exchange would accept.
"""

from __future__ import annotations

import re
from decimal import Decimal

from app.exchanges.base import QUOTE_ASSET, MarketInfo

# Longest first, so "BTCUSDC" is not read as base "BTCUSD" + quote "C".
KNOWN_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "USD")
_CANONICAL = re.compile(r"^[A-Z0-9]{2,30}$")
_PERPETUAL_SUFFIXES = (".P", ".PERP", "PERP")


def canonical_symbol(raw: str) -> str:
    """`BINANCE:BTCUSDT`, `btcusdt.p`, `BTC/USDT:USDT`, `BTC-USDT` → `BTCUSDT`.

    Raises ValueError for text that cannot be a symbol.
    """
    text = raw.strip().upper()
    if "/" in text:
        # ccxt: BASE/QUOTE or BASE/QUOTE:SETTLE.
        pair = text.split(":", 1)[0]
        base, _, quote = pair.partition("/")
        text = base + quote
    elif ":" in text:
        # TradingView: EXCHANGE:SYMBOL.
        text = text.rsplit(":", 1)[1]
    for suffix in _PERPETUAL_SUFFIXES:
        if text.endswith(suffix) and len(text) > len(suffix):
            text = text[: -len(suffix)]
            break
    text = text.replace("-", "").replace("_", "")
    if not _CANONICAL.match(text):
        raise ValueError(f"{raw!r} is not a trading symbol")
    return text


def split_symbol(symbol: str) -> tuple[str, str]:
    """("BTC", "USDT") for "BTCUSDT". Raises ValueError when no known quote asset ends it."""
    for quote in KNOWN_QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(
        f"{symbol!r} does not end with a known quote asset ({', '.join(KNOWN_QUOTES)})"
    )


def _market(
    symbol: str, amount_step: str, price_step: str, min_notional: str, max_leverage: int
) -> MarketInfo:
    base, quote = split_symbol(symbol)
    if quote != QUOTE_ASSET:
        raise ValueError(f"paper markets are quoted in {QUOTE_ASSET}, not {quote}")
    return MarketInfo(
        symbol=symbol,
        base=base,
        quote=quote,
        amount_step=Decimal(amount_step),
        price_step=Decimal(price_step),
        min_amount=Decimal(amount_step),
        min_notional=Decimal(min_notional),
        max_leverage=max_leverage,
    )


# Binance USDⓈ-M filters as of late 2026, rounded where they change often. The minimum
# quantity is one step; BTC orders need 100 USDT of notional, ETH 20, the others 5.
PAPER_MARKETS: dict[str, MarketInfo] = {
    market.symbol: market
    for market in (
        # symbol, amount step, price tick, min notional, max leverage
        _market("BTCUSDT", "0.001", "0.1", "100", 125),
        _market("ETHUSDT", "0.001", "0.01", "20", 125),
        _market("SOLUSDT", "1", "0.01", "5", 100),
        _market("BNBUSDT", "0.01", "0.01", "5", 75),
        _market("XRPUSDT", "0.1", "0.0001", "5", 75),
        _market("DOGEUSDT", "1", "0.00001", "5", 75),
        _market("ADAUSDT", "1", "0.0001", "5", 75),
        _market("AVAXUSDT", "1", "0.001", "5", 50),
        _market("LINKUSDT", "0.01", "0.001", "5", 50),
        _market("DOTUSDT", "0.1", "0.001", "5", 50),
        _market("LTCUSDT", "0.001", "0.01", "5", 75),
        _market("TRXUSDT", "1", "0.00001", "5", 50),
        _market("NEARUSDT", "1", "0.001", "5", 50),
        _market("1000PEPEUSDT", "1", "0.0000001", "5", 50),
    )
}


def paper_market(symbol: str) -> MarketInfo | None:
    """The paper exchange's market for a canonical symbol, or None when it lists none."""
    return PAPER_MARKETS.get(symbol)
