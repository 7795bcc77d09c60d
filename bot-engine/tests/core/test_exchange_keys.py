"""Stored exchange keys on real PostgreSQL: encrypted storage, masked listings, one active
key per exchange, the audit trail, and rotation to a new encryption key."""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import users
from app.core.credentials import (
    AuthenticationFailed,
    CipherContext,
    Keyring,
    UnknownKeyVersion,
    key_id,
    token_key_id,
)
from app.core.database import ensure_database, to_libpq_url
from app.core.errors import NotFound, ValidationFailed
from app.core.exchange_keys import (
    KeyMode,
    RotationFailure,
    active_key,
    deactivate_key,
    list_keys,
    mark_invalid,
    mark_used,
    rotate_keys,
    store_key,
)
from app.core.migrations import downgrade_to, upgrade_to_head
from app.core.pg import Pool
from app.exchanges.base import ApiCredentials, KeyPermissions
from tests.conftest import SecretsSeen

if TYPE_CHECKING:
    from tests.conftest import TestServers

KEY_A, KEY_B, KEY_C = (os.urandom(32) for _ in range(3))
TRADING = KeyPermissions(can_read=True, can_trade=True, can_withdraw=False)
READ_ONLY = KeyPermissions(can_read=True, can_trade=False, can_withdraw=False)
CIPHER_COLUMNS = ("api_key_encrypted", "api_secret_encrypted", "passphrase_encrypted")

MakeUser = Callable[[], Awaitable[str]]
MakeCredentials = Callable[..., ApiCredentials]


@pytest.fixture
def make_user(session: AsyncSession) -> MakeUser:
    async def make() -> str:
        user = await users.create_user(
            session, f"{uuid.uuid4().hex[:10]}@example.com", users.Tier.PRO
        )
        await session.commit()
        return user.id

    return make


@pytest.fixture
def make_credentials(secrets_seen: SecretsSeen) -> MakeCredentials:
    """Fresh credentials, registered as secrets no log line may contain."""

    def make(*, passphrase: bool = False) -> ApiCredentials:
        credentials = ApiCredentials(
            api_key=secrets.token_hex(32),
            secret=secrets.token_urlsafe(48),
            passphrase=secrets.token_urlsafe(12) if passphrase else None,
        )
        secrets_seen.add(credentials.api_key, credentials.secret, credentials.passphrase or "")
        return credentials

    return make


async def _store(
    pool: Pool,
    keyring: Keyring,
    user_id: str,
    credentials: ApiCredentials,
    *,
    exchange: str = "binance",
    label: str | None = "main",
    mode: str = "live",
    permissions: KeyPermissions = TRADING,
) -> uuid.UUID:
    stored = await store_key(
        pool,
        keyring,
        user_id=user_id,
        exchange=exchange,
        mode=mode,
        label=label,
        credentials=credentials,
        permissions=permissions,
        actor_ip="203.0.113.7",
    )
    return stored.id


async def _row(pool: Pool, key: uuid.UUID) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM exchange_api_keys WHERE id = $1", key)
    assert row is not None
    return row


async def _audit(pool: Pool, user_id: str | None = None) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT *, row_to_json(a)::text AS as_text FROM audit_log a"
            " WHERE user_id IS NOT DISTINCT FROM $1 ORDER BY created_at, action",
            user_id,
        )
    )


def _secret_parts(credentials: ApiCredentials) -> list[str]:
    return [v for v in (credentials.api_key, credentials.secret, credentials.passphrase) if v]


# ----------------------------------------------------------------------------- storage
async def test_a_stored_key_is_listed_masked_and_decrypted_only_to_trade(
    pg_pool: Pool, make_user: MakeUser, make_credentials: MakeCredentials
) -> None:
    keyring = Keyring(KEY_A)
    user_id = await make_user()
    credentials = make_credentials(passphrase=True)

    stored = await store_key(
        pg_pool,
        keyring,
        user_id=user_id,
        exchange="bybit",
        mode=KeyMode.DEMO,
        label="demo account",
        credentials=credentials,
        permissions=READ_ONLY,
    )

    [listed] = await list_keys(pg_pool, user_id)
    assert listed == stored
    assert listed.exchange == "bybit" and listed.mode is KeyMode.DEMO
    assert listed.label == "demo account"
    assert listed.hint == "****" + credentials.api_key[-4:]
    assert listed.permissions == READ_ONLY
    assert listed.is_active and listed.is_valid
    assert listed.last_used_at is None
    assert listed.last_validated_at is not None  # validated by the exchange before storing
    shown = repr(listed) + str(listed) + "".join(str(v) for v in vars(listed).values())
    for part in _secret_parts(credentials):
        assert part not in shown

    row = await _row(pg_pool, stored.id)
    for column in CIPHER_COLUMNS:
        assert row[column].startswith(f"jt1.{key_id(KEY_A)}.")
        assert not any(part in row[column] for part in _secret_parts(credentials))
    assert row["is_read_only"] and not row["can_trade"]

    active = await active_key(pg_pool, keyring, user_id, "bybit")
    assert active is not None
    assert active.credentials == credentials
    assert (active.id, active.mode, active.is_valid) == (stored.id, KeyMode.DEMO, True)
    assert credentials.secret not in repr(active)
    assert await active_key(pg_pool, keyring, user_id, "binance") is None


