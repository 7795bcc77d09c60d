"""`jadetrade kb`: index the knowledge base from a folder of Markdown documents, and search
it the way the assistant does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ai.embeddings import Embedder, build_embedder
from app.ai.knowledge_base import IndexReport, Passage, index_chunks, read_folder, search
from app.config import Settings
from app.core.database import create_engine, create_sessionmaker
from app.logging.logger import get_logger

log = get_logger("knowledge")


@asynccontextmanager
async def _knowledge_base(
    settings: Settings,
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], Embedder]]:
    """The database and the configured embedder, for one command."""
    assert settings.DATABASE_URL is not None
    engine = create_engine(settings.DATABASE_URL.get_secret_value(), pool_size=2, max_overflow=0)
    embedder = build_embedder(settings)
    try:
        yield create_sessionmaker(engine), embedder
    finally:
        await embedder.aclose()
        await engine.dispose()


async def index_folder(
    settings: Settings,
    folder: Path,
    *,
    reindex: bool = False,
    source_type: str = "docs",
    on_total: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> IndexReport:
    """Bring the `source_type` passages in the database in line with `folder`."""
    chunks = read_folder(folder)
    if on_total is not None:
        on_total(len(chunks))
    async with _knowledge_base(settings) as (sessionmaker, embedder):
        return await index_chunks(
            sessionmaker,
            embedder,
            chunks,
            source_type=source_type,
            reindex=reindex,
            progress=progress,
        )


async def search_text(settings: Settings, question: str, *, limit: int) -> list[Passage]:
    async with _knowledge_base(settings) as (sessionmaker, embedder), sessionmaker() as session:
        return await search(session, embedder, question, limit=limit)


def describe(report: IndexReport) -> str:
    text = (
        f"{report.documents} documents: {report.added} passages added, {report.updated} "
        f"updated, {report.unchanged} unchanged, {report.removed} removed"
    )
    if report.removed_documents:
        text += f" (documents gone: {', '.join(report.removed_documents)})"
    return text


async def index_shipped_knowledge(settings: Settings) -> IndexReport | None:
    """`jadetrade run`'s start: the documents shipped in KNOWLEDGE_DIR, indexed on the first
    start and brought up to date on later ones (unchanged passages cost nothing)."""
    folder = settings.KNOWLEDGE_DIR
    if folder is None or not folder.is_dir():
        log.warning("knowledge_base_not_indexed", reason="KNOWLEDGE_DIR is not a folder")
        return None
    log.info("knowledge_base_indexing", folder=str(folder))
    report = await index_folder(settings, folder)
    log.info("knowledge_base_indexed", folder=str(folder), **vars(report))
    return report
