"""The shipped dashboards and alert rules against the engine itself: every metric a panel or
rule queries is one the engine's `/metrics` exposes. (Every Loki selector is checked against
the log lines the whole suite captured, at the end of the session: see tests/conftest.py.)"""

from __future__ import annotations

import httpx

from tests.support.observability import (
    check_metric_names,
    exposed_metric_families,
    stack_queries,
)


async def test_every_queried_metric_is_exposed(client: httpx.AsyncClient) -> None:
    scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    exposed = exposed_metric_families(scraped.text)
    assert "jadetrade_alert_to_order_seconds" in exposed
    queries = [q for q in stack_queries() if q.language == "promql"]
    assert len(queries) >= 10  # the dashboards and metric alerts are all read
    assert check_metric_names(queries, exposed) == []
