"""`GET /metrics`: the Prometheus series the engine exposes, with low-cardinality labels."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from app.workers import queue
from tests.conftest import Factory

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return samples(response.text)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a counter grew (the app, and so its registry, lives for the whole session)."""
    key = (name, tuple(sorted(labels.items())))
    return after[key] - before.get(key, 0.0)


@pytest.mark.usefixtures("shipped_knowledge")
async def test_requests_webhooks_queue_and_chat_are_measured(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    before = await scrape(client)
    user = await factory.user("pro")
    token = await factory.webhook_token(user)
    alert = {"token": token, "action": "long_entry", "symbol": "BTCUSDT", "qty": "0.001"}
    assert (await client.post("/api/webhooks/tradingview", json=alert)).status_code == 200
    bad = await client.post("/api/webhooks/tradingview", json={**alert, "action": "hold"})
    assert bad.status_code == 422
    signal_id = (await client.get("/api/signals", headers=factory.auth(user))).json()["items"][0][
        "id"
    ]
    assert (
        await client.get(f"/api/signals/{signal_id}", headers=factory.auth(user))
    ).status_code == 200
    answer = await client.post(
        "/api/chat/", headers=factory.auth(user), json={"message": "what is paper trading?"}
    )
    assert answer.status_code == 200

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)

    def value(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted(labels.items())))]

    def delta(name: str, **labels: str) -> float:
        return grew(before, found, name, **labels)

    assert delta("jadetrade_webhook_duration_seconds_count", status="200") == 1
    assert delta("jadetrade_webhook_duration_seconds_count", status="422") == 1
    # A route is its template, so ids never become label values.
    assert (
        delta(
            "jadetrade_http_request_duration_seconds_count",
            route="/api/signals/{signal_id}",
            method="GET",
            status="200",
        )
        == 1
    )
    assert signal_id not in response.text
    assert value("jadetrade_signal_queue_length") == 1  # the accepted alert; no worker here
    assert value("jadetrade_signal_queue_lag") == 1
    assert value("jadetrade_websocket_connections") == 0
    assert (
        delta("jadetrade_chat_answer_duration_seconds_count", mode="offline", outcome="completed")
        == 1
    )
    assert delta("jadetrade_chat_tokens_total", mode="offline", kind="output") == 0
    assert user.id not in response.text and token not in response.text


async def test_an_unknown_path_shares_one_label(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    for n in range(3):
        assert (await client.get(f"/nothing/here/{n}")).status_code == 404
    found = await scrape(client)
    unmatched = [k for k in found if k[0] == "jadetrade_http_request_duration_seconds_count"
                 and ("route", "unmatched") in k[1]]  # fmt: skip
    assert len(unmatched) == 1
    assert found[unmatched[0]] - before.get(unmatched[0], 0.0) == 3
    assert not any("/nothing/here" in str(key) for key in found)


async def test_queue_gauges_follow_the_consumer_group(
    client: httpx.AsyncClient, factory: Factory, app: FastAPI
) -> None:
    user = await factory.user("pro")
    token = await factory.webhook_token(user)
    for n in range(3):
        alert = {"token": token, "action": "long_entry", "symbol": "BTCUSDT", "qty": f"0.00{n + 1}"}
        assert (await client.post("/api/webhooks/tradingview", json=alert)).status_code == 200
    redis = app.state.redis
    await queue.ensure_group(redis)
    # One worker takes one entry and has not acknowledged it yet.
    await redis.xreadgroup(queue.GROUP, "worker-1", {queue.STREAM: ">"}, count=1)
    found = samples((await client.get("/metrics")).text)
    assert found[("jadetrade_signal_queue_length", ())] == 3
    assert found[("jadetrade_signal_queue_pending", ())] == 1
    assert found[("jadetrade_signal_queue_lag", ())] == 2
