"""Exchange keys: live or demo mode, a hint for masked listings, one active key per exchange.

- exchange_api_keys.mode: 'live' or 'demo' (the exchange's demo-trading environment).
- exchange_api_keys.api_key_hint: the key's last four characters, so listings need no
  decryption. Keys stored before this revision have none.
- At most one active key per (user_id, exchange), by a partial unique index. Before it is
  built, only the newest active key of each user and exchange stays active.
- The unique (user_id, exchange, label) constraint is replaced by a plain index on
  (user_id, exchange): a replacement key commonly keeps the label of the key it replaces,
  and the replaced key stays as a row (trades and positions refer to it).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEEP_NEWEST_ACTIVE = """
    UPDATE exchange_api_keys k SET is_active = false
    WHERE k.is_active AND EXISTS (
        SELECT 1 FROM exchange_api_keys newer
        WHERE newer.user_id = k.user_id AND newer.exchange = k.exchange AND newer.is_active
          AND (newer.created_at, newer.id) > (k.created_at, k.id))
"""
# The label constraint comes back on downgrade: a deactivated key gives up a label that an
# active or a newer key also has.
_FREE_DUPLICATE_LABELS = """
    UPDATE exchange_api_keys k SET label = NULL
    WHERE NOT k.is_active AND k.label IS NOT NULL AND EXISTS (
        SELECT 1 FROM exchange_api_keys o
        WHERE o.user_id = k.user_id AND o.exchange = k.exchange AND o.label = k.label
          AND o.id <> k.id AND (o.is_active OR (o.created_at, o.id) > (k.created_at, k.id)))
"""


def upgrade() -> None:
    op.add_column(
        "exchange_api_keys",
        sa.Column("mode", sa.String(length=10), server_default=sa.text("'live'"), nullable=False),
    )
    op.add_column(
        "exchange_api_keys", sa.Column("api_key_hint", sa.String(length=4), nullable=True)
    )
    op.create_check_constraint(
        op.f("ck_exchange_api_keys_mode"), "exchange_api_keys", "mode IN ('live', 'demo')"
    )
    op.create_index(
        op.f("ix_exchange_api_keys_user_id_exchange"),
        "exchange_api_keys",
        ["user_id", "exchange"],
    )
    op.drop_constraint(
        op.f("uq_exchange_api_keys_user_id_exchange_label"), "exchange_api_keys", type_="unique"
    )
    op.execute(_KEEP_NEWEST_ACTIVE)
    op.create_index(
        "uq_exchange_api_keys_active",
        "exchange_api_keys",
        ["user_id", "exchange"],
        unique=True,
        postgresql_where=sa.text("is_active"),
    )


def downgrade() -> None:
    op.drop_index("uq_exchange_api_keys_active", table_name="exchange_api_keys")
    op.execute(_FREE_DUPLICATE_LABELS)
    op.create_unique_constraint(
        op.f("uq_exchange_api_keys_user_id_exchange_label"),
        "exchange_api_keys",
        ["user_id", "exchange", "label"],
    )
    op.drop_index(op.f("ix_exchange_api_keys_user_id_exchange"), table_name="exchange_api_keys")
    # Without a mode every key is a live one: a demo key must not become one.
    op.execute("UPDATE exchange_api_keys SET is_active = false WHERE mode = 'demo'")
    op.drop_constraint(op.f("ck_exchange_api_keys_mode"), "exchange_api_keys", type_="check")
    op.drop_column("exchange_api_keys", "api_key_hint")
    op.drop_column("exchange_api_keys", "mode")
