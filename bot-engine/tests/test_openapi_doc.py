"""`docs/api/openapi.yml` is the application's own OpenAPI document, regenerated whenever
the API changes: this test fails when the committed file is stale."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.cli.openapi import openapi_spec, openapi_yaml
from app.config import Settings

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "api" / "openapi.yml"


def test_the_committed_openapi_document_is_current(settings: Settings) -> None:
    assert DOCUMENT.exists(), "docs/api/openapi.yml is missing: run `make openapi`"
    committed = DOCUMENT.read_text()
    assert committed == openapi_yaml(settings), (
        "docs/api/openapi.yml is stale: run `make openapi` and commit the result"
    )


def test_the_document_describes_the_public_routes(settings: Settings) -> None:
    spec = yaml.safe_load(DOCUMENT.read_text())
    assert spec == openapi_spec(settings)
    paths = spec["paths"]
    for route in ("/api/webhooks/tradingview", "/api/logs", "/api/chat/stream", "/api/me",
                  "/api/signals", "/api/positions", "/ready"):  # fmt: skip
        assert route in paths, route
    body = paths["/api/logs"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "text/plain"}  # sendBeacon posts text/plain
    assert "/metrics" not in paths  # scraped by Prometheus, not part of the API