async def test_a_new_key_replaces_the_active_one_of_its_exchange_only(
    pg_pool: Pool, make_user: MakeUser, make_credentials: MakeCredentials
) -> None:
    keyring = Keyring(KEY_A)
    user_id = await make_user()
    first, second, other = make_credentials(), make_credentials(), make_credentials()
    first_id = await _store(pg_pool, keyring, user_id, first)
    other_id = await _store(pg_pool, keyring, user_id, other, exchange="bybit")

    # The replacement keeps the label of the key it replaces.
    second_id = await _store(pg_pool, keyring, user_id, second, label="main")

    listed = {key.id: key for key in await list_keys(pg_pool, user_id)}
    assert set(listed) == {first_id, second_id, other_id}
    assert [k.is_active for k in (listed[first_id], listed[second_id], listed[other_id])] == [
        False,
        True,
        True,
    ]
    active = await active_key(pg_pool, keyring, user_id, "binance")
    assert active is not None and active.credentials == second
    bybit = await active_key(pg_pool, keyring, user_id, "bybit")
    assert bybit is not None and bybit.credentials == other

    trail = await _audit(pg_pool, user_id)
    assert [(r["action"], r["resource_id"]) for r in trail if r["action"].endswith("create")] == [
        ("exchange_key.create", str(first_id)),
        ("exchange_key.create", str(other_id)),
        ("exchange_key.create", str(second_id)),
    ]
    [replaced] = [r for r in trail if r["action"] == "exchange_key.deactivate"]
    assert replaced["resource_id"] == str(first_id)
    assert replaced["new_value"] == {"is_active": False, "replaced_by": str(second_id)}
    assert str(replaced["ip_address"]) == "203.0.113.7"
    created = next(r for r in trail if r["resource_id"] == str(second_id))
    assert created["new_value"]["replaces"] == [str(first_id)]
    assert created["new_value"]["mode"] == "live"
    ciphertexts = [
        (await _row(pg_pool, key))[column]
        for key in (first_id, second_id, other_id)
        for column in CIPHER_COLUMNS[:2]
    ]
    everything = "\n".join(r["as_text"] for r in trail)
    for part in [*_secret_parts(first), *_secret_parts(second), *ciphertexts]:
        assert part not in everything


async def test_concurrent_stores_leave_exactly_one_active_key(
    pg_pool: Pool, make_user: MakeUser, make_credentials: MakeCredentials
) -> None:
    keyring = Keyring(KEY_A)
    user_id = await make_user()

    ids = await asyncio.gather(
        *(_store(pg_pool, keyring, user_id, make_credentials(), label=None) for _ in range(5))
    )

    listed = await list_keys(pg_pool, user_id)
    assert {key.id for key in listed} == set(ids)
    assert sum(key.is_active for key in listed) == 1


async def test_deactivating_a_key_is_audited_and_scoped_to_its_owner(
    pg_pool: Pool, make_user: MakeUser, make_credentials: MakeCredentials
) -> None:
    keyring = Keyring(KEY_A)
    owner, stranger = await make_user(), await make_user()
    key = await _store(pg_pool, keyring, owner, make_credentials())

    assert not await deactivate_key(pg_pool, user_id=stranger, key_id=key)
    assert await active_key(pg_pool, keyring, owner, "binance") is not None

    assert await deactivate_key(pg_pool, user_id=owner, key_id=key, actor_ip="2001:db8::1")
    assert not await deactivate_key(pg_pool, user_id=owner, key_id=key)  # already inactive

    assert await active_key(pg_pool, keyring, owner, "binance") is None
    [listed] = await list_keys(pg_pool, owner)
    assert not listed.is_active
    [audited] = [r for r in await _audit(pg_pool, owner) if r["action"] != "exchange_key.create"]
    assert audited["action"] == "exchange_key.deactivate"
    assert audited["resource_id"] == str(key)
    assert str(audited["ip_address"]) == "2001:db8::1"
    assert await _audit(pg_pool, stranger) == []


