"""The AI assistant: knowledge passages of any embedding size (one HNSW index per size),
full-text search beside vector search, the document each passage came from, per-message
sources and usage, and the month a user's chat allowance counts.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The embedding sizes an index exists for: the local MiniLM model and OpenAI's
# text-embedding-3-small. A provider of another size needs a migration adding its index.
INDEXED_DIMENSIONS = (384, 1536)
SEARCH_VECTOR = (
    "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english', content), 'B')"
)
CHAT_MODES = "'claude', 'offline'"


def upgrade() -> None:
    op.drop_index(op.f("ix_knowledge_embeddings_embedding"), table_name="knowledge_embeddings")
    # A dimensionless `vector` column holds any provider's vectors; each size gets its own
    # partial index over the column cast to that size (pgvector indexes one size at a time).
    op.alter_column("knowledge_embeddings", "embedding", type_=Vector(), existing_nullable=False)
    op.add_column(
        "knowledge_embeddings", sa.Column("embedding_dimensions", sa.Integer(), nullable=True)
    )
    op.add_column(
        "knowledge_embeddings", sa.Column("document", sa.String(length=255), nullable=True)
    )
    op.add_column(
        "knowledge_embeddings",
        sa.Column("chunk_index", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.execute(
        "UPDATE knowledge_embeddings "
        "SET embedding_dimensions = vector_dims(embedding), document = source_id"
    )
    op.alter_column("knowledge_embeddings", "embedding_dimensions", nullable=False)
    op.alter_column("knowledge_embeddings", "document", nullable=False)
    op.add_column(
        "knowledge_embeddings",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(SEARCH_VECTOR, persisted=True),
            nullable=True,
        ),
    )
    op.create_check_constraint(
        op.f("ck_knowledge_embeddings_embedding_dimensions"),
        "knowledge_embeddings",
        "embedding_dimensions = vector_dims(embedding)",
    )
    for dimensions in INDEXED_DIMENSIONS:
        op.create_index(
            op.f(f"ix_knowledge_embeddings_embedding_{dimensions}"),
            "knowledge_embeddings",
            [sa.text(f"(embedding::vector({dimensions})) vector_cosine_ops")],
            postgresql_using="hnsw",
            postgresql_where=sa.text(f"embedding_dimensions = {dimensions}"),
        )
    op.create_index(
        op.f("ix_knowledge_embeddings_search_vector"),
        "knowledge_embeddings",
        ["search_vector"],
        postgresql_using="gin",
    )
    op.create_index(
        op.f("ix_knowledge_embeddings_source_type_document"),
        "knowledge_embeddings",
        ["source_type", "document"],
    )
    op.create_index(
        op.f("ix_knowledge_embeddings_embedding_model"),
        "knowledge_embeddings",
        ["embedding_model"],
    )

    op.add_column("chat_messages", sa.Column("mode", sa.String(length=20), nullable=True))
    op.add_column("chat_messages", sa.Column("model", sa.String(length=100), nullable=True))
    op.add_column("chat_messages", sa.Column("stop_reason", sa.String(length=30), nullable=True))
    op.add_column(
        "chat_messages", sa.Column("cache_read_input_tokens", sa.Integer(), nullable=True)
    )
    op.add_column(
        "chat_messages", sa.Column("cache_creation_input_tokens", sa.Integer(), nullable=True)
    )
    op.add_column("chat_messages", sa.Column("sources", postgresql.JSONB(), nullable=True))
    op.create_check_constraint(
        op.f("ck_chat_messages_mode"), "chat_messages", f"mode IN ({CHAT_MODES})"
    )

    # The first day (UTC) of the month `chat_messages_used` counts; NULL: never used.
    op.add_column("users", sa.Column("chat_usage_month", sa.Date(), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "chat_usage_month")

    op.drop_constraint(op.f("ck_chat_messages_mode"), "chat_messages", type_="check")
    for column in (
        "sources",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "stop_reason",
        "model",
        "mode",
    ):
        op.drop_column("chat_messages", column)

    op.drop_index(
        op.f("ix_knowledge_embeddings_embedding_model"), table_name="knowledge_embeddings"
    )
    op.drop_index(
        op.f("ix_knowledge_embeddings_source_type_document"), table_name="knowledge_embeddings"
    )
    op.drop_index(op.f("ix_knowledge_embeddings_search_vector"), table_name="knowledge_embeddings")
    for dimensions in INDEXED_DIMENSIONS:
        op.drop_index(
            op.f(f"ix_knowledge_embeddings_embedding_{dimensions}"),
            table_name="knowledge_embeddings",
        )
    op.drop_constraint(
        op.f("ck_knowledge_embeddings_embedding_dimensions"), "knowledge_embeddings", type_="check"
    )
    op.drop_column("knowledge_embeddings", "search_vector")
    op.drop_column("knowledge_embeddings", "chunk_index")
    op.drop_column("knowledge_embeddings", "document")
    op.drop_column("knowledge_embeddings", "embedding_dimensions")
    # Passages of other sizes cannot go back into a 384-dimension column.
    op.execute("DELETE FROM knowledge_embeddings WHERE vector_dims(embedding) <> 384")
    op.alter_column("knowledge_embeddings", "embedding", type_=Vector(384), existing_nullable=False)
    op.create_index(
        op.f("ix_knowledge_embeddings_embedding"),
        "knowledge_embeddings",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
