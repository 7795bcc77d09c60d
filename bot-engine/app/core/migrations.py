"""Run the Alembic migrations from async code (startup, CLI, tests).

The async engine's connection is handed to Alembic through `config.attributes`, so
migrations/env.py runs on it instead of opening its own.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.database import to_asyncpg_url

# bot-engine/alembic.ini, next to the `app` package.
ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"
# Advisory lock held while migrating, so replicas starting together migrate one at a time.
_MIGRATION_LOCK = 0x6A74_6D69  # "jtmi"


def alembic_config() -> Config:
    """The engine's Alembic configuration, wherever the process was started from."""
    if not ALEMBIC_INI.is_file():
        raise FileNotFoundError(f"alembic.ini not found at {ALEMBIC_INI}")
    return Config(str(ALEMBIC_INI))


async def _on_connection(url: str, revision: str, *, upgrade: bool) -> None:
    engine = create_async_engine(to_asyncpg_url(url), poolclass=pool.NullPool)

    def run(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        if upgrade:
            command.upgrade(cfg, revision)
        else:
            command.downgrade(cfg, revision)

    try:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            await conn.run_sync(run)
    finally:
        await engine.dispose()


async def upgrade_to_head(url: str) -> None:
    """Apply every migration not yet applied to the database at `url`."""
    await _on_connection(url, "head", upgrade=True)


async def downgrade_to(url: str, revision: str) -> None:
    """Revert the database at `url` to `revision` (`base` removes the whole schema)."""
    await _on_connection(url, revision, upgrade=False)


async def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at; None when no migration was applied."""
    engine = create_async_engine(to_asyncpg_url(url), poolclass=pool.NullPool)

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    try:
        async with engine.connect() as conn:
            return await conn.run_sync(read)
    finally:
        await engine.dispose()