async def test_a_key_allowed_to_withdraw_is_refused_here_and_by_the_database(
    pg_pool: Pool, make_user: MakeUser, make_credentials: MakeCredentials
) -> None:
    user_id = await make_user()
    withdrawing = KeyPermissions(can_read=True, can_trade=True, can_withdraw=True)

    with pytest.raises(ValidationFailed) as caught:
        await _store(pg_pool, Keyring(KEY_A), user_id, make_credentials(), permissions=withdrawing)

    assert caught.value.code == "withdrawal_permission"
    assert await list_keys(pg_pool, user_id) == []
    assert await _audit(pg_pool, user_id) == []
    with pytest.raises(asyncpg.CheckViolationError, match="no_withdraw"):
        await pg_pool.execute(
            "INSERT INTO exchange_api_keys (user_id, exchange, api_key_encrypted,"
            " api_secret_encrypted, can_withdraw) VALUES ($1, 'binance', 'x', 'y', true)",
            user_id,
        )


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"exchange": "kraken"}, "unsupported_exchange"),
        ({"exchange": "paper"}, "unsupported_exchange"),
        ({"mode": "testnet"}, "invalid_mode"),
        ({"permissions": KeyPermissions(False, True, False)}, "read_permission_missing"),
        ({"label": "x" * 101}, "validation_error"),
        ({"credentials": ApiCredentials("some-api-key", "")}, "validation_error"),
    ],
)
async def test_an_unusable_key_is_refused(
    pg_pool: Pool,
    make_user: MakeUser,
    make_credentials: MakeCredentials,
    change: dict[str, Any],
    code: str,
) -> None:
    user_id = await make_user()
    values: dict[str, Any] = {
        "user_id": user_id,
        "exchange": "binance",
        "mode": "live",
        "label": None,
        "credentials": make_credentials(),
        "permissions": TRADING,
    }

    with pytest.raises(ValidationFailed) as caught:
        await store_key(pg_pool, Keyring(KEY_A), **{**values, **change})

    assert caught.value.code == code
    assert await list_keys(pg_pool, user_id) == []


async def test_a_key_of_an_unknown_user_is_refused(
    pg_pool: Pool, make_user: MakeUser, make_credentials: MakeCredentials
) -> None:
    await make_user()  # a clean database with someone in it
    with pytest.raises(NotFound) as caught:
        await _store(pg_pool, Keyring(KEY_A), "no-such-user", make_credentials())
    assert caught.value.code == "user_not_found"


async def test_a_short_key_shows_no_part_of_itself(
    pg_pool: Pool, make_user: MakeUser, secrets_seen: SecretsSeen
) -> None:
    user_id = await make_user()
    await _store(pg_pool, Keyring(KEY_A), user_id, ApiCredentials("k3y", "s3cret"))

    [listed] = await list_keys(pg_pool, user_id)

    assert listed.hint == "****"


async def test_ciphertexts_copied_to_another_user_do_not_decrypt(
    pg_pool: Pool, make_user: MakeUser, make_credentials: MakeCredentials
) -> None:
    keyring = Keyring(KEY_A)
    alice, mallory = await make_user(), await make_user()
    alice_key = await _store(pg_pool, keyring, alice, make_credentials())
    mallory_key = await _store(pg_pool, keyring, mallory, make_credentials())

    await pg_pool.execute(
        "UPDATE exchange_api_keys m SET api_key_encrypted = a.api_key_encrypted,"
        " api_secret_encrypted = a.api_secret_encrypted"
        " FROM exchange_api_keys a WHERE m.id = $1 AND a.id = $2",
        mallory_key,
        alice_key,
    )

    with pytest.raises(AuthenticationFailed):
        await active_key(pg_pool, keyring, mallory, "binance")


async def test_usage_and_invalidity_are_recorded(
    pg_pool: Pool, make_user: MakeUser, make_credentials: MakeCredentials
) -> None:
    keyring = Keyring(KEY_A)
    user_id = await make_user()
    key = await _store(pg_pool, keyring, user_id, make_credentials())

    await mark_used(pg_pool, key)
    first_use = (await _row(pg_pool, key))["last_used_at"]
    await mark_used(pg_pool, key)  # within the minute: not written again

    assert first_use is not None
    assert (await _row(pg_pool, key))["last_used_at"] == first_use

    assert await mark_invalid(pg_pool, key, "binance: -2015 Invalid API-key, IP, or permissions")
    assert not await mark_invalid(pg_pool, key, "again")  # already marked: no second audit row

    [listed] = await list_keys(pg_pool, user_id)
    assert not listed.is_valid and listed.is_active
    active = await active_key(pg_pool, keyring, user_id, "binance")
    assert active is not None and not active.is_valid
    [audited] = [r for r in await _audit(pg_pool, user_id) if r["action"].endswith("invalidate")]
    assert audited["resource_id"] == str(key)
    assert audited["new_value"] == {
        "is_valid": False,
        "reason": "binance: -2015 Invalid API-key, IP, or permissions",
    }
    assert not await mark_invalid(pg_pool, uuid.uuid4(), "no such key")


