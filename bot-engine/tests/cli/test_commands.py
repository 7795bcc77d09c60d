"""The `jadetrade` administrative commands, run as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

from app.config import Settings
from app.core.database import ensure_database, to_libpq_url
from app.core.migrations import upgrade_to_head
from tests.conftest import CapturedLogs, SecretsSeen
from tests.support.openai_server import OpenAIServer

if TYPE_CHECKING:
    from tests.conftest import TestServers

JADETRADE = str(Path(sys.executable).parent / "jadetrade")


@pytest.fixture
def cli(
    settings: Settings, clean_state: None, captured_logs: CapturedLogs, secrets_seen: SecretsSeen
) -> Any:
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.DATABASE_URL.get_secret_value(),
        "REDIS_URL": settings.REDIS_URL.get_secret_value(),
        "LOCAL_DIR": str(settings.LOCAL_DIR),
        "PUBLIC_URL": settings.public_url,
        "ENCRYPTION_KEY": settings.ENCRYPTION_KEY.get_secret_value(),
    }

    def run(*args: str, expect: int = 0, **extra_env: str) -> dict[str, Any]:
        result = subprocess.run(
            [JADETRADE, *args, "--json"],
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        captured_logs.add(result.stderr)
        assert result.returncode == expect, (result.stdout, result.stderr[-2000:])
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one JSON object on stdout, got: {result.stdout!r}"
        parsed: dict[str, Any] = json.loads(lines[0])
        for key in ("token", "access_token"):
            if key in parsed:
                secrets_seen.add(parsed[key])
        return parsed

    return run


def test_db_upgrade_reports_the_revision(cli: Any) -> None:
    assert cli("db", "upgrade")["revision"]


async def test_user_token_and_dev_token_round_trip(cli: Any, client: httpx.AsyncClient) -> None:
    created = cli("users", "create", "--email", "Trader@Example.com", "--tier", "pro")
    user_id = created["id"]
    assert created["email"] == "trader@example.com"

    issued = cli("tokens", "issue", user_id, "--name", "eth-strategy")
    assert issued["token"].startswith("jt_wh_")

    access = cli("auth", "dev-token", user_id)["access_token"]
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 200
    assert me.json()["id"] == user_id

    alert = {"token": issued["token"], "action": "short_exit", "symbol": "ETHUSDT"}
    accepted = await client.post("/api/webhooks/tradingview", json=alert)
    assert accepted.status_code == 200
    assert accepted.json()["status"] == "queued"

    revoked = cli("tokens", "revoke", issued["id"])
    assert revoked["id"] == issued["id"]
    assert (await client.post("/api/webhooks/tradingview", json=alert)).status_code == 401


def test_errors_are_json_with_nonzero_exit(cli: Any) -> None:
    cli("users", "create", "--email", "dup@example.com")
    duplicate = cli("users", "create", "--email", "dup@example.com", expect=1)
    assert duplicate["error"]["code"] == "email_taken"
    bad_tier = cli("users", "create", "--email", "x@example.com", "--tier", "gold", expect=2)
    assert bad_tier["error"]["code"] == "validation_error"
    missing = cli("tokens", "issue", "no-such-user", expect=1)
    assert missing["error"]["code"] == "user_not_found"
    unknown = cli("tokens", "revoke", "00000000-0000-0000-0000-000000000000", expect=1)
    assert unknown["error"]["code"] == "token_not_found"


def test_dev_token_is_refused_in_production(cli: Any) -> None:
    refused = cli(
        "auth",
        "dev-token",
        "anyone",
        expect=2,
        ENVIRONMENT="production",
        AUTH_MODE="cognito",
        ENCRYPTION_KEY="ab" * 32,
        COGNITO_USER_POOL_ID="eu-west-1_Real",
        COGNITO_APP_CLIENT_ID="real-client",
        DATABASE_URL="postgresql://engine:pw-real@db.internal/jt",
        REDIS_URL="redis://:pw-real@cache.internal/0",
    )
    assert refused["error"]["code"] == "dev_tokens_disabled"


@pytest.fixture
async def kb_database(servers: TestServers) -> AsyncIterator[str]:
    """A migrated database of its own: `kb index` replaces the indexed corpus."""
    name = f"test_cli_kb_{uuid.uuid4().hex[:10]}"
    url = servers.database_url(name)
    await ensure_database(url)
    await upgrade_to_head(url)
    yield url
    admin = await asyncpg.connect(to_libpq_url(servers.pg_admin_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def test_kb_index_is_incremental_and_refuses_a_provider_change_without_reindex(
    cli: Any, kb_database: str, tmp_path: Path, secrets_seen: SecretsSeen
) -> None:
    body = " ".join(["Leverage multiplies the position a margin deposit controls."] * 10)
    (tmp_path / "leverage.md").write_text(f"# Leverage\n\n## How it works\n\n{body}\n")
    (tmp_path / "fees.md").write_text(
        "# Fees\n\n## Taker fees\n\n" + " ".join(["Every fill pays a taker fee."] * 10)
    )
    first = cli("kb", "index", str(tmp_path), DATABASE_URL=kb_database)
    assert (first["documents"], first["added"], first["unchanged"]) == (2, 2, 0)
    again = cli("kb", "index", str(tmp_path), DATABASE_URL=kb_database)
    assert (again["added"], again["unchanged"]) == (0, 2)
    found = cli("kb", "search", "what does leverage do to my position", DATABASE_URL=kb_database)
    assert found["passages"][0]["document"] == "leverage.md"

    with OpenAIServer() as server:
        secrets_seen.add(server.api_key)
        remote = {
            "DATABASE_URL": kb_database,
            "OPENAI_API_KEY": server.api_key,
            "OPENAI_BASE_URL": server.url,
        }
        refused = cli("kb", "index", str(tmp_path), expect=1, **remote)
        assert refused["error"]["code"] == "knowledge_base_model_mismatch"
        assert "--reindex" in refused["error"]["message"]
        rebuilt = cli("kb", "index", str(tmp_path), "--reindex", **remote)
        assert rebuilt["added"] == 2
    missing = cli("kb", "index", str(tmp_path / "nope"), expect=2, DATABASE_URL=kb_database)
    assert missing["error"]["code"] == "usage"
