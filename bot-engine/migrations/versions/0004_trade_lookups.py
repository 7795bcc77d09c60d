"""Indexes for the executor's per-signal reads, so their cost does not grow with history;
a version on paper accounts for optimistic writes.

- real_trades (user_id, executed_at): the daily-loss check sums today's realised PnL.
- real_trades (user_id, symbol) where the order is still working: reconciliation.
- real_trades (user_id, symbol) where no position is attributed yet: closing a position.
- paper_accounts.version: bumped by every write; a write applies only to the version it read.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WORKING = "status IN ('pending', 'open', 'partially_filled', 'unknown')"


def upgrade() -> None:
    op.add_column(
        "paper_accounts",
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(
        op.f("ix_real_trades_user_id_executed_at"), "real_trades", ["user_id", "executed_at"]
    )
    op.create_index(
        "ix_real_trades_working",
        "real_trades",
        ["user_id", "symbol"],
        postgresql_where=sa.text(WORKING),
    )
    op.create_index(
        "ix_real_trades_unattached",
        "real_trades",
        ["user_id", "symbol"],
        postgresql_where=sa.text("position_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_real_trades_unattached", table_name="real_trades")
    op.drop_index("ix_real_trades_working", table_name="real_trades")
    op.drop_index(op.f("ix_real_trades_user_id_executed_at"), table_name="real_trades")
    op.drop_column("paper_accounts", "version")
