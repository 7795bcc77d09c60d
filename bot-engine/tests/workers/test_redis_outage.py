"""Redis stops while alerts arrive: alerts are still answered 2xx (they are committed in
PostgreSQL), and every one of them is executed once Redis is back — even though the restarted
Redis lost the stream and its consumer group."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.config import Settings
from app.embedded import redis as embedded_redis
from app.embedded.ports import free_port
from app.exchanges.price_feed import synthetic_price
from app.models.signal import TERMINAL_STATUSES
from tests.conftest import Factory, SecretsSeen, http_client, make_settings, running_app

URL = "/api/webhooks/tradingview"


def _entry(token: str, symbol: str, n: int) -> dict[str, Any]:
    stop = synthetic_price(0, symbol, int(time.time())) * Decimal("0.88")
    return {
        "token": token,
        "action": "long_entry",
        "symbol": symbol,
        "notional_usd": "400",
        "stop_loss": str(stop.quantize(Decimal("0.01"))),
        "alert_id": f"outage-{n}",
    }


async def test_alerts_survive_a_redis_restart(
    settings: Settings, clean_state: None, secrets_seen: SecretsSeen, tmp_path: Path
) -> None:
    assert settings.DATABASE_URL is not None
    port = free_port()
    embedded_redis.start(tmp_path / "redis", port, persistent=False)
    own = make_settings(
        settings.DATABASE_URL.get_secret_value(), f"redis://127.0.0.1:{port}/0", settings.LOCAL_DIR
    )
    try:
        async with running_app(own, run_workers=True) as app, http_client(app) as client:
            factory = Factory(app, secrets_seen)
            user = await factory.user()
            token, auth = await factory.webhook_token(user), factory.auth(user)
            symbols = ["ETHUSDT", "SOLUSDT", "BNBUSDT"]
            before = [await client.post(URL, json=_entry(token, symbols[0], 0))]
            embedded_redis.stop(tmp_path / "redis")
            during = [await client.post(URL, json=_entry(token, symbols[i % 3], i)) for i in (1, 2)]
            assert all(r.status_code == 200 for r in before + during), [r.text for r in during]
            assert all(r.json()["status"] == "queued" for r in during)

            embedded_redis.start(tmp_path / "redis", port, persistent=False)  # empty: no stream
            ids = [r.json()["signal_id"] for r in before + during]
            deadline = time.monotonic() + 45
            while True:
                states = [
                    (await client.get(f"/api/signals/{i}", headers=auth)).json()["status"]
                    for i in ids
                ]
                if all(s in TERMINAL_STATUSES for s in states):
                    break
                assert time.monotonic() < deadline, states
                await asyncio.sleep(0.2)
            reasons = [
                (await client.get(f"/api/signals/{i}", headers=auth)).json()["status_reason"]
                for i in ids
            ]
            assert states == ["executed"] * 3, reasons
            opened = (await client.get("/api/positions?status=open", headers=auth)).json()
            assert sorted(p["symbol"] for p in opened["items"]) == sorted(symbols[:3])
    finally:
        embedded_redis.stop(tmp_path / "redis")
