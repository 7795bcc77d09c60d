"""The asyncpg pool of the hot path: webhook intake, signal execution and the paper exchange.

Those paths write a handful of rows per alert and run hundreds of times a second, so they speak
SQL to asyncpg directly (prepared statements, no ORM unit of work). The REST API keeps the
SQLAlchemy sessions of `app.core.database`; both use the same database and the same schema.

Conventions on every pooled connection: the session time zone is UTC, `json`/`jsonb` values are
Python objects in and out (Decimals are written as strings), NUMERIC arrives as `Decimal`, and
the planner avoids sequential scans (see `create_pool`).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from app.core.database import to_libpq_url

Pool = asyncpg.Pool
# A connection of its own or one borrowed from a pool: both run the same statements.
Connection = asyncpg.Connection | PoolConnectionProxy


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dump_json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=_default).decode()
    except TypeError:
        # orjson refuses integers beyond 64 bits, which an alert's unknown fields may hold;
        # the standard library writes them exactly (slower, but only for such values).
        return json.dumps(value, default=_default, allow_nan=False, separators=(",", ":"))


async def _setup_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=dump_json, decoder=orjson.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Returning a connection to the pool: asyncpg has already rolled back any open
    transaction. Its default reset also runs UNLISTEN, CLOSE ALL, RESET ALL and
    pg_advisory_unlock_all, a round trip of four commands on every release; this code never
    listens, opens cursors or changes settings, and whoever takes a session-level advisory lock
    releases it (or terminates the connection), so nothing else needs resetting."""


async def create_pool(
    url: str, *, min_size: int = 0, max_size: int = 10, wait_for_flush: bool = True
) -> Pool:
    """A pool on `url` (any of the forms `to_libpq_url` accepts); with `min_size` 0 it connects
    on first use, so a process starts even while the database is down.

    `wait_for_flush=False` sets `synchronous_commit = off`: a commit returns before its WAL
    reaches the disk, and a crash of the database server can lose the last fraction of a second
    of commits — never a part of one, never out of order. The signal workers use it: a signal
    whose execution was lost is still pending and simply executes again, finding by client order
    id any order that did reach an exchange. Webhook intake never does: its 2xx promises the
    signal is on disk."""
    pool: Pool = await asyncpg.create_pool(
        to_libpq_url(url),
        min_size=min_size,
        max_size=max_size,
        init=_setup_connection,
        reset=_keep_session,
        max_inactive_connection_lifetime=300,
        server_settings={
            "timezone": "UTC",
            "application_name": "jadetrade",
            "synchronous_commit": "on" if wait_for_flush else "off",
            # Every statement of the hot path finds its rows through an index. Prepared
            # statements keep the plan made when they were first used: made while a table was
            # nearly empty (a fresh deployment), it would scan the whole table on every call as
            # the table grows, until the next ANALYZE. Off, the planner scans only tables with
            # no usable index.
            "enable_seqscan": "off",
        },
    )
    return pool
