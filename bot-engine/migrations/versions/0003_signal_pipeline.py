"""Signal pipeline: arrival order, payload dedupe, reasons, one open position per symbol.

- trading_signals.seq: arrival order; signals of one user and symbol execute in seq order.
- trading_signals.payload_hash: "the same alert" inside the dedupe window, without alert_id.
- trading_signals.status_reason: why a signal ended as it did, for the user.
- trading_signals.leverage / requested_quantity / requested_notional / risk_percent: the
  alert's sizing instructions, normalised (the raw payload keeps what was sent).
- status `executing`: a worker is on it (or died on it: the sweeper hands it to another).
- At most one open real_positions row per (user, exchange, symbol).

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = (
    "'received', 'validated', 'queued', 'executed', 'failed', 'skipped', 'rejected', 'logged'"
)
NEW_STATUSES = (
    "'received', 'validated', 'queued', 'executing', 'executed', 'failed', 'skipped', "
    "'rejected', 'logged'"
)


def upgrade() -> None:
    op.add_column(
        "trading_signals",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
    )
    op.add_column("trading_signals", sa.Column("payload_hash", sa.String(length=64)))
    op.add_column("trading_signals", sa.Column("status_reason", sa.Text()))
    op.add_column("trading_signals", sa.Column("leverage", sa.Integer()))
    op.add_column("trading_signals", sa.Column("requested_quantity", sa.Numeric(20, 8)))
    op.add_column("trading_signals", sa.Column("requested_notional", sa.Numeric(20, 8)))
    op.add_column("trading_signals", sa.Column("risk_percent", sa.Numeric(10, 4)))
    op.create_check_constraint(
        op.f("ck_trading_signals_leverage"), "trading_signals", "leverage BETWEEN 1 AND 125"
    )
    op.create_unique_constraint(op.f("uq_trading_signals_seq"), "trading_signals", ["seq"])
    op.drop_constraint(op.f("ck_trading_signals_status"), "trading_signals", type_="check")
    op.create_check_constraint(
        op.f("ck_trading_signals_status"), "trading_signals", f"status IN ({NEW_STATUSES})"
    )
    op.create_index(
        op.f("ix_trading_signals_user_id_payload_hash_created_at"),
        "trading_signals",
        ["user_id", "payload_hash", "created_at"],
    )
    op.create_index(
        "ix_trading_signals_pending",
        "trading_signals",
        ["user_id", "symbol", "seq"],
        postgresql_where=sa.text("status IN ('queued', 'executing')"),
    )
    op.create_index(
        "uq_real_positions_open",
        "real_positions",
        ["user_id", "exchange", "symbol"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )


def downgrade() -> None:
    op.drop_index("uq_real_positions_open", table_name="real_positions")
    op.drop_index("ix_trading_signals_pending", table_name="trading_signals")
    op.drop_index(
        op.f("ix_trading_signals_user_id_payload_hash_created_at"), table_name="trading_signals"
    )
    op.execute("UPDATE trading_signals SET status = 'queued' WHERE status = 'executing'")
    op.drop_constraint(op.f("ck_trading_signals_status"), "trading_signals", type_="check")
    op.create_check_constraint(
        op.f("ck_trading_signals_status"), "trading_signals", f"status IN ({OLD_STATUSES})"
    )
    op.drop_constraint(op.f("uq_trading_signals_seq"), "trading_signals", type_="unique")
    op.drop_constraint(op.f("ck_trading_signals_leverage"), "trading_signals", type_="check")
    for column in ("risk_percent", "requested_notional", "requested_quantity", "leverage"):
        op.drop_column("trading_signals", column)
    op.drop_column("trading_signals", "status_reason")
    op.drop_column("trading_signals", "payload_hash")
    op.drop_column("trading_signals", "seq")
