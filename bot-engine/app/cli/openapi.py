"""The engine's OpenAPI document as YAML (`jadetrade openapi`, `make openapi`), the file kept
at `docs/api/openapi.yml` for frontend developers and API clients. A test fails when the
file no longer matches the app, so the document cannot drift from the code."""

from __future__ import annotations

from typing import Any

import yaml

from app.config import Settings

HEADER = (
    "# The JadeTrade bot engine's HTTP API, generated from the application.\n"
    "# Regenerate with `make openapi`; a test fails when this file is stale.\n"
)


def openapi_spec(settings: Settings) -> dict[str, Any]:
    from app.main import create_app

    spec: dict[str, Any] = create_app(settings).openapi()
    return spec


def openapi_yaml(settings: Settings) -> str:
    body = yaml.safe_dump(openapi_spec(settings), sort_keys=False, allow_unicode=True, width=100)
    return HEADER + body
