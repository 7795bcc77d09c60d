"""The assistant's knowledge base: Markdown documents cut into passages, embedded, stored in
`knowledge_embeddings`, and searched by meaning (pgvector, cosine) and by words (PostgreSQL
full-text search), the two rankings fused.

Indexing is incremental: a passage whose text and embedding model are unchanged is not
embedded again (content hash), and passages of documents that are gone are removed. The
table holds one embedding model at a time; a different provider is refused until the whole
base is re-indexed with it (`reindex=True`), because vectors of different models cannot be
compared.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    Float,
    Select,
    bindparam,
    cast,
    delete,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ai.embeddings import Embedder
from app.core.errors import ServiceUnavailable
from app.models import INDEXED_DIMENSIONS, KnowledgeEmbedding

# A passage holds at most this many words: the local model reads 256 word pieces.
MAX_PASSAGE_WORDS = 160
# Sections shorter than this are merged into the next one of the same document.
MIN_PASSAGE_WORDS = 30
# Candidates each ranking contributes before fusion, and the reciprocal-rank-fusion constant.
CANDIDATES = 20
RRF_K = 60
# Hybrid search ranks by words only the passages nearest in meaning (this many): ranking
# every passage that shares a word with the question costs O(matches), about 50 ms at 10,000
# passages, for no better recall (docs/benchmarks.md, Benchmark 4). HNSW returns at most
# `hnsw.ef_search` rows, so that is raised to match for the query.
POOL = 100
# Full-text ranks count half as much as vector ranks: alone, words find the answering
# document less often than meaning does (docs/benchmarks.md, Benchmark 4).
TEXT_WEIGHT = 0.5
SearchMode = Literal["hybrid", "vector", "text"]

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_WORD = re.compile(r"[A-Za-z0-9]+")


class KnowledgeBaseError(ServiceUnavailable):
    code = "knowledge_base_unavailable"


class EmbeddingModelMismatch(KnowledgeBaseError):
    """The stored passages were embedded by another model than the configured one."""

    code = "knowledge_base_model_mismatch"

    def __init__(self, stored: Sequence[str], configured: str) -> None:
        self.stored = list(stored)
        self.configured = configured
        super().__init__(
            f"the knowledge base was indexed with {', '.join(self.stored)} but the configured "
            f"embedding model is {configured}; run `jadetrade kb index --reindex` to rebuild it"
        )


@dataclass(frozen=True)
class Chunk:
    """One passage of one document."""

    document: str  # path inside the indexed folder, e.g. "risk-checks.md"
    index: int
    title: str  # "Document title › Section"
    content: str

    @property
    def source_id(self) -> str:
        return f"{self.document}#{self.index}"

    @property
    def embedded_text(self) -> str:
        return f"{self.title}\n\n{self.content}"

    def content_hash(self, model: str) -> str:
        """Changes when the text or the model changes: either means a new vector."""
        return hashlib.sha256(f"{model}\n{self.embedded_text}".encode()).hexdigest()


@dataclass(frozen=True)
class Passage:
    """A search result."""

    document: str
    source_id: str
    title: str
    content: str
    score: float  # fused rank score; higher is better
    similarity: float | None  # cosine similarity to the query, when vector search found it


@dataclass
class IndexReport:
    documents: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    removed_documents: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- chunking
@dataclass
class _Section:
    heading: str | None
    lines: list[str]

    def words(self) -> int:
        return sum(len(line.split()) for line in self.lines)


def _sections(text_: str) -> tuple[str | None, list[_Section]]:
    """The document's `#` title and its sections at `##`/`###` headings (a `#` inside a code
    fence is code, not a heading)."""
    title: str | None = None
    sections = [_Section(None, [])]
    fenced = False
    for line in text_.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading and len(heading.group(1)) == 1 and title is None:
            title = heading.group(2)
        elif heading:
            sections.append(_Section(heading.group(2), []))
        else:
            sections[-1].lines.append(line)
    return title, [s for s in sections if any(line.strip() for line in s.lines)]


def _paragraphs(lines: list[str]) -> list[str]:
    """Blank-line separated blocks; a code fence or a table stays one block."""
    blocks: list[list[str]] = [[]]
    fenced = False
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        if not line.strip() and not fenced:
            if blocks[-1]:
                blocks.append([])
            continue
        blocks[-1].append(line)
    return ["\n".join(b).strip() for b in blocks if b]


def _split(paragraphs: list[str]) -> list[str]:
    """Paragraphs packed into parts of at most MAX_PASSAGE_WORDS words (a longer paragraph
    is a part on its own and gets cut at the model's limit when embedded)."""
    parts: list[list[str]] = [[]]
    words = 0
    for paragraph in paragraphs:
        n = len(paragraph.split())
        if parts[-1] and words + n > MAX_PASSAGE_WORDS:
            parts.append([])
            words = 0
        parts[-1].append(paragraph)
        words += n
    return ["\n\n".join(p) for p in parts if p]


def chunk_markdown(document: str, text_: str) -> list[Chunk]:
    """Passages of a Markdown document: one per section, long sections split at paragraphs,
    short ones merged into the next. Each passage is titled with the document and section
    titles, which are embedded with it (a passage alone often lacks its subject)."""
    title, sections = _sections(text_)
    doc_title = title or Path(document).stem.replace("-", " ").capitalize()
    merged: list[_Section] = []
    pending: _Section | None = None
    for section in sections:
        if pending is not None:
            heading = section.heading or pending.heading
            lead = [f"{pending.heading}:"] if pending.heading else []
            section = _Section(heading, [*lead, *pending.lines, "", *section.lines])
            pending = None
        if section.words() < MIN_PASSAGE_WORDS:
            pending = section
            continue
        merged.append(section)
    if pending is not None:
        if merged:
            merged[-1].lines.extend(["", *pending.lines])
        else:
            merged.append(pending)
    chunks: list[Chunk] = []
    for section in merged:
        heading = f"{doc_title} › {section.heading}" if section.heading else doc_title
        for part in _split(_paragraphs(section.lines)):
            chunks.append(Chunk(document, len(chunks), heading, part))
    return chunks


def read_folder(folder: Path) -> list[Chunk]:
    """Every passage of every `*.md` file under `folder`, in a stable order."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    chunks: list[Chunk] = []
    for path in sorted(folder.rglob("*.md")):
        document = path.relative_to(folder).as_posix()
        chunks.extend(chunk_markdown(document, path.read_text(encoding="utf-8")))
    return chunks


# --------------------------------------------------------------------------- indexing
async def stored_models(session: AsyncSession) -> list[str]:
    rows = await session.scalars(select(KnowledgeEmbedding.embedding_model).distinct())
    return sorted(rows.all())


async def check_model(session: AsyncSession, embedder: Embedder) -> None:
    """Refuse a knowledge base embedded by another model (searching it would rank noise).
    Runs before every search: two index range scans, not a pass over the table."""
    model = KnowledgeEmbedding.embedding_model
    other = await session.scalar(
        select(model).where(or_(model < embedder.model, model > embedder.model)).limit(1)
    )
    if other is not None:
        others = [m for m in await stored_models(session) if m != embedder.model]
        raise EmbeddingModelMismatch(others, embedder.model)


async def index_chunks(
    sessionmaker: async_sessionmaker[AsyncSession],
    embedder: Embedder,
    chunks: Sequence[Chunk],
    *,
    source_type: str = "docs",
    reindex: bool = False,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 32,
) -> IndexReport:
    """Make `knowledge_embeddings` of `source_type` hold exactly `chunks`: embed new and
    changed passages, drop passages and documents no longer present. `progress(n)` is told
    how many passages were handled since its last call."""
    if embedder.dimensions not in INDEXED_DIMENSIONS:
        raise KnowledgeBaseError(
            f"no vector index exists for {embedder.dimensions}-dimension embeddings "
            f"(indexed sizes: {', '.join(map(str, INDEXED_DIMENSIONS))})"
        )
    report = IndexReport(documents=len({c.document for c in chunks}))
    async with sessionmaker() as session:
        if reindex:
            await session.execute(
                delete(KnowledgeEmbedding).where(
                    KnowledgeEmbedding.embedding_model != embedder.model
                )
            )
            await session.commit()
        await check_model(session, embedder)
        stored_rows = (
            await session.execute(
                select(
                    KnowledgeEmbedding.source_id,
                    KnowledgeEmbedding.content_hash,
                    KnowledgeEmbedding.document,
                ).where(KnowledgeEmbedding.source_type == source_type)
            )
        ).all()
    stored: dict[str, str] = {source_id: digest for source_id, digest, _ in stored_rows}
    stored_documents = {document for _, _, document in stored_rows}

    wanted = {c.source_id for c in chunks}
    todo = [c for c in chunks if stored.get(c.source_id) != c.content_hash(embedder.model)]
    report.unchanged = len(chunks) - len(todo)
    if progress and report.unchanged:
        progress(report.unchanged)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        vectors = await embedder.embed([c.embedded_text for c in batch])
        rows = [
            {
                "source_type": source_type,
                "source_id": c.source_id,
                "document": c.document,
                "chunk_index": c.index,
                "title": c.title[:500],
                "content": c.content,
                "content_hash": c.content_hash(embedder.model),
                "embedding": vector,
                "embedding_dimensions": embedder.dimensions,
                "embedding_model": embedder.model,
                "metadata_": {"words": len(c.content.split())},
            }
            for c, vector in zip(batch, vectors, strict=True)
        ]
        statement = insert(KnowledgeEmbedding).values(rows)
        statement = statement.on_conflict_do_update(
            constraint="uq_knowledge_embeddings_source_type_source_id",
            set_={
                name: statement.excluded[name]
                for name in (
                    "document",
                    "chunk_index",
                    "title",
                    "content",
                    "content_hash",
                    "embedding",
                    "embedding_dimensions",
                    "embedding_model",
                    "metadata",
                )
            },
        )
        async with sessionmaker() as session:
            await session.execute(statement)
            await session.commit()
        report.updated += sum(1 for c in batch if c.source_id in stored)
        report.added += sum(1 for c in batch if c.source_id not in stored)
        if progress:
            progress(len(batch))

    gone = [source_id for source_id in stored if source_id not in wanted]
    if gone:
        async with sessionmaker() as session:
            await session.execute(
                delete(KnowledgeEmbedding).where(
                    KnowledgeEmbedding.source_type == source_type,
                    KnowledgeEmbedding.source_id.in_(gone),
                )
            )
            await session.commit()
    report.removed = len(gone)
    report.removed_documents = sorted(stored_documents - {c.document for c in chunks})
    return report


# --------------------------------------------------------------------------- search
def _or_query(question: str) -> str:
    """A `to_tsquery` text matching any of the question's words: a user's question rarely
    contains every word of the passage that answers it, so AND would match nothing."""
    words = {w.lower() for w in _WORD.findall(question) if len(w) > 1}
    return " | ".join(sorted(words))


def nearest(
    query_vector: Sequence[float], model: str, *, source_type: str | None = None
) -> Select[uuid.UUID, float]:
    """Ids and cosine distances of the passages nearest `query_vector`. The column is cast
    and filtered exactly as the partial HNSW index of this size is defined: otherwise
    PostgreSQL cannot use the index and reads every row."""
    dims = len(query_vector)
    distance = cast(literal_column("embedding"), Vector(dims)).op("<=>", return_type=Float)(
        bindparam("query_vector", list(query_vector), type_=Vector(dims))
    )
    statement = (
        select(KnowledgeEmbedding.id, distance.label("distance"))
        .where(
            KnowledgeEmbedding.embedding_dimensions == dims,
            KnowledgeEmbedding.embedding_model == model,
        )
        .order_by(distance)
        .limit(CANDIDATES)
    )
    if source_type:
        statement = statement.where(KnowledgeEmbedding.source_type == source_type)
    return statement


async def search(
    session: AsyncSession,
    embedder: Embedder,
    question: str,
    *,
    limit: int = 4,
    mode: SearchMode = "hybrid",
    source_type: str | None = None,
) -> list[Passage]:
    """The `limit` passages that best answer `question`, best first: by meaning (`vector`),
    by words (`text`), or by meaning with the nearest passages re-ranked by reciprocal rank
    fusion of both rankings (`hybrid`)."""
    await check_model(session, embedder)
    filters = [KnowledgeEmbedding.embedding_model == embedder.model]
    if source_type:
        filters.append(KnowledgeEmbedding.source_type == source_type)
    fused: dict[uuid.UUID, float] = {}
    similarity: dict[uuid.UUID, float] = {}

    def add(ranking: Sequence[uuid.UUID], weight: float = 1.0) -> None:  # reciprocal rank fusion
        for rank, row_id in enumerate(ranking, start=1):
            fused[row_id] = fused.get(row_id, 0.0) + weight / (RRF_K + rank)

    if mode in ("hybrid", "vector"):
        (query_vector,) = await embedder.embed([question])
        pool = POOL if mode == "hybrid" else CANDIDATES
        await session.execute(text(f"SET LOCAL hnsw.ef_search = {max(pool, 40)}"))
        near = await session.execute(
            nearest(query_vector, embedder.model, source_type=source_type).limit(pool)
        )
        ranked = [(row_id, float(distance)) for row_id, distance in near]
        add([row_id for row_id, _ in ranked[:CANDIDATES]])
        similarity = {row_id: 1.0 - distance for row_id, distance in ranked}

    terms = _or_query(question)
    if mode in ("hybrid", "text") and terms:
        tsquery = func.to_tsquery(literal_column("'english'"), terms)
        # Term frequency, not cover density: with an OR query most passages hold a few of
        # the words, rarely all of them close together.
        text_rank = cast(func.ts_rank(KnowledgeEmbedding.search_vector, tsquery), Float)
        statement = (
            select(KnowledgeEmbedding.id)
            .where(KnowledgeEmbedding.search_vector.op("@@")(tsquery), *filters)
            .order_by(text_rank.desc())
            .limit(CANDIDATES)
        )
        if mode == "hybrid":
            statement = statement.where(KnowledgeEmbedding.id.in_(list(similarity)))
        matched = await session.scalars(statement)
        add(list(matched), TEXT_WEIGHT)

    best = sorted(fused, key=fused.__getitem__, reverse=True)[:limit]
    if not best:
        return []
    found = {
        row.id: row
        for row in await session.scalars(
            select(KnowledgeEmbedding).where(KnowledgeEmbedding.id.in_(best))
        )
    }
    return [
        Passage(
            document=found[row_id].document,
            source_id=found[row_id].source_id,
            title=found[row_id].title or found[row_id].document,
            content=found[row_id].content,
            score=fused[row_id],
            similarity=similarity.get(row_id),
        )
        for row_id in best
        if row_id in found
    ]


def documents_of(passages: Sequence[Passage]) -> list[str]:
    """The distinct documents of `passages`, in rank order."""
    seen: dict[str, None] = {}
    for passage in passages:
        seen.setdefault(passage.document, None)
    return list(seen)
