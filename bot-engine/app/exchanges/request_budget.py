"""Request weight budgets shared by every process that talks to an exchange.

Exchanges limit requests per API key *and* per source address: on Binance every tenant of the
engine shares the egress address's weight (2,400 per minute on USDⓈ-M futures), so one busy
user can get the whole address banned. Each request's weight (ccxt's per-endpoint cost) is
charged to two fixed windows in Redis — the egress address's and the API key's — before it is
sent; when either is spent the request waits for the next window, or fails with `RetryLater`
when that is too far away. A 429/418 answer bans the whole address until its `Retry-After`.

Budgets are kept below the exchange's own limits (`headroom`) so that requests the engine
does not count (another tool on the same key, clock drift between windows) do not tip it over.
When Redis is unreachable requests go ahead uncounted: the exchange's own limit still applies,
and a trade must not fail because the budget's bookkeeping is down.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.exchanges.errors import RetryLater
from app.logging.logger import get_logger

log = get_logger("exchanges")

_PREFIX = "jadetrade:xw"
# Charge both windows and read the address's ban in one round trip. Weights are counted in
# thousandths with INCRBY, not INCRBYFLOAT: Redis rewrites an INCRBYFLOAT's arguments for
# replication, and inside a script on Redis 6.2 (the embedded server) that corrupted the
# server's memory after another script had run a command with more arguments (an XADD): the
# server aborted, or hung in its crash handler.
_CHARGE = """
local spent_ip = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local spent_key = redis.call('INCRBY', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local banned = redis.call('PTTL', KEYS[3])
return {spent_ip, spent_key, banned}
"""
_UNITS = 1000  # weight is charged in thousandths


@dataclass(frozen=True)
class BudgetLimits:
    """Weight allowed per window, for the egress address and for one API key."""

    per_address: float
    per_key: float
    window_s: float = 60.0
    headroom: float = 0.8  # the fraction of each limit the engine lets itself use

    @property
    def address_budget(self) -> float:
        return self.per_address * self.headroom

    @property
    def key_budget(self) -> float:
        return self.per_key * self.headroom


class RequestBudget:
    """The weight budget of one API key on one exchange, behind one egress address."""

    def __init__(
        self,
        redis: Redis,
        *,
        exchange: str,
        egress: str,
        key_id: str,
        limits: BudgetLimits,
        max_wait_s: float = 5.0,
    ) -> None:
        self.redis = redis
        self.limits = limits
        self.max_wait_s = max_wait_s
        self.exchange = exchange
        self._address = f"{_PREFIX}:{exchange}:ip:{egress}"
        self._key = f"{_PREFIX}:{exchange}:key:{key_id}"
        self._ban = f"{_PREFIX}:{exchange}:ban:{egress}"
        self._script = redis.register_script(_CHARGE)

    async def acquire(self, cost: float) -> None:
        """Charge `cost` to this window, waiting for the next window when it is spent."""
        deadline = time.monotonic() + self.max_wait_s
        while True:
            window_ms = int(self.limits.window_s * 1000)
            now_ms = int(time.time() * 1000)
            window = now_ms // window_ms
            left_ms = (window + 1) * window_ms - now_ms
            try:
                spent_ip, spent_key, banned_ms = await self._script(
                    keys=[f"{self._address}:{window}", f"{self._key}:{window}", self._ban],
                    args=[round(cost * _UNITS), window_ms + 1000],
                )
            except RedisError as exc:
                log.warning("request_budget_unavailable", error_type=type(exc).__name__)
                return
            wait_ms: int | None = None
            if int(banned_ms) > 0:
                wait_ms = int(banned_ms)
            elif int(spent_ip) > self.limits.address_budget * _UNITS or (
                int(spent_key) > self.limits.key_budget * _UNITS
            ):
                wait_ms = left_ms
            if wait_ms is None:
                return
            wait_s = wait_ms / 1000
            if time.monotonic() + wait_s > deadline:
                raise RetryLater(
                    f"{self.exchange} request budget spent; next window in {wait_s:.1f} s",
                    code="request_budget_spent",
                    retry_after_s=wait_s,
                )
            log.info("request_budget_wait", exchange=self.exchange, wait_s=round(wait_s, 3))
            await asyncio.sleep(wait_s)

    async def ban_address(self, seconds: float) -> None:
        """The exchange answered 429/418: nobody behind this address asks for `seconds`."""
        try:
            await self.redis.set(self._ban, "1", px=max(1, int(seconds * 1000)))
        except RedisError as exc:
            log.warning("request_budget_unavailable", error_type=type(exc).__name__)
        log.warning("exchange_rate_limited", exchange=self.exchange, retry_after_s=seconds)
