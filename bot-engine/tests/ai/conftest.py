"""Fixtures of the assistant's tests: the shipped documents indexed once per session with
the local model, and scratch databases for tests that need a knowledge base of their own
(another provider, documents that come and go)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.ai.embeddings import LocalEmbedder
from app.ai.knowledge_base import IndexReport, index_chunks, read_folder
from app.core.database import create_engine, create_sessionmaker, ensure_database, to_libpq_url
from app.core.migrations import upgrade_to_head

if TYPE_CHECKING:
    from tests.conftest import TestServers

KNOWLEDGE_DIR = Path(__file__).resolve().parents[3] / "docs" / "knowledge"
QUESTIONS_FILE = Path(__file__).resolve().parent / "retrieval_questions.json"

Sessionmaker = async_sessionmaker[AsyncSession]
MakeDatabase = Callable[[], Awaitable[Sessionmaker]]


@pytest.fixture(scope="session")
async def local_embedder() -> AsyncIterator[LocalEmbedder]:
    embedder = LocalEmbedder()
    yield embedder
    await embedder.aclose()


@pytest.fixture(scope="session")
async def shipped_knowledge(db_engine: AsyncEngine, local_embedder: LocalEmbedder) -> IndexReport:
    """docs/knowledge indexed into the session's database (kept across `clean_state`)."""
    return await index_chunks(
        create_sessionmaker(db_engine), local_embedder, read_folder(KNOWLEDGE_DIR)
    )


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
