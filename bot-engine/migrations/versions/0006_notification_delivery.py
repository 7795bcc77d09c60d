"""Notifications that are delivered: a `signal_rejected` type, a per-user dedupe key (a
notification derived twice from one event is stored once), and Telegram delivery state.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TYPES = (
    "'trade_executed', 'trade_failed', 'position_closed', 'stop_loss_hit', 'take_profit_hit', "
    "'daily_loss_limit', 'daily_summary', 'system'"
)
NEW_TYPES = OLD_TYPES + ", 'signal_rejected'"
TELEGRAM_STATUSES = "'pending', 'sent', 'failed'"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_notifications_type"), "notifications", type_="check")
    op.create_check_constraint(op.f("ck_notifications_type"), "notifications",
                               f"type IN ({NEW_TYPES})")  # fmt: skip
    op.add_column("notifications", sa.Column("dedupe_key", sa.String(length=120), nullable=True))
    op.add_column(
        "notifications", sa.Column("telegram_status", sa.String(length=10), nullable=True)
    )
    op.add_column(
        "notifications",
        sa.Column("telegram_sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "notifications", sa.Column("telegram_error", sa.String(length=255), nullable=True)
    )
    op.create_check_constraint(
        op.f("ck_notifications_telegram_status"),
        "notifications",
        f"telegram_status IN ({TELEGRAM_STATUSES})",
    )
    op.create_unique_constraint(
        op.f("uq_notifications_user_id_dedupe_key"), "notifications", ["user_id", "dedupe_key"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("uq_notifications_user_id_dedupe_key"), "notifications", type_="unique")
    op.drop_constraint(op.f("ck_notifications_telegram_status"), "notifications", type_="check")
    op.drop_column("notifications", "telegram_error")
    op.drop_column("notifications", "telegram_sent_at")
    op.drop_column("notifications", "telegram_status")
    op.drop_column("notifications", "dedupe_key")
    op.execute("DELETE FROM notifications WHERE type = 'signal_rejected'")
    op.drop_constraint(op.f("ck_notifications_type"), "notifications", type_="check")
    op.create_check_constraint(op.f("ck_notifications_type"), "notifications",
                               f"type IN ({OLD_TYPES})")  # fmt: skip