# ----------------------------------------------------------------------------- rotation
async def _kids(pool: Pool) -> set[str]:
    rows = await pool.fetch(
        "SELECT api_key_encrypted, api_secret_encrypted, passphrase_encrypted"
        " FROM exchange_api_keys"
    )
    return {token_key_id(row[c]) for row in rows for c in CIPHER_COLUMNS if row[c] is not None}


async def test_rotation_moves_every_key_to_the_active_key_once(
    pg_pool: Pool, make_user: MakeUser, make_credentials: MakeCredentials
) -> None:
    old = Keyring(KEY_A)
    stored: dict[tuple[str, str], ApiCredentials] = {}
    for _ in range(3):
        user_id = await make_user()
        for exchange in ("binance", "bybit"):
            credentials = make_credentials(passphrase=exchange == "bybit")
            await _store(pg_pool, old, user_id, credentials, exchange=exchange)
            stored[(user_id, exchange)] = credentials
    assert await _kids(pg_pool) == {key_id(KEY_A)}
    rotating = Keyring(KEY_B, [KEY_A])

    report = await rotate_keys(pg_pool, rotating, batch_size=4)

    assert (report.rotated, report.already_current, report.failed) == (6, 0, ())
    assert report.active_kid == key_id(KEY_B)
    assert await _kids(pg_pool) == {key_id(KEY_B)}
    only_new = Keyring(KEY_B)
    for (user_id, exchange), credentials in stored.items():
        active = await active_key(pg_pool, only_new, user_id, exchange)
        assert active is not None and active.credentials == credentials
    with pytest.raises(UnknownKeyVersion):
        await active_key(pg_pool, old, *next(iter(stored)))

    again = await rotate_keys(pg_pool, rotating, batch_size=4)

    assert (again.rotated, again.already_current, again.failed) == (0, 6, ())
    [audited] = await _audit(pg_pool, None)
    assert audited["action"] == "exchange_key.rotate"
    assert audited["resource_id"] == key_id(KEY_B)
    assert audited["new_value"] == {"rotated": 6, "failed": []} and audited["success"]


async def test_rotation_reports_keys_it_cannot_decrypt_and_rotates_the_rest(
    pg_pool: Pool, make_user: MakeUser, make_credentials: MakeCredentials
) -> None:
    user_id = await make_user()
    good = await _store(pg_pool, Keyring(KEY_A), user_id, make_credentials())
    lost = await _store(pg_pool, Keyring(KEY_C), user_id, make_credentials(), exchange="bybit")
    tampered = await _store(pg_pool, Keyring(KEY_A), await make_user(), make_credentials())
    row = await _row(pg_pool, tampered)
    forged = Keyring(KEY_A).encrypt("forged", CipherContext(user_id, "binance", tampered, "secret"))
    await pg_pool.execute(
        "UPDATE exchange_api_keys SET api_secret_encrypted = $2 WHERE id = $1", tampered, forged
    )
    lost_before = await _row(pg_pool, lost)

    report = await rotate_keys(pg_pool, Keyring(KEY_B, [KEY_A]))

    assert report.rotated == 1 and report.already_current == 0
    failures = {f.key_id: f for f in report.failed}
    assert set(failures) == {lost, tampered}
    assert failures[lost] == RotationFailure(
        lost, "api_key", f"encrypted under key {key_id(KEY_C)}, which is not configured"
    )
    assert failures[tampered].field == "secret"
    assert "failed authentication" in failures[tampered].reason
    assert token_key_id((await _row(pg_pool, good))["api_key_encrypted"]) == key_id(KEY_B)
    # Rows that failed are left exactly as they were.
    assert (await _row(pg_pool, lost))["api_key_encrypted"] == lost_before["api_key_encrypted"]
    assert (await _row(pg_pool, tampered))["api_key_encrypted"] == row["api_key_encrypted"]
    [audited] = await _audit(pg_pool, None)
    assert not audited["success"]
    assert set(audited["new_value"]["failed"]) == {str(lost), str(tampered)}

    again = await rotate_keys(pg_pool, Keyring(KEY_B, [KEY_A]))
    assert (again.rotated, again.already_current, len(again.failed)) == (0, 1, 2)


