"""Users' exchange API keys: stored encrypted, listed masked, decrypted only to trade.

A user trades through at most one active key per exchange; storing a new key deactivates the
previous one in the same transaction (its row stays: trades and positions refer to it). Each
encrypted field is bound to its row, user, exchange and field (`app.core.credentials`), so the
row id is generated here, before the insert. Every change is written to `audit_log`, never
with a secret, a full key or a ciphertext in it.

Rotation re-encrypts every stored value under the active key, one row at a time with an
optimistic check, while the engine keeps serving with a keyring that opens old and new keys.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Literal

import asyncpg

from app.core.credentials import CipherContext, CredentialError, Keyring
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.pg import Connection, Pool
from app.exchanges.base import ApiCredentials, KeyPermissions

# Exchanges whose keys can be stored (the paper exchange needs none).
EXCHANGES = ("binance", "bybit")
MAX_LABEL_LENGTH = 100
MAX_REASON_LENGTH = 500
# Shorter keys show no part of themselves: four characters of a short key are too much of it.
_MIN_KEY_LENGTH_FOR_HINT = 8
_HINT_LENGTH = 4
_MASK = "****"
# last_used_at is a hint for users: write it at most once a minute per key, not per order.
_TOUCH_INTERVAL = timedelta(minutes=1)
# The column of each encrypted field, in the order rows carry them.
_COLUMNS = {
    "api_key": "api_key_encrypted",
    "secret": "api_secret_encrypted",  # a column name, not a secret  # nosec B105
    "passphrase": "passphrase_encrypted",  # a column name, not a secret  # nosec B105
}

Address = str | IPv4Address | IPv6Address


class KeyMode(StrEnum):
    LIVE = "live"  # real funds
    DEMO = "demo"  # the exchange's demo-trading environment


@dataclass(frozen=True)
class StoredKey:
    """A stored key as listings show it: nothing of it decrypted, the key itself masked."""

    id: uuid.UUID
    user_id: str
    exchange: str
    mode: KeyMode
    label: str | None
    hint: str  # "****abcd": the key's last four characters, or "****" when unknown
    permissions: KeyPermissions
    is_active: bool
    is_valid: bool
    last_used_at: datetime | None
    last_validated_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ActiveKey:
    """The key to trade with, decrypted. `is_valid` false: the exchange last refused it."""

    id: uuid.UUID
    user_id: str
    exchange: str
    mode: KeyMode
    credentials: ApiCredentials  # its repr shows nothing secret
    is_valid: bool


@dataclass(frozen=True)
class RotationFailure:
    key_id: uuid.UUID
    field: str | None  # "api_key", "secret" or "passphrase"; None: the row as a whole
    reason: str


@dataclass(frozen=True)
class RotationReport:
    active_kid: str
    rotated: int = 0  # rows re-encrypted under the active key by this run
    already_current: int = 0  # rows found entirely under the active key (and opened fine)
    failed: tuple[RotationFailure, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "active_key_id": self.active_kid,
            "rotated": self.rotated,
            "already_current": self.already_current,
            "failed": [
                {"id": str(f.key_id), "field": f.field, "reason": f.reason} for f in self.failed
            ],
        }


# ----------------------------------------------------------------------------- SQL
_COLUMNS_LISTED = """
    id, user_id, exchange, mode, label, api_key_hint, is_read_only, can_trade, can_withdraw,
    is_active, is_valid, last_used_at, last_validated_at, created_at, updated_at
"""
# Key changes of one user on one exchange are decided one at a time.
_LOCK_USER_EXCHANGE = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
_DEACTIVATE_CURRENT = """
    UPDATE exchange_api_keys SET is_active = false
    WHERE user_id = $1 AND exchange = $2 AND is_active
    RETURNING id
"""
_INSERT_KEY = f"""
    INSERT INTO exchange_api_keys (
        id, user_id, exchange, mode, label, api_key_encrypted, api_secret_encrypted,
        passphrase_encrypted, api_key_hint, is_read_only, can_trade, can_withdraw,
        last_validated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())
    RETURNING {_COLUMNS_LISTED}
"""  # noqa: S608 - composed of constants only  # nosec B608
_AUDIT = """
    INSERT INTO audit_log (user_id, action, resource_type, resource_id, ip_address, new_value)
    VALUES ($1, $2, 'exchange_api_key', $3, $4, $5)
"""
_LIST_KEYS = f"""
    SELECT {_COLUMNS_LISTED} FROM exchange_api_keys
    WHERE user_id = $1
    ORDER BY is_active DESC, created_at DESC, id
