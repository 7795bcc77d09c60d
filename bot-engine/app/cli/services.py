"""How CLI commands reach PostgreSQL and Redis.

`DATABASE_URL` / `REDIS_URL` win when set. Otherwise, in development, the embedded stack
under `LOCAL_DIR` is used: reused when it is already up (a running `make run`), started for
the duration of the command when it is not, and migrated to the current schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import ConfigurationError, Settings
from app.core.database import create_engine, create_sessionmaker, ensure_database
from app.core.migrations import upgrade_to_head
from app.embedded.stack import LocalStack


def local_stack(settings: Settings) -> LocalStack:
    return LocalStack(settings.LOCAL_DIR, settings.LOCAL_PG_PORT, settings.LOCAL_REDIS_PORT)


def uses_embedded_stack(settings: Settings) -> bool:
    return settings.DATABASE_URL is None or settings.REDIS_URL is None


@contextmanager
def service_settings(settings: Settings) -> Iterator[Settings]:
    """`settings` with both service URLs filled in; stops what it had to start on exit."""
    if not uses_embedded_stack(settings):
        yield settings
        return
    if not settings.is_local:
        raise ConfigurationError(["DATABASE_URL and REDIS_URL are required outside development"])
    stack = local_stack(settings)
    urls = stack.up()
    try:
        yield settings.model_copy(
            update={
                "DATABASE_URL": settings.DATABASE_URL or SecretStr(urls.database_url),
                "REDIS_URL": settings.REDIS_URL or SecretStr(urls.redis_url),
            }
        )
    finally:
        stack.down()


async def prepare_database(settings: Settings) -> None:
    """Create the database if needed and migrate it to the newest schema."""
    assert settings.DATABASE_URL is not None
    url = settings.DATABASE_URL.get_secret_value()
    await ensure_database(url)
    await upgrade_to_head(url)


@asynccontextmanager
async def db_session(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session for one CLI command; commits on success, rolls back on error."""
    assert settings.DATABASE_URL is not None
    engine = create_engine(settings.DATABASE_URL.get_secret_value(), pool_size=1, max_overflow=0)
    try:
        async with create_sessionmaker(engine)() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
    finally:
        await engine.dispose()
