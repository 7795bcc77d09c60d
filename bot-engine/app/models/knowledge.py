"""Knowledge-base passages and their embeddings, searched by the AI assistant (RAG)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    CheckConstraint,
    Computed,
    Index,
    String,
    Text,
    UniqueConstraint,
    cast,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, in_values, updated_at_column, uuid_pk

# Embedding sizes with an HNSW index: the local all-MiniLM-L6-v2 (384) and OpenAI's
# text-embedding-3-small (1536). A provider of another size needs a migration adding one.
INDEXED_DIMENSIONS = (384, 1536)
KNOWLEDGE_SOURCE_TYPES = ("docs", "faq", "strategy", "guide")
# Title words weigh more than body words in full-text ranking.
SEARCH_VECTOR = (
    "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english', content), 'B')"
)


def _vector_index(dimensions: int) -> Index:
    """HNSW over the passages of one size: pgvector indexes a single size at a time, so the
    dimensionless column is cast to it and the index is partial (queries repeat both)."""
    label = f"embedding_{dimensions}"
    return Index(
        f"ix_knowledge_embeddings_embedding_{dimensions}",
        cast(literal_column("embedding"), Vector(dimensions)).label(label),
        postgresql_using="hnsw",
        postgresql_ops={label: "vector_cosine_ops"},
        postgresql_where=text(f"embedding_dimensions = {dimensions}"),
    )


class KnowledgeEmbedding(Base):
    __tablename__ = "knowledge_embeddings"
    __table_args__ = (
        CheckConstraint(in_values("source_type", KNOWLEDGE_SOURCE_TYPES), name="source_type"),
        CheckConstraint(
            "embedding_dimensions = vector_dims(embedding)", name="embedding_dimensions"
        ),
        # Re-indexing a document upserts on this key.
        UniqueConstraint("source_type", "source_id"),
        # HNSW builds a usable graph on an empty table and keeps recall as rows arrive.
        *(_vector_index(dimensions) for dimensions in INDEXED_DIMENSIONS),
        Index(None, "search_vector", postgresql_using="gin"),
        Index(None, "source_type", "document"),
        Index(None, "embedding_model"),  # the one-model check before every search
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    source_type: Mapped[str] = mapped_column(String(50), nullable=False)
    # `<document>#<chunk_index>`: one passage of one document.
    source_id: Mapped[str] = mapped_column(String(255), nullable=False)
    title: Mapped[str | None] = mapped_column(String(500))
    content: Mapped[str] = mapped_column(Text, nullable=False)
    # Hex SHA-256 of the embedded text: unchanged documents are not embedded again.
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    embedding: Mapped[list[float]] = mapped_column(Vector(), nullable=False)
    # Which provider/model produced `embedding`; vectors of different models do not compare.
    embedding_model: Mapped[str] = mapped_column(String(100), nullable=False)
    # `metadata` is reserved on declarative classes, hence the attribute name.
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    embedding_dimensions: Mapped[int] = mapped_column(nullable=False)
    # The document (its path inside the indexed folder) the passage was cut from.
    document: Mapped[str] = mapped_column(String(255), nullable=False)
    chunk_index: Mapped[int] = mapped_column(nullable=False, server_default=text("0"))
    search_vector: Mapped[str | None] = mapped_column(
        TSVECTOR, Computed(SEARCH_VECTOR, persisted=True)
    )