async def test_concurrent_rotations_rewrite_each_row_once(
    pg_pool: Pool, make_user: MakeUser, make_credentials: MakeCredentials
) -> None:
    old = Keyring(KEY_A)
    for _ in range(8):
        await _store(pg_pool, old, await make_user(), make_credentials(passphrase=True))
    rotating = Keyring(KEY_B, [KEY_A])

    reports = await asyncio.gather(
        *(rotate_keys(pg_pool, rotating, batch_size=1) for _ in range(3))
    )

    # Whichever run rewrote a row, the others found it current: never rewritten twice.
    assert sum(r.rotated for r in reports) == 8
    assert all(r.rotated + r.already_current == 8 and not r.failed for r in reports)
    assert await _kids(pg_pool) == {key_id(KEY_B)}


async def test_rotation_while_keys_are_stored_and_read(
    pg_pool: Pool, make_user: MakeUser, make_credentials: MakeCredentials
) -> None:
    user_ids = [await make_user() for _ in range(4)]
    for user_id in user_ids:
        await _store(pg_pool, Keyring(KEY_A), user_id, make_credentials())
    # The engine, redeployed with both keys, keeps storing and reading while rotation runs.
    serving = Keyring(KEY_B, [KEY_A])
    latest: dict[str, ApiCredentials] = {}

    async def serve(user_id: str) -> None:
        for _ in range(3):
            credentials = make_credentials()
            await _store(pg_pool, serving, user_id, credentials)
            latest[user_id] = credentials
            active = await active_key(pg_pool, serving, user_id, "binance")
            assert active is not None and active.credentials == credentials

    rotating = asyncio.create_task(rotate_keys(pg_pool, serving, batch_size=1))
    await asyncio.gather(*(serve(u) for u in user_ids))
    rotation = await rotating

    assert not rotation.failed
    final = await rotate_keys(pg_pool, serving)
    assert final.rotated == 0 and not final.failed
    for user_id, credentials in latest.items():
        active = await active_key(pg_pool, Keyring(KEY_B), user_id, "binance")
        assert active is not None and active.credentials == credentials


# ----------------------------------------------------------------------------- migration 0005
async def test_migration_0005_keeps_the_newest_active_key_and_downgrades_safely(
    servers: TestServers,
) -> None:
    name = f"test_keys_0005_{uuid.uuid4().hex[:10]}"
    url = servers.database_url(name)
    assert await ensure_database(url)
    try:
        await upgrade_to_head(url)
        await downgrade_to(url, "0004")
        conn = await asyncpg.connect(to_libpq_url(url))
        try:
            await conn.execute("INSERT INTO users (id, email) VALUES ('u', 'u@example.com')")
            insert = (
                "INSERT INTO exchange_api_keys (user_id, exchange, label, api_key_encrypted,"
                " api_secret_encrypted, created_at) VALUES ('u', $1, $2, 'k', 's', $3)"
                " RETURNING id"
            )
            old = await conn.fetchval(insert, "binance", "old", datetime(2024, 1, 1, tzinfo=UTC))
            new = await conn.fetchval(insert, "binance", "new", datetime(2025, 1, 1, tzinfo=UTC))
            other = await conn.fetchval(insert, "bybit", "old", datetime(2024, 1, 1, tzinfo=UTC))

            await upgrade_to_head(url)

            active = "SELECT id FROM exchange_api_keys WHERE is_active ORDER BY exchange"
            assert [r["id"] for r in await conn.fetch(active)] == [new, other]
            # A replacement keeping its label, and a demo key.
            await conn.execute("UPDATE exchange_api_keys SET is_active = false WHERE id = $1", new)
            replacement = await conn.fetchval(
                insert, "binance", "new", datetime(2026, 1, 1, tzinfo=UTC)
            )
            await conn.execute("UPDATE exchange_api_keys SET mode = 'demo' WHERE id = $1", other)

            await downgrade_to(url, "0004")

            rows = await conn.fetch("SELECT id, label FROM exchange_api_keys")
            labels = {row["id"]: row["label"] for row in rows}
            assert labels == {old: "old", new: None, replacement: "new", other: "old"}
            assert [r["id"] for r in await conn.fetch(active)] == [replacement]
        finally:
            await conn.close()
    finally:
        admin = await asyncpg.connect(to_libpq_url(servers.pg_admin_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