"""  # noqa: S608 - composed of constants only  # nosec B608
_DEACTIVATE_ONE = """
    WITH gone AS (
        UPDATE exchange_api_keys SET is_active = false
        WHERE id = $1 AND user_id = $2 AND is_active
        RETURNING id, user_id
    )
    INSERT INTO audit_log (user_id, action, resource_type, resource_id, ip_address, new_value)
    SELECT user_id, 'exchange_key.deactivate', 'exchange_api_key', id::text, $3, $4 FROM gone
    RETURNING resource_id
"""
_ACTIVE_KEY = """
    SELECT id, mode, is_valid, api_key_encrypted, api_secret_encrypted, passphrase_encrypted
    FROM exchange_api_keys
    WHERE user_id = $1 AND exchange = $2 AND is_active
"""
_MARK_USED = """
    UPDATE exchange_api_keys SET last_used_at = now()
    WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= now() - make_interval(secs => $2))
"""
_MARK_INVALID = """
    WITH marked AS (
        UPDATE exchange_api_keys SET is_valid = false, last_validated_at = now()
        WHERE id = $1 AND is_valid
        RETURNING id, user_id
    )
    INSERT INTO audit_log (user_id, action, resource_type, resource_id, new_value)
    SELECT user_id, 'exchange_key.invalidate', 'exchange_api_key', id::text, $2 FROM marked
    RETURNING resource_id
"""
_SEALED_COLUMNS = "id, user_id, exchange, api_key_encrypted, api_secret_encrypted, " + (
    "passphrase_encrypted"
)
_ROTATION_BATCH = f"""
    SELECT {_SEALED_COLUMNS} FROM exchange_api_keys WHERE id > $1 ORDER BY id LIMIT $2
"""  # noqa: S608 - composed of constants only  # nosec B608
# Composed of constants only, like the statement above.
_SEALED_ROW = f"SELECT {_SEALED_COLUMNS} FROM exchange_api_keys WHERE id = $1"  # noqa: S608  # nosec B608
# Applies only if nobody changed the ciphertexts since they were read.
_RESEAL = """
    UPDATE exchange_api_keys
    SET api_key_encrypted = $5, api_secret_encrypted = $6, passphrase_encrypted = $7
    WHERE id = $1 AND api_key_encrypted = $2 AND api_secret_encrypted = $3
      AND passphrase_encrypted IS NOT DISTINCT FROM $4
"""
_AUDIT_ROTATION = """
    INSERT INTO audit_log (action, resource_type, resource_id, new_value, success)
    VALUES ('exchange_key.rotate', 'encryption_key', $1, $2, $3)
