"""The knowledge base: chunking, incremental indexing (content hashes, removed documents),
the one-model-at-a-time rule, and search over the shipped documents."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select, text

from app.ai.embeddings import EmbeddingError, LocalEmbedder, OpenAIEmbedder, checked
from app.ai.knowledge_base import (
    MAX_PASSAGE_WORDS,
    EmbeddingModelMismatch,
    IndexReport,
    chunk_markdown,
    documents_of,
    index_chunks,
    nearest,
    read_folder,
    search,
)
from app.models import KnowledgeEmbedding
from tests.support.openai_server import OpenAIServer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.ext.asyncio import AsyncEngine

    from tests.ai.conftest import MakeDatabase


# --------------------------------------------------------------------------- chunking
def test_chunks_follow_sections_and_carry_the_document_and_section_titles() -> None:
    body = " ".join(["word"] * 40)
    doc = f"# Stops\n\nIntro {body}\n\n## Placing a stop\n\n{body}\n\n## Moving it\n\n{body}\n"
    chunks = chunk_markdown("stops.md", doc)
    assert [c.title for c in chunks] == ["Stops", "Stops › Placing a stop", "Stops › Moving it"]
    assert [c.source_id for c in chunks] == ["stops.md#0", "stops.md#1", "stops.md#2"]
    assert chunks[1].embedded_text.startswith("Stops › Placing a stop\n\n")


def test_a_hash_inside_a_code_fence_is_not_a_heading() -> None:
    body = " ".join(["word"] * 40)
    doc = f"# Alerts\n\n## Template\n\n{body}\n\n```\n# not a heading\n{{}}\n```\n"
    chunks = chunk_markdown("alerts.md", doc)
    assert len(chunks) == 1
    assert "# not a heading" in chunks[0].content


def test_short_sections_merge_into_the_next_and_long_ones_split_at_paragraphs() -> None:
    paragraph = " ".join(["word"] * 60)
    long_section = "\n\n".join([paragraph] * 5)  # 300 words
    doc = f"# Doc\n\n## Tiny\n\nJust a line.\n\n## Big\n\n{long_section}\n"
    chunks = chunk_markdown("doc.md", doc)
    assert chunks[0].content.startswith("Tiny:")  # the short section leads the next one
    assert all(len(c.content.split()) <= MAX_PASSAGE_WORDS + 3 for c in chunks)
    assert len(chunks) >= 2
    assert all(c.title == "Doc › Big" for c in chunks)


def test_the_shipped_documents_are_real_and_fit_the_model() -> None:
    folder = Path(__file__).resolve().parents[3] / "docs" / "knowledge"
    chunks = read_folder(folder)
    documents = {c.document for c in chunks}
    assert len(documents) >= 25
    assert len(chunks) > 150
    # Each passage is short enough for the model's 256 word pieces, most of it prose.
    assert max(len(c.content.split()) for c in chunks) <= 2 * MAX_PASSAGE_WORDS


# --------------------------------------------------------------------------- vectors
def test_a_zero_or_malformed_vector_is_an_error_never_stored() -> None:
    with pytest.raises(EmbeddingError, match="zero"):
        checked([[0.0] * 384], 1, 384)
    with pytest.raises(EmbeddingError, match="dimensions"):
        checked([[1.0] * 10], 1, 384)
    with pytest.raises(EmbeddingError, match="expected 2"):
        checked([[1.0] * 384], 2, 384)
    assert checked([[3.0] + [0.0] * 383], 1, 384)[0][0] == 3.0


async def test_local_vectors_are_unit_length_deterministic_and_semantic(
    local_embedder: LocalEmbedder,
) -> None:
    a, b, c = await local_embedder.embed(
        [
            "protect my position with a stop-loss order",
            "how do I set a stop loss on a trade",
            "the capital of France",
        ]
    )
    again = (await local_embedder.embed(["protect my position with a stop-loss order"]))[0]
    assert len(a) == 384
    assert sum(x * x for x in a) == pytest.approx(1.0, abs=1e-4)
    assert again == pytest.approx(a, abs=1e-6)

    def cosine(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True))

    assert cosine(a, b) > cosine(a, c) + 0.3


# --------------------------------------------------------------------------- indexing
def _write(folder: Path, name: str, title: str, words: str) -> None:
    body = " ".join([words] * 12)
    (folder / name).write_text(f"# {title}\n\n## Part one\n\n{body}\n\n## Part two\n\n{body}\n")


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


async def test_indexing_skips_unchanged_passages_and_removes_deleted_documents(
    tmp_path: Path, scratch_database: MakeDatabase, local_embedder: LocalEmbedder
) -> None:
    sessionmaker = await scratch_database()
    _write(tmp_path, "leverage.md", "Leverage", "leverage multiplies margin and exposure")
    _write(tmp_path, "fees.md", "Fees", "taker fees are charged on every fill")
    _write(tmp_path, "keys.md", "API keys", "create a key with trading permission only")
    ticks: list[int] = []

    first = await index_chunks(
        sessionmaker, local_embedder, read_folder(tmp_path), progress=ticks.append
    )
    assert (first.documents, first.added, first.unchanged, first.removed) == (3, 6, 0, 0)
    assert sum(ticks) == 6

    again = await index_chunks(sessionmaker, local_embedder, read_folder(tmp_path))
    assert (again.added, again.updated, again.unchanged) == (0, 0, 6)

    _write(tmp_path, "fees.md", "Fees", "maker fees are lower than taker fees")
    (tmp_path / "keys.md").unlink()
    changed = await index_chunks(sessionmaker, local_embedder, read_folder(tmp_path))
    assert (changed.updated, changed.unchanged, changed.removed) == (2, 2, 2)
    assert changed.removed_documents == ["keys.md"]

    async with sessionmaker() as session:
        documents = set((await session.scalars(select(KnowledgeEmbedding.document))).all())
        assert documents == {"leverage.md", "fees.md"}
        fees = (
            await session.scalars(
                select(KnowledgeEmbedding.content).where(KnowledgeEmbedding.document == "fees.md")
            )
        ).all()
        assert all("maker fees" in content for content in fees)
        dims = set((await session.scalars(select(KnowledgeEmbedding.embedding_dimensions))).all())
        assert dims == {384}


async def test_another_embedding_model_is_refused_until_a_full_reindex(
    tmp_path: Path,
    scratch_database: MakeDatabase,
    local_embedder: LocalEmbedder,
    openai_server: OpenAIServer,
) -> None:
    sessionmaker = await scratch_database()
    _write(tmp_path, "leverage.md", "Leverage", "leverage multiplies margin and exposure")
    _write(tmp_path, "fees.md", "Fees", "taker fees are charged on every fill")
    await index_chunks(sessionmaker, local_embedder, read_folder(tmp_path))
    remote = OpenAIEmbedder(openai_server.api_key, base_url=openai_server.url)
    try:
        with pytest.raises(EmbeddingModelMismatch, match="--reindex") as refused:
            await index_chunks(sessionmaker, remote, read_folder(tmp_path))
        assert refused.value.stored == ["local:all-MiniLM-L6-v2-int8"]
        assert refused.value.status_code == 503
        async with sessionmaker() as session:
            with pytest.raises(EmbeddingModelMismatch):
                await search(session, remote, "what do fees cost")
        assert openai_server.requests == []  # refused before any text was sent out

        report = await index_chunks(sessionmaker, remote, read_folder(tmp_path), reindex=True)
        assert report.added == 4
        async with sessionmaker() as session:
            models = (
                await session.execute(
                    select(
                        KnowledgeEmbedding.embedding_model,
                        KnowledgeEmbedding.embedding_dimensions,
                        func.count(),
                    ).group_by(
                        KnowledgeEmbedding.embedding_model, KnowledgeEmbedding.embedding_dimensions
                    )
                )
            ).all()
            assert models == [("openai:text-embedding-3-small", 1536, 4)]
            found = await search(session, remote, "how much are taker fees on a fill", limit=2)
            assert found[0].document == "fees.md"
            with pytest.raises(EmbeddingModelMismatch):
                await search(session, local_embedder, "fees")
    finally:
        await remote.aclose()


async def test_openai_failures_are_typed_and_carry_no_key(openai_server: OpenAIServer) -> None:
    remote = OpenAIEmbedder(openai_server.api_key, base_url=openai_server.url)
    openai_server.fail_next(500, count=3)  # the SDK retries twice
    try:
        with pytest.raises(EmbeddingError) as failed:
            await remote.embed(["anything"])
        assert openai_server.api_key not in str(failed.value)
        assert failed.value.code == "embedding_unavailable"
        vectors = await remote.embed([f"text number {n}" for n in range(300)])
        assert len(vectors) == 300 and len(vectors[0]) == 1536
        assert [len(r.inputs) for r in openai_server.requests[-2:]] == [256, 44]
    finally:
        await remote.aclose()


# --------------------------------------------------------------------------- search
async def test_the_issue_examples_find_their_documents(
    db_engine: AsyncEngine, shipped_knowledge: IndexReport, local_embedder: LocalEmbedder
) -> None:
    from app.core.database import create_sessionmaker

    async with create_sessionmaker(db_engine)() as session:
        rejected = await search(session, local_embedder, "why was my ETH trade rejected yesterday?")
        alert = await search(
            session, local_embedder, "how do I set up a TradingView alert with a stop loss?"
        )
    assert documents_of(rejected)[0] == "troubleshooting-rejections.md"
    assert "tradingview-alert-setup.md" in documents_of(alert)[:2]
    assert all(p.similarity is not None and 0 < p.similarity <= 1 for p in rejected)
    assert rejected[0].score >= rejected[-1].score


async def test_vector_search_is_served_by_the_hnsw_index_of_its_size(
    db_engine: AsyncEngine, shipped_knowledge: IndexReport, local_embedder: LocalEmbedder
) -> None:
    (vector,) = await local_embedder.embed(["stop loss"])
    statement = nearest(vector, local_embedder.model).compile(
        dialect=db_engine.dialect, compile_kwargs={"literal_binds": True}
    )
    async with db_engine.connect() as conn:
        # With so few rows a sequential scan is cheaper; forbid it to see what the planner
        # can use for this query's shape.
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join((await conn.execute(text(f"EXPLAIN {statement}"))).scalars())
    assert "ix_knowledge_embeddings_embedding_384" in plan
