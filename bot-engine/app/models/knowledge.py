"""Knowledge-base passages and their embeddings, searched by the AI assistant (RAG)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import CheckConstraint, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, in_values, updated_at_column, uuid_pk

# Dimension of the local all-MiniLM-L6-v2 embeddings. Changing model means a migration.
EMBEDDING_DIMENSIONS = 384
KNOWLEDGE_SOURCE_TYPES = ("docs", "faq", "strategy", "guide")


class KnowledgeEmbedding(Base):
    __tablename__ = "knowledge_embeddings"
    __table_args__ = (
        CheckConstraint(in_values("source_type", KNOWLEDGE_SOURCE_TYPES), name="source_type"),
        # Re-indexing a document upserts on this key.
        UniqueConstraint("source_type", "source_id"),
        # HNSW builds a usable graph on an empty table and keeps recall as rows arrive.
        Index(
            None,
            "embedding",
            postgresql_using="hnsw",
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    source_type: Mapped[str] = mapped_column(String(50), nullable=False)
    source_id: Mapped[str] = mapped_column(String(255), nullable=False)
    title: Mapped[str | None] = mapped_column(String(500))
    content: Mapped[str] = mapped_column(Text, nullable=False)
    # Hex SHA-256 of the embedded text: unchanged documents are not embedded again.
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    embedding: Mapped[list[float]] = mapped_column(Vector(EMBEDDING_DIMENSIONS), nullable=False)
    # Which provider/model produced `embedding`; vectors of different models do not compare.
    embedding_model: Mapped[str] = mapped_column(String(100), nullable=False)
    # `metadata` is reserved on declarative classes, hence the attribute name.
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
