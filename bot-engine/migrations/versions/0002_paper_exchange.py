"""Paper exchange: accounts, orders, net positions and leverage per symbol.

The tables hold the books of the simulated futures exchange the engine trades on when no
real exchange is configured. No foreign key to `users`: the exchange is independent.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Created in this order, dropped in the reverse one.
TABLES = ("paper_accounts", "paper_orders", "paper_positions", "paper_leverage")


def _account_id(table: str) -> tuple[sa.Column[Any], sa.ForeignKeyConstraint]:
    column = sa.Column("account_id", sa.String(length=255), nullable=False)
    foreign_key = sa.ForeignKeyConstraint(
        ["account_id"],
        ["paper_accounts.account_id"],
        name=op.f(f"fk_{table}_account_id_paper_accounts"),
        ondelete="CASCADE",
    )
    return column, foreign_key


def _timestamp(name: str) -> sa.Column[Any]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _money(name: str, *, nullable: bool = True, zero_default: bool = False) -> sa.Column[Any]:
    return sa.Column(
        name,
        sa.Numeric(precision=20, scale=8),
        server_default=sa.text("0") if zero_default else None,
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "paper_accounts",
        sa.Column("account_id", sa.String(length=255), nullable=False),
        _money("wallet_balance", nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_paper_accounts")),
    )

    account_id, account_fk = _account_id("paper_orders")
    op.create_table(
        "paper_orders",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        account_id,
        sa.Column("client_order_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("side", sa.String(length=10), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        _money("quantity", nullable=False),
        _money("filled_quantity", nullable=False, zero_default=True),
        _money("avg_fill_price"),
        _money("price"),
        _money("stop_price"),
        sa.Column("reduce_only", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _money("fee", nullable=False, zero_default=True),
        _money("realized_pnl", nullable=False, zero_default=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_orders")),
        account_fk,
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_paper_orders_side")),
        sa.CheckConstraint(
            "type IN ('market', 'limit', 'stop_market', 'take_profit_market')",
            name=op.f("ck_paper_orders_type"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'partially_filled', 'filled', 'canceled', 'rejected')",
            name=op.f("ck_paper_orders_status"),
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_paper_orders_quantity_positive")),
        sa.CheckConstraint(
            "filled_quantity >= 0 AND filled_quantity <= quantity",
            name=op.f("ck_paper_orders_filled_quantity"),
        ),
        sa.CheckConstraint("price > 0", name=op.f("ck_paper_orders_price_positive")),
        sa.CheckConstraint("stop_price > 0", name=op.f("ck_paper_orders_stop_price_positive")),
        sa.CheckConstraint(
            "avg_fill_price > 0", name=op.f("ck_paper_orders_avg_fill_price_positive")
        ),
        sa.CheckConstraint("fee >= 0", name=op.f("ck_paper_orders_fee_not_negative")),
        sa.CheckConstraint(
            "type <> 'limit' OR price IS NOT NULL", name=op.f("ck_paper_orders_limit_has_price")
        ),
        sa.CheckConstraint(
            "type NOT IN ('stop_market', 'take_profit_market') OR stop_price IS NOT NULL",
            name=op.f("ck_paper_orders_trigger_has_stop_price"),
        ),
        sa.UniqueConstraint(
            "account_id",
            "client_order_id",
            name=op.f("uq_paper_orders_account_id_client_order_id"),
        ),
    )
    op.create_index(
        op.f("ix_paper_orders_account_id_symbol"),
        "paper_orders",
        ["account_id", "symbol"],
        postgresql_where=sa.text("status IN ('open', 'partially_filled')"),
    )

    account_id, account_fk = _account_id("paper_positions")
    op.create_table(
        "paper_positions",
        account_id,
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("side", sa.String(length=10), nullable=False),
        _money("quantity", nullable=False),
        _money("entry_price", nullable=False),
        sa.Column("leverage", sa.Integer(), nullable=False),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("account_id", "symbol", name=op.f("pk_paper_positions")),
        account_fk,
        sa.CheckConstraint("side IN ('long', 'short')", name=op.f("ck_paper_positions_side")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_paper_positions_quantity_positive")),
        sa.CheckConstraint("entry_price > 0", name=op.f("ck_paper_positions_entry_price_positive")),
        sa.CheckConstraint("leverage >= 1", name=op.f("ck_paper_positions_leverage")),
    )

    account_id, account_fk = _account_id("paper_leverage")
    op.create_table(
        "paper_leverage",
        account_id,
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("leverage", sa.Integer(), nullable=False),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("account_id", "symbol", name=op.f("pk_paper_leverage")),
        account_fk,
        sa.CheckConstraint("leverage >= 1", name=op.f("ck_paper_leverage_leverage")),
    )

    # set_updated_at() was created by revision 0001.
    for table in TABLES:
        op.execute(
            f"CREATE OR REPLACE TRIGGER trg_{table}_updated_at BEFORE UPDATE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
        )


def downgrade() -> None:
    # Dropping a table drops its indexes, constraints and trigger with it.
    for table in reversed(TABLES):
        op.drop_table(table)