"""


# ----------------------------------------------------------------------------- storage
async def store_key(
    db: Connection | Pool,
    keyring: Keyring,
    *,
    user_id: str,
    exchange: str,
    mode: KeyMode | str,
    label: str | None,
    credentials: ApiCredentials,
    permissions: KeyPermissions,
    actor_ip: Address | None = None,
) -> StoredKey:
    """Store `credentials` (validated with the exchange, which reported `permissions`) as the
    user's active key for `exchange`, deactivating the one it replaces. Runs in a transaction
    of its own, committed on return (a savepoint when `db` is a connection already inside a
    transaction: that one's owner commits).

    Raises ValidationFailed (a withdrawal-enabled or unreadable key, an unknown exchange or
    mode, an empty key or secret, a too long label) and NotFound (no such user)."""
    key_mode = _check_key(exchange, mode, label, credentials, permissions)
    key_id = uuid.uuid4()
    values = {
        "api_key": credentials.api_key,
        "secret": credentials.secret,
        "passphrase": credentials.passphrase,
    }
    sealed = {
        name: None
        if value is None
        else keyring.encrypt(value, _context(user_id, exchange, key_id, name))
        for name, value in values.items()
    }
    hint = (
        credentials.api_key[-_HINT_LENGTH:]
        if len(credentials.api_key) >= _MIN_KEY_LENGTH_FOR_HINT
        else None
    )
    async with _connection(db) as conn, conn.transaction():
        await conn.execute(_LOCK_USER_EXCHANGE, f"exchange_api_keys:{user_id}:{exchange}")
        replaced = [row["id"] for row in await conn.fetch(_DEACTIVATE_CURRENT, user_id, exchange)]
        try:
            row = await conn.fetchrow(
                _INSERT_KEY,
                key_id,
                user_id,
                exchange,
                key_mode.value,
                label,
                sealed["api_key"],
                sealed["secret"],
                sealed["passphrase"],
                hint,
                not permissions.can_trade,
                permissions.can_trade,
                permissions.can_withdraw,
            )
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(
                f"user {user_id} does not exist", field="user_id", code="user_not_found"
            ) from None
        except asyncpg.UniqueViolationError:  # a writer that does not take the lock above
            raise Conflict(
                f"another {exchange} key of this user was stored at the same time; retry",
                field="exchange",
                code="exchange_key_conflict",
            ) from None
        assert row is not None
        for old_id in replaced:
            await conn.execute(
                _AUDIT,
                user_id,
                "exchange_key.deactivate",
                str(old_id),
                actor_ip,
                {"is_active": False, "replaced_by": str(key_id)},
            )
        stored = _stored(row)
        await conn.execute(
            _AUDIT,
            user_id,
            "exchange_key.create",
            str(key_id),
            actor_ip,
            {
                "exchange": exchange,
                "mode": key_mode.value,
                "label": label,
                "can_read": permissions.can_read,
                "can_trade": permissions.can_trade,
                "can_withdraw": permissions.can_withdraw,
                "replaces": [str(old_id) for old_id in replaced],
            },
        )
    return stored


async def list_keys(db: Connection | Pool, user_id: str) -> list[StoredKey]:
    """Every key of the user, active first, then newest first; nothing is decrypted."""
    return [_stored(row) for row in await db.fetch(_LIST_KEYS, user_id)]


async def deactivate_key(
    db: Connection | Pool,
    *,
    user_id: str,
    key_id: uuid.UUID,
    actor_ip: Address | None = None,
) -> bool:
    """Deactivate the user's key `key_id`: True when this call did, False when the user has
    no such active key. The row stays (trades and positions refer to it)."""
    done = await db.fetchval(_DEACTIVATE_ONE, key_id, user_id, actor_ip, {"is_active": False})
    return done is not None


async def active_key(
    db: Connection | Pool, keyring: Keyring, user_id: str, exchange: str
) -> ActiveKey | None:
    """The user's active key for `exchange`, decrypted, or None when there is none.

    Raises CredentialError when the stored key cannot be decrypted (a key not configured in
    the keyring, or a value that fails authentication): never treat that as "no key"."""
    row = await db.fetchrow(_ACTIVE_KEY, user_id, exchange)
    if row is None:
        return None
    key_id: uuid.UUID = row["id"]

    def open_(name: str) -> str:
        return keyring.decrypt(row[_COLUMNS[name]], _context(user_id, exchange, key_id, name))

    passphrase = None if row["passphrase_encrypted"] is None else open_("passphrase")
    return ActiveKey(
        id=key_id,
        user_id=user_id,
        exchange=exchange,
        mode=KeyMode(row["mode"]),
        credentials=ApiCredentials(open_("api_key"), open_("secret"), passphrase),
        is_valid=row["is_valid"],
    )


async def mark_used(db: Connection | Pool, key_id: uuid.UUID) -> None:
    """Note that the key was just used (written at most once a minute per key)."""
    await db.execute(_MARK_USED, key_id, _TOUCH_INTERVAL.total_seconds())


async def mark_invalid(db: Connection | Pool, key_id: uuid.UUID, reason: str) -> bool:
    """Record that the exchange refused the key: True when it was valid until now (and an
    audit row says why), False when it was already marked or does not exist. `reason` is
    stored: it must not contain secrets (adapters take credentials out of exchange errors)."""
    new_value = {"is_valid": False, "reason": reason[:MAX_REASON_LENGTH]}
    return await db.fetchval(_MARK_INVALID, key_id, new_value) is not None


# ----------------------------------------------------------------------------- rotation
async def rotate_keys(
    db: Connection | Pool, keyring: Keyring, *, batch_size: int = 100
) -> RotationReport:
    """Re-encrypt, under the keyring's active key, every stored value sealed under another.

    Safe while the engine serves: each row is rewritten by one statement that applies only
    if its ciphertexts are still those that were read (a row changed meanwhile is read
    again). Every value is opened, including those already under the active key, so a run
    also verifies the whole table: a row that cannot be opened is reported in `failed` and
    left as it is. A second run after a clean one rotates nothing.

    Procedure: the new key becomes ENCRYPTION_KEY and the old one moves to
    ENCRYPTION_KEYS_RETIRED; once every process runs with both, rotate; once rotation
    reports no failure, drop the retired key."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    rotated = current = 0
    failed: list[RotationFailure] = []
    after = uuid.UUID(int=0)
    while rows := await db.fetch(_ROTATION_BATCH, after, batch_size):
        for row in rows:
            outcome = await _rotate_row(db, keyring, row)
            if isinstance(outcome, RotationFailure):
                failed.append(outcome)
            elif outcome == "rotated":
                rotated += 1
            elif outcome == "current":
                current += 1
        after = rows[-1]["id"]
    report = RotationReport(keyring.active_kid, rotated, current, tuple(failed))
    if rotated or failed:
        await db.execute(
            _AUDIT_ROTATION,
            keyring.active_kid,
            {"rotated": rotated, "failed": [str(f.key_id) for f in failed]},
            not failed,
        )
    return report


_MAX_ROTATION_ATTEMPTS = 5


async def _rotate_row(
    db: Connection | Pool, keyring: Keyring, row: asyncpg.Record
) -> RotationFailure | Literal["rotated", "current"] | None:
    """What became of one row; None when it was deleted meanwhile."""
    for _ in range(_MAX_ROTATION_ATTEMPTS):
        key_id: uuid.UUID = row["id"]
        old = [row[_COLUMNS[name]] for name in _COLUMNS]
        new: list[str | None] = []
        for name, token in zip(_COLUMNS, old, strict=True):
            if token is None:
                new.append(None)
                continue
            context = _context(row["user_id"], row["exchange"], key_id, name)
            try:
                new.append(keyring.reseal(token, context))
            except CredentialError as exc:
                return RotationFailure(key_id, name, str(exc))
        if new == old:
            return "current"
        if await db.execute(_RESEAL, key_id, *old, *new) == "UPDATE 1":
            return "rotated"
        changed = await db.fetchrow(_SEALED_ROW, key_id)
        if changed is None:
            return None
        row = changed
    return RotationFailure(
        row["id"], None, f"changed by another writer on each of {_MAX_ROTATION_ATTEMPTS} attempts"
    )


# ----------------------------------------------------------------------------- helpers
def _context(user_id: str, exchange: str, key_id: uuid.UUID, name: str) -> CipherContext:
    return CipherContext(user_id=user_id, exchange=exchange, key_id=key_id, field=name)


def _check_key(
    exchange: str,
    mode: KeyMode | str,
    label: str | None,
    credentials: ApiCredentials,
    permissions: KeyPermissions,
) -> KeyMode:
    if permissions.can_withdraw:
        raise ValidationFailed(
            "API keys allowed to withdraw funds are refused; create a key without withdrawal"
            " permission",
            field="permissions",
            code="withdrawal_permission",
        )
    if not permissions.can_read:
        raise ValidationFailed(
            "the API key cannot read the account; the engine reads balances and positions",
            field="permissions",
            code="read_permission_missing",
        )
    if exchange not in EXCHANGES:
        raise ValidationFailed(
            f"exchange must be one of {', '.join(EXCHANGES)}",
            field="exchange",
            code="unsupported_exchange",
        )
    try:
        key_mode = KeyMode(mode)
    except ValueError:
        raise ValidationFailed(
            "mode must be 'live' or 'demo'", field="mode", code="invalid_mode"
        ) from None
    if label is not None and len(label) > MAX_LABEL_LENGTH:
        raise ValidationFailed(f"label is longer than {MAX_LABEL_LENGTH} characters", field="label")
    if not credentials.api_key or not credentials.secret:
        raise ValidationFailed("the API key and its secret must not be empty", field="credentials")
    return key_mode


def _stored(row: asyncpg.Record) -> StoredKey:
    hint = row["api_key_hint"]
    return StoredKey(
        id=row["id"],
        user_id=row["user_id"],
        exchange=row["exchange"],
        mode=KeyMode(row["mode"]),
        label=row["label"],
        hint=_MASK + (hint or ""),
        # Keys that cannot read are refused when stored.
        permissions=KeyPermissions(
            can_read=True, can_trade=row["can_trade"], can_withdraw=row["can_withdraw"]
        ),
        is_active=row["is_active"],
        is_valid=row["is_valid"],
        last_used_at=row["last_used_at"],
        last_validated_at=row["last_validated_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


@asynccontextmanager
async def _connection(db: Connection | Pool) -> AsyncIterator[Connection]:
    """`db` itself, or a connection borrowed from it when it is a pool."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db
