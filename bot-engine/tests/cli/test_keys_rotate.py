"""`jadetrade keys rotate`, run as an operator runs it (real subprocesses, real database)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core import users
from app.core.credentials import Keyring, key_id, token_key_id
from app.core.exchange_keys import active_key, store_key
from app.core.pg import Pool
from app.exchanges.base import ApiCredentials, KeyPermissions
from tests.conftest import CapturedLogs, SecretsSeen

JADETRADE = str(Path(sys.executable).parent / "jadetrade")
TRADING = KeyPermissions(can_read=True, can_trade=True, can_withdraw=False)


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str

    def json(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one JSON object on stdout, got: {self.stdout!r}"
        parsed: dict[str, Any] = json.loads(lines[0])
        return parsed


Rotate = Callable[..., Run]


@pytest.fixture
def rotate(settings: Settings, clean_state: None, captured_logs: CapturedLogs) -> Rotate:
    """Runs `jadetrade keys rotate` with the given active and retired keys."""
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.DATABASE_URL.get_secret_value(),
        "REDIS_URL": settings.REDIS_URL.get_secret_value(),
        "LOCAL_DIR": str(settings.LOCAL_DIR),
    }

    def run(active: str, retired: list[str], *args: str) -> Run:
        result = subprocess.run(
            [JADETRADE, "keys", "rotate", *args],
            env={
                **env,
                "ENCRYPTION_KEY": active,
                "ENCRYPTION_KEYS_RETIRED": json.dumps(retired),
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        captured_logs.add(result.stderr)
        return Run(result.returncode, result.stdout)

    return run


@pytest.fixture
def new_key(secrets_seen: SecretsSeen) -> str:
    key = secrets.token_hex(32)
    secrets_seen.add(key)
    return key


async def _store_keys(
    pool: Pool, session: AsyncSession, keyring: Keyring, count: int, secrets_seen: SecretsSeen
) -> dict[str, ApiCredentials]:
    stored = {}
    for _ in range(count):
        user = await users.create_user(
            session, f"{uuid.uuid4().hex[:10]}@example.com", users.Tier.PRO
        )
        await session.commit()
        credentials = ApiCredentials(secrets.token_hex(32), secrets.token_urlsafe(48))
        secrets_seen.add(credentials.api_key, credentials.secret)
        await store_key(
            pool,
            keyring,
            user_id=user.id,
            exchange="binance",
            mode="live",
            label=None,
            credentials=credentials,
            permissions=TRADING,
        )
        stored[user.id] = credentials
    return stored


async def test_rotate_moves_every_key_to_the_new_key_and_then_does_nothing(
    rotate: Rotate,
    settings: Settings,
    new_key: str,
    pg_pool: Pool,
    session: AsyncSession,
    secrets_seen: SecretsSeen,
) -> None:
    old_key = settings.ENCRYPTION_KEY.get_secret_value()
    stored = await _store_keys(pg_pool, session, Keyring.from_settings(settings), 3, secrets_seen)

    first = rotate(new_key, [old_key], "--json")

    assert first.returncode == 0, first.stdout
    assert first.json() == {
        "active_key_id": key_id(bytes.fromhex(new_key)),
        "rotated": 3,
        "already_current": 0,
        "failed": [],
    }
    only_new = Keyring(bytes.fromhex(new_key))
    for user_id, credentials in stored.items():
        active = await active_key(pg_pool, only_new, user_id, "binance")
        assert active is not None and active.credentials == credentials
        assert token_key_id(
            await pg_pool.fetchval(
                "SELECT api_secret_encrypted FROM exchange_api_keys WHERE id = $1", active.id
            )
        ) == key_id(bytes.fromhex(new_key))

    second = rotate(new_key, [old_key], "--json")

    assert second.returncode == 0
    assert (second.json()["rotated"], second.json()["already_current"]) == (0, 3)
    # The retired key can go: the new key alone opens everything.
    human = rotate(new_key, [])
    assert human.returncode == 0
    assert human.stdout.strip() == (
        f"active key {key_id(bytes.fromhex(new_key))}: 0 rotated, 3 already current, 0 failed"
    )


async def test_rotate_names_the_keys_it_cannot_decrypt_and_exits_nonzero(
    rotate: Rotate,
    settings: Settings,
    new_key: str,
    pg_pool: Pool,
    session: AsyncSession,
    secrets_seen: SecretsSeen,
) -> None:
    old_key = settings.ENCRYPTION_KEY.get_secret_value()
    unknown = Keyring(secrets.token_bytes(32))
    await _store_keys(pg_pool, session, Keyring.from_settings(settings), 1, secrets_seen)
    [lost_user] = await _store_keys(pg_pool, session, unknown, 1, secrets_seen)
    lost_id = await pg_pool.fetchval(
        "SELECT id FROM exchange_api_keys WHERE user_id = $1", lost_user
    )

    result = rotate(new_key, [old_key], "--json")

    assert result.returncode == 1
    report = result.json()
    assert report["rotated"] == 1
    assert report["failed"] == [
        {
            "id": str(lost_id),
            "field": "api_key",
            "reason": f"encrypted under key {unknown.active_kid}, which is not configured",
        }
    ]
    human = rotate(new_key, [old_key])
    assert human.returncode == 1
    assert f"failed {lost_id} (api_key): encrypted under key {unknown.active_kid}" in human.stdout


def test_rotate_refuses_a_retired_key_that_is_the_active_one(rotate: Rotate, new_key: str) -> None:
    result = rotate(new_key, [new_key], "--json")

    assert result.returncode == 2
    error = result.json()["error"]
    assert error["code"] == "configuration_error"
    assert "ENCRYPTION_KEYS_RETIRED entry 1 is the active ENCRYPTION_KEY" in error["message"]
    assert new_key not in result.stdout
