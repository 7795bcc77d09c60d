"""The paper exchange's books: accounts (USDT wallets), orders, net positions and the
leverage chosen per symbol.

These tables belong to the paper exchange, not to the engine: `account_id` is whatever id
the engine trades under (its user id) but deliberately has no foreign key to `users`, so the
exchange stays independent of the engine's schema, as a real exchange is.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import (
    Base,
    bool_column,
    created_at_column,
    in_values,
    updated_at_column,
    uuid_pk,
)

PAPER_ORDER_SIDES = ("buy", "sell")
PAPER_ORDER_TYPES = ("market", "limit", "stop_market", "take_profit_market")
PAPER_ORDER_STATUSES = ("open", "partially_filled", "filled", "canceled", "rejected")
PAPER_POSITION_SIDES = ("long", "short")
# Statuses of orders still working; the partial index below holds only these.
PAPER_WORKING_STATUSES = ("open", "partially_filled")


def _account_id(*, primary_key: bool = False) -> Mapped[str]:
    return mapped_column(
        String(255),
        ForeignKey("paper_accounts.account_id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


class PaperAccount(Base):
    __tablename__ = "paper_accounts"

    account_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    # USDT: deposits + realised PnL - fees. May go below zero: there is no liquidation engine.
    wallet_balance: Mapped[Decimal] = mapped_column(nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    # Bumped by every write: a writer saves only if nobody wrote since it read the account.
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))


class PaperOrder(Base):
    __tablename__ = "paper_orders"
    __table_args__ = (
        CheckConstraint(in_values("side", PAPER_ORDER_SIDES), name="side"),
        CheckConstraint(in_values("type", PAPER_ORDER_TYPES), name="type"),
        CheckConstraint(in_values("status", PAPER_ORDER_STATUSES), name="status"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "filled_quantity >= 0 AND filled_quantity <= quantity", name="filled_quantity"
        ),
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint("stop_price > 0", name="stop_price_positive"),
        CheckConstraint("avg_fill_price > 0", name="avg_fill_price_positive"),
        CheckConstraint("fee >= 0", name="fee_not_negative"),
        CheckConstraint("type <> 'limit' OR price IS NOT NULL", name="limit_has_price"),
        CheckConstraint(
            "type NOT IN ('stop_market', 'take_profit_market') OR stop_price IS NOT NULL",
            name="trigger_has_stop_price",
        ),
        # create_order is idempotent on the client id: a second insert fails here.
        UniqueConstraint("account_id", "client_order_id"),
        # Working orders per account and symbol: what the trigger worker scans every second.
        Index(
            None,
            "account_id",
            "symbol",
            postgresql_where=text(in_values("status", PAPER_WORKING_STATUSES)),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[str] = _account_id()
    client_order_id: Mapped[str] = mapped_column(String(64), nullable=False)
    symbol: Mapped[str] = mapped_column(String(50), nullable=False)
    side: Mapped[str] = mapped_column(String(10), nullable=False)
    type: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    quantity: Mapped[Decimal] = mapped_column(nullable=False)
    filled_quantity: Mapped[Decimal] = mapped_column(nullable=False, server_default=text("0"))
    avg_fill_price: Mapped[Decimal | None]
    price: Mapped[Decimal | None]  # limit price
    stop_price: Mapped[Decimal | None]  # trigger price of stop / take-profit orders
    reduce_only: Mapped[bool] = bool_column(False)
    fee: Mapped[Decimal] = mapped_column(nullable=False, server_default=text("0"))
    # PnL the fills closed, fees excluded.
    realized_pnl: Mapped[Decimal] = mapped_column(nullable=False, server_default=text("0"))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class PaperPosition(Base):
    """A net position (one-way mode); the row is deleted when the position is closed."""

    __tablename__ = "paper_positions"
    __table_args__ = (
        CheckConstraint(in_values("side", PAPER_POSITION_SIDES), name="side"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("entry_price > 0", name="entry_price_positive"),
        CheckConstraint("leverage >= 1", name="leverage"),
    )

    account_id: Mapped[str] = _account_id(primary_key=True)
    symbol: Mapped[str] = mapped_column(String(50), primary_key=True)
    side: Mapped[str] = mapped_column(String(10), nullable=False)
    quantity: Mapped[Decimal] = mapped_column(nullable=False)
    entry_price: Mapped[Decimal] = mapped_column(nullable=False)
    leverage: Mapped[int] = mapped_column(nullable=False)
    updated_at: Mapped[datetime] = updated_at_column()


class PaperLeverage(Base):
    """Leverage chosen for a symbol; it outlives positions, as on a real exchange."""

    __tablename__ = "paper_leverage"
    __table_args__ = (CheckConstraint("leverage >= 1", name="leverage"),)

    account_id: Mapped[str] = _account_id(primary_key=True)
    symbol: Mapped[str] = mapped_column(String(50), primary_key=True)
    leverage: Mapped[int] = mapped_column(nullable=False)
    updated_at: Mapped[datetime] = updated_at_column()
