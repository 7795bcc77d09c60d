"""The built dashboard served at `/`: files, page paths falling back to `index.html`, caching and
security headers, and the engine's own paths kept out of the fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.conftest import http_client, make_settings, running_app

INDEX = "<!doctype html><title>JadeTrade</title><div id=root></div>"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log('dashboard')")
    (tmp_path.parent / "secret.txt").write_text("outside the dashboard")
    return tmp_path


@pytest.fixture
async def web(settings: Settings, dist: Path) -> AsyncIterator[httpx.AsyncClient]:
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    served = make_settings(
        settings.DATABASE_URL.get_secret_value(),
        settings.REDIS_URL.get_secret_value(),
        settings.LOCAL_DIR,
        WEB_DIST_DIR=dist,
    )
    async with running_app(served) as app, http_client(app) as client:
        yield client


async def test_the_dashboard_is_served_at_the_root(web: httpx.AsyncClient) -> None:
    response = await web.get("/")
    assert response.status_code == 200
    assert response.text == INDEX
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp


async def test_page_paths_fall_back_to_the_dashboard(web: httpx.AsyncClient) -> None:
    for path in ("/signals", "/risk", "/exchange-keys", "/some/deep/page"):
        response = await web.get(path)
        assert (response.status_code, response.text) == (200, INDEX), path


async def test_hashed_assets_are_cached_for_good(web: httpx.AsyncClient) -> None:
    response = await web.get("/assets/index-abc123.js")
    assert response.status_code == 200
    assert "immutable" in response.headers["cache-control"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_missing_files_and_engine_paths_are_json_404s(web: httpx.AsyncClient) -> None:
    for path in ("/assets/missing.js", "/api/nothing-here", "/ws/elsewhere", "/favicon.ico"):
        response = await web.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found", path


async def test_no_file_outside_the_dashboard_is_reachable(web: httpx.AsyncClient) -> None:
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt"):
        response = await web.get(path)
        assert "outside the dashboard" not in response.text, path


async def test_the_api_still_answers_beside_it(web: httpx.AsyncClient) -> None:
    assert (await web.get("/health")).status_code == 200
    assert (await web.get("/api/me")).status_code == 401
    assert (await web.get("/api/auth/options")).status_code == 200


async def test_without_a_build_the_root_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 404
    assert (await client.get("/health")).status_code == 200
