"""The direct push of log lines to Loki, against a local server speaking Loki's push API:
what is sent (streams by low-cardinality labels, ids as structured metadata), and that a
slow, failing or absent Loki costs counted drops — never a slow or failed request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import structlog

from app.embedded.ports import free_port
from app.logging.logger import configure_logging, get_logger
from app.logging.loki import LABELS, LokiHandler, LokiTarget, push_body
from tests.api.test_metrics import samples
from tests.conftest import CapturedLogs, Factory
from tests.support.loki_server import LokiServer, PushRefused, validate_push
from tests.support.pipeline import eventually


@pytest.fixture
def loki() -> Iterator[LokiServer]:
    with LokiServer() as server:
        yield server


def shipping(target: LokiTarget, captured: CapturedLogs) -> LokiHandler:
    """Log as the CLI does with LOKI_URL set: stdout lines plus the push handler."""
    handler = configure_logging("DEBUG", "json", stream=captured, env="test", loki=target)
    assert handler is not None
    return handler


@pytest.fixture
def restore_logging(captured_logs: CapturedLogs) -> Iterator[None]:
    yield
    configure_logging("DEBUG", "json", stream=captured_logs, env="test")


@pytest.mark.usefixtures("restore_logging")
def test_lines_arrive_as_streams_of_low_cardinality_labels(
    loki: LokiServer, captured_logs: CapturedLogs
) -> None:
    handler = shipping(LokiTarget(url=loki.url, flush_interval_s=0.05), captured_logs)
    structlog.contextvars.bind_contextvars(request_id="req-loki-1", user_id="user-loki-1")
    try:
        get_logger("trade").info("order_placed", exchange="paper", signal_id="sig-1", qty="0.5")
        get_logger("risk").warning("risk_rejected", check="max_open_positions")
    finally:
        structlog.contextvars.clear_contextvars()
    assert handler.drain(5.0)

    entries = {e.fields["event"]: e for e in loki.entries}
    order, risk = entries["order_placed"], entries["risk_rejected"]
    assert order.labels == {"env": "test", "service": "bot", "component": "trade",
                            "level": "info", "exchange": "paper"}  # fmt: skip
    assert risk.labels == {"env": "test", "service": "bot", "component": "risk",
                           "level": "warning"}  # fmt: skip
    # Ids are structured metadata (and stay in the line), never labels.
    assert order.metadata == {"request_id": "req-loki-1", "user_id": "user-loki-1",
                              "signal_id": "sig-1"}  # fmt: skip
    assert order.fields["qty"] == "0.5" and order.fields["user_id"] == "user-loki-1"
    assert all(set(e.labels) <= set(LABELS) for e in loki.entries)
    shipped, dropped = handler.counts()
    assert shipped == len(loki.entries) and dropped == {"buffer_full": 0, "push_failed": 0}


def test_the_push_body_is_what_loki_accepts() -> None:
    lines = [(1_700_000_000_000_000_001, '{"service":"bot","component":"api","level":"info",'
              '"env":"test","event":"x","user_id":"u1"}'),
             (1_700_000_000_000_000_002, "not json at all")]  # fmt: skip
    import orjson

    entries = validate_push(orjson.loads(push_body(lines)))
    assert [e.ns for e in entries] == [1_700_000_000_000_000_001, 1_700_000_000_000_000_002]
    assert entries[0].metadata == {"user_id": "u1"}
    assert entries[1].labels == {"service": "unknown"}
    with pytest.raises(PushRefused, match="invalid label name"):
        validate_push({"streams": [{"stream": {"bad-name": "x"}, "values": []}]})


@pytest.mark.usefixtures("restore_logging")
async def test_requests_are_served_while_loki_hangs_and_drops_are_counted(
    loki: LokiServer, client: httpx.AsyncClient, captured_logs: CapturedLogs
) -> None:
    loki.hold()  # every push now waits: a Loki that accepts connections and never answers
    handler = shipping(
        LokiTarget(url=loki.url, flush_interval_s=0.05, buffer_lines=20, timeout_s=30),
        captured_logs,
    )
    answers = await asyncio.gather(*(client.get("/health") for _ in range(60)))
    assert [a.status_code for a in answers] == [200] * 60
    # Each request logged a line; the buffer held 20 of them and dropped the rest.
    scraped = samples((await client.get("/metrics")).text)
    dropped = scraped[("jadetrade_log_lines_dropped_total", (("reason", "buffer_full"),))]
    assert dropped >= 20
    loki.release()
    assert handler.drain(10.0)
    assert any(e.fields["event"] == "http_request" for e in loki.entries)


@pytest.mark.usefixtures("restore_logging")
async def test_requests_are_served_with_loki_stopped(
    client: httpx.AsyncClient, factory: Factory, captured_logs: CapturedLogs
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: every push is refused
    handler = shipping(LokiTarget(url=nowhere, flush_interval_s=0.05, timeout_s=0.5),
                       captured_logs)  # fmt: skip
    user = await factory.user("pro")
    token = await factory.webhook_token(user)
    alert = {"token": token, "action": "long_entry", "symbol": "BTCUSDT", "qty": "0.001"}
    accepted = await client.post("/api/webhooks/tradingview", json=alert)
    assert accepted.status_code == 200, accepted.text
    assert (await client.get("/api/me", headers=factory.auth(user))).status_code == 200

    async def failed() -> int:
        return handler.counts()[1]["push_failed"]

    assert await eventually(failed, lambda n: n > 0, what="failed pushes") > 0
    scraped = samples((await client.get("/metrics")).text)
    assert scraped[("jadetrade_log_lines_dropped_total", (("reason", "push_failed"),))] > 0
