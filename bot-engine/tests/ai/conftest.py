"""Fixtures of the assistant's tests: scratch databases for tests that need a knowledge base
of their own (another provider, documents that come and go). The shipped documents, indexed
once per session, are `shipped_knowledge` in the suite's conftest."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.database import create_engine, create_sessionmaker, ensure_database, to_libpq_url
from app.core.migrations import upgrade_to_head

if TYPE_CHECKING:
    from tests.conftest import TestServers

QUESTIONS_FILE = Path(__file__).resolve().parent / "retrieval_questions.json"

Sessionmaker = async_sessionmaker[AsyncSession]
MakeDatabase = Callable[[], Awaitable[Sessionmaker]]


@pytest.fixture
async def scratch_database(servers: TestServers) -> AsyncIterator[MakeDatabase]:
    """Factory of freshly migrated databases (dropped afterwards) and their sessionmakers."""
    made: list[tuple[str, AsyncEngine]] = []

    async def make() -> Sessionmaker:
        name = f"test_kb_{uuid.uuid4().hex[:10]}"
        url = servers.database_url(name)
        await ensure_database(url)
        await upgrade_to_head(url)
        engine = create_engine(url, pool_size=2, max_overflow=0)
        made.append((name, engine))
        return create_sessionmaker(engine)

    yield make

    admin = await asyncpg.connect(to_libpq_url(servers.pg_admin_url))
    try:
        for name, engine in made:
            await engine.dispose()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
