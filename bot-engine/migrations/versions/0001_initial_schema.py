"""Initial schema: users, strategies, credentials, signals, orders, positions, risk, chat,
knowledge base, audit, notifications, candles; pgvector; the updated_at trigger.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables with an updated_at column kept current by the set_updated_at() trigger.
UPDATED_AT_TABLES = (
    "users",
    "strategies",
    "exchange_api_keys",
    "user_risk_settings",
    "real_positions",
    "real_trades",
    "chat_conversations",
    "knowledge_embeddings",
)

SET_UPDATED_AT = """CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$"""

TIERS = "'free', 'pro', 'enterprise'"
TIMEFRAMES = (
    "'1m', '3m', '5m', '15m', '30m', '1h', '2h', '4h', '6h', '8h', '12h', '1d', '3d', '1w', '1M'"
)


def _id() -> sa.Column[Any]:
    return sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False)


def _user_id(*, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column("user_id", sa.String(length=255), nullable=nullable)


def _timestamp(name: str) -> sa.Column[Any]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _flag(name: str, default: bool) -> sa.Column[Any]:
    return sa.Column(
        name, sa.Boolean(), server_default=sa.text("true" if default else "false"), nullable=False
    )


def _money(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.Numeric(precision=20, scale=8), nullable=nullable)


def _tz(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(SET_UPDATED_AT)

    op.create_table(
        "users",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column(
            "subscription_tier",
            sa.String(length=20),
            server_default=sa.text("'free'"),
            nullable=False,
        ),
        _flag("chat_enabled", False),
        sa.Column("chat_messages_used", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("chat_messages_limit", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("telegram_chat_id", sa.String(length=100), nullable=True),
        _flag("telegram_enabled", False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.CheckConstraint(f"subscription_tier IN ({TIERS})", name=op.f("ck_users_tier")),
        sa.CheckConstraint("chat_messages_used >= 0", name=op.f("ck_users_chat_messages_used")),
        sa.CheckConstraint("chat_messages_limit >= 0", name=op.f("ck_users_chat_messages_limit")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )

    op.create_table(
        "strategies",
        _id(),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        _flag("is_active", True),
        sa.Column(
            "min_tier", sa.String(length=20), server_default=sa.text("'free'"), nullable=False
        ),
        sa.Column(
            "supported_exchanges",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("ARRAY['binance'::text]"),
            nullable=False,
        ),
        sa.Column(
            "risk_level", sa.String(length=20), server_default=sa.text("'medium'"), nullable=False
        ),
        sa.Column(
            "timeframe", sa.String(length=10), server_default=sa.text("'1h'"), nullable=False
        ),
        sa.Column("parameter_schema", postgresql.JSONB(), nullable=True),
        sa.Column("default_parameters", postgresql.JSONB(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategies")),
        sa.CheckConstraint(f"min_tier IN ({TIERS})", name=op.f("ck_strategies_min_tier")),
        sa.CheckConstraint(
            "risk_level IN ('low', 'medium', 'high')", name=op.f("ck_strategies_risk_level")
        ),
        sa.CheckConstraint(f"timeframe IN ({TIMEFRAMES})", name=op.f("ck_strategies_timeframe")),
        sa.UniqueConstraint("name", name=op.f("uq_strategies_name")),
    )

    op.create_table(
        "webhook_tokens",
        _id(),
        _user_id(),
        sa.Column(
            "name", sa.String(length=100), server_default=sa.text("'default'"), nullable=False
        ),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_prefix", sa.String(length=16), nullable=False),
        _timestamp("created_at"),
        _tz("last_used_at"),
        _tz("revoked_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_tokens")),
        sa.CheckConstraint(
            "token_hash ~ '^[0-9a-f]{64}$'", name=op.f("ck_webhook_tokens_token_hash_hex")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_webhook_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("token_hash", name=op.f("uq_webhook_tokens_token_hash")),
    )
    op.create_index(op.f("ix_webhook_tokens_user_id"), "webhook_tokens", ["user_id"])

    op.create_table(
        "exchange_api_keys",
        _id(),
        _user_id(),
        sa.Column("exchange", sa.String(length=50), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=True),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("api_secret_encrypted", sa.Text(), nullable=False),
        sa.Column("passphrase_encrypted", sa.Text(), nullable=True),
        _flag("is_read_only", True),
        _flag("can_trade", False),
        _flag("can_withdraw", False),
        _flag("is_active", True),
        _flag("is_valid", True),
        _tz("last_used_at"),
        _tz("last_validated_at"),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_api_keys")),
        sa.UniqueConstraint(
            "user_id",
            "exchange",
            "label",
            name=op.f("uq_exchange_api_keys_user_id_exchange_label"),
        ),
        sa.CheckConstraint("NOT can_withdraw", name=op.f("ck_exchange_api_keys_no_withdraw")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_exchange_api_keys_user_id_users"),
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "user_risk_settings",
        _id(),
        _user_id(),
        sa.Column(
            "max_position_size_usd",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("1000"),
            nullable=False,
        ),
        sa.Column("max_leverage", sa.Integer(), server_default=sa.text("10"), nullable=False),
        sa.Column("max_open_positions", sa.Integer(), server_default=sa.text("5"), nullable=False),
        sa.Column("max_daily_trades", sa.Integer(), server_default=sa.text("50"), nullable=False),
        sa.Column(
            "max_daily_loss_percent",
            sa.Numeric(precision=5, scale=2),
            server_default=sa.text("10"),
            nullable=False,
        ),
        sa.Column(
            "max_portfolio_exposure_percent",
            sa.Numeric(precision=5, scale=2),
            server_default=sa.text("80"),
            nullable=False,
        ),
        sa.Column(
            "default_risk_per_trade_percent",
            sa.Numeric(precision=5, scale=2),
            server_default=sa.text("2"),
            nullable=False,
        ),
        _flag("require_stop_loss", True),
        _flag("notify_on_trade", True),
        _flag("notify_on_stop_loss", True),
        _flag("notify_on_daily_loss_limit", True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_risk_settings")),
        sa.CheckConstraint(
            "max_position_size_usd > 0", name=op.f("ck_user_risk_settings_max_position_size_usd")
        ),
        sa.CheckConstraint("max_leverage >= 1", name=op.f("ck_user_risk_settings_max_leverage")),
        sa.CheckConstraint(
            "max_open_positions >= 0", name=op.f("ck_user_risk_settings_max_open_positions")
        ),
        sa.CheckConstraint(
            "max_daily_trades >= 0", name=op.f("ck_user_risk_settings_max_daily_trades")
        ),
        sa.CheckConstraint(
            "max_daily_loss_percent > 0 AND max_daily_loss_percent <= 100",
            name=op.f("ck_user_risk_settings_max_daily_loss_percent"),
        ),
        sa.CheckConstraint(
            "max_portfolio_exposure_percent > 0 AND max_portfolio_exposure_percent <= 100",
            name=op.f("ck_user_risk_settings_max_portfolio_exposure_percent"),
        ),
        sa.CheckConstraint(
            "default_risk_per_trade_percent > 0 AND default_risk_per_trade_percent <= 100",
            name=op.f("ck_user_risk_settings_default_risk_per_trade_percent"),
        ),
        sa.UniqueConstraint("user_id", name=op.f("uq_user_risk_settings_user_id")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_risk_settings_user_id_users"),
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "trading_signals",
        _id(),
        _user_id(),
        sa.Column("strategy_id", sa.UUID(), nullable=True),
        sa.Column("signal_type", sa.String(length=20), nullable=False),
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("exchange", sa.String(length=50), nullable=True),
        _money("price"),
        _money("suggested_entry"),
        _money("suggested_stop_loss"),
        _money("suggested_take_profit"),
        sa.Column(
            "source", sa.String(length=50), server_default=sa.text("'tradingview'"), nullable=False
        ),
        sa.Column("raw_payload", postgresql.JSONB(), nullable=True),
        sa.Column("dedupe_key", sa.String(length=128), nullable=True),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'received'"), nullable=False
        ),
        _tz("processed_at"),
        sa.Column("execution_result", postgresql.JSONB(), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trading_signals")),
        sa.CheckConstraint(
            "signal_type IN ('long_entry', 'long_exit', 'short_entry', 'short_exit')",
            name=op.f("ck_trading_signals_signal_type"),
        ),
        sa.CheckConstraint(
            "source IN ('tradingview', 'internal', 'manual')",
            name=op.f("ck_trading_signals_source"),
        ),
        sa.CheckConstraint(
            "status IN ('received', 'validated', 'queued', 'executed', 'failed', 'skipped',"
            " 'rejected', 'logged')",
            name=op.f("ck_trading_signals_status"),
        ),
        sa.UniqueConstraint(
            "user_id", "dedupe_key", name=op.f("uq_trading_signals_user_id_dedupe_key")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_trading_signals_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_trading_signals_strategy_id_strategies"),
            ondelete="SET NULL",
        ),
    )
    op.create_index(
        op.f("ix_trading_signals_user_id_created_at"), "trading_signals", ["user_id", "created_at"]
    )
    op.create_index(op.f("ix_trading_signals_strategy_id"), "trading_signals", ["strategy_id"])
    op.create_index(op.f("ix_trading_signals_status"), "trading_signals", ["status"])

    op.create_table(
        "real_positions",
        _id(),
        _user_id(),
        sa.Column("api_key_id", sa.UUID(), nullable=True),
        sa.Column("exchange", sa.String(length=50), nullable=False),
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("side", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), server_default=sa.text("'open'"), nullable=False),
        _money("entry_price", nullable=False),
        _money("current_price"),
        _money("quantity", nullable=False),
        sa.Column("leverage", sa.Integer(), server_default=sa.text("1"), nullable=False),
        _money("stop_loss"),
        _money("take_profit"),
        sa.Column("trailing_stop_percent", sa.Numeric(precision=5, scale=2), nullable=True),
        _money("unrealized_pnl"),
        sa.Column("unrealized_pnl_percent", sa.Numeric(precision=10, scale=4), nullable=True),
        _money("realized_pnl"),
        _money("margin"),
        _money("liquidation_price"),
        sa.Column("signal_id", sa.UUID(), nullable=True),
        sa.Column("strategy_id", sa.UUID(), nullable=True),
        sa.Column("exchange_position_id", sa.String(length=255), nullable=True),
        _timestamp("opened_at"),
        _tz("closed_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_real_positions")),
        sa.CheckConstraint("side IN ('long', 'short')", name=op.f("ck_real_positions_side")),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_real_positions_status")),
        sa.CheckConstraint("entry_price > 0", name=op.f("ck_real_positions_entry_price_positive")),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_real_positions_quantity_not_negative")),
        sa.CheckConstraint("leverage >= 1", name=op.f("ck_real_positions_leverage")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_real_positions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["exchange_api_keys.id"],
            name=op.f("fk_real_positions_api_key_id_exchange_api_keys"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["trading_signals.id"],
            name=op.f("fk_real_positions_signal_id_trading_signals"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_real_positions_strategy_id_strategies"),
            ondelete="SET NULL",
        ),
    )
    op.create_index(
        op.f("ix_real_positions_user_id_status"), "real_positions", ["user_id", "status"]
    )
    op.create_index(op.f("ix_real_positions_api_key_id"), "real_positions", ["api_key_id"])
    op.create_index(op.f("ix_real_positions_signal_id"), "real_positions", ["signal_id"])
    op.create_index(op.f("ix_real_positions_strategy_id"), "real_positions", ["strategy_id"])

    op.create_table(
        "real_trades",
        _id(),
        _user_id(),
        sa.Column("api_key_id", sa.UUID(), nullable=True),
        sa.Column("position_id", sa.UUID(), nullable=True),
        sa.Column("exchange", sa.String(length=50), nullable=False),
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("side", sa.String(length=10), nullable=False),
        sa.Column("order_type", sa.String(length=20), nullable=False),
        _flag("reduce_only", False),
        _money("quantity", nullable=False),
        _money("price"),
        sa.Column(
            "filled_quantity",
            sa.Numeric(precision=20, scale=8),
            server_default=sa.text("0"),
            nullable=False,
        ),
        _money("avg_fill_price"),
        _money("fee"),
        sa.Column("fee_currency", sa.String(length=20), nullable=True),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("client_order_id", sa.String(length=64), nullable=True),
        sa.Column("exchange_order_id", sa.String(length=255), nullable=True),
        sa.Column("signal_id", sa.UUID(), nullable=True),
        sa.Column("strategy_id", sa.UUID(), nullable=True),
        _money("realized_pnl"),
        sa.Column("realized_pnl_percent", sa.Numeric(precision=10, scale=4), nullable=True),
        _tz("executed_at"),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_real_trades")),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_real_trades_side")),
        sa.CheckConstraint(
            "order_type IN ('market', 'limit', 'stop_market', 'stop_limit',"
            " 'take_profit_market', 'take_profit_limit')",
            name=op.f("ck_real_trades_order_type"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'open', 'partially_filled', 'filled', 'canceled', 'failed',"
            " 'unknown')",
            name=op.f("ck_real_trades_status"),
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_real_trades_quantity_positive")),
        sa.CheckConstraint(
            "filled_quantity >= 0", name=op.f("ck_real_trades_filled_quantity_not_negative")
        ),
        sa.UniqueConstraint(
            "user_id", "client_order_id", name=op.f("uq_real_trades_user_id_client_order_id")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_real_trades_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["exchange_api_keys.id"],
            name=op.f("fk_real_trades_api_key_id_exchange_api_keys"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["position_id"],
            ["real_positions.id"],
            name=op.f("fk_real_trades_position_id_real_positions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["trading_signals.id"],
            name=op.f("fk_real_trades_signal_id_trading_signals"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_real_trades_strategy_id_strategies"),
            ondelete="SET NULL",
        ),
    )
    op.create_index(
        op.f("ix_real_trades_user_id_created_at"), "real_trades", ["user_id", "created_at"]
    )
    op.create_index(op.f("ix_real_trades_status"), "real_trades", ["status"])
    op.create_index(op.f("ix_real_trades_api_key_id"), "real_trades", ["api_key_id"])
    op.create_index(op.f("ix_real_trades_position_id"), "real_trades", ["position_id"])
    op.create_index(op.f("ix_real_trades_signal_id"), "real_trades", ["signal_id"])
    op.create_index(op.f("ix_real_trades_strategy_id"), "real_trades", ["strategy_id"])

    op.create_table(
        "bot_execution_logs",
        _id(),
        _user_id(),
        sa.Column("signal_id", sa.UUID(), nullable=True),
        sa.Column("trade_id", sa.UUID(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        _tz("started_at"),
        _tz("completed_at"),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("risk_check_passed", sa.Boolean(), nullable=True),
        sa.Column("risk_check_details", postgresql.JSONB(), nullable=True),
        _flag("trade_executed", False),
        sa.Column("error_type", sa.String(length=100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_stack", sa.Text(), nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_execution_logs")),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'completed', 'failed')",
            name=op.f("ck_bot_execution_logs_status"),
        ),
        sa.CheckConstraint("duration_ms >= 0", name=op.f("ck_bot_execution_logs_duration_ms")),
        sa.CheckConstraint("retry_count >= 0", name=op.f("ck_bot_execution_logs_retry_count")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_bot_execution_logs_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["trading_signals.id"],
            name=op.f("fk_bot_execution_logs_signal_id_trading_signals"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["trade_id"],
            ["real_trades.id"],
            name=op.f("fk_bot_execution_logs_trade_id_real_trades"),
            ondelete="SET NULL",
        ),
    )
    op.create_index(
        op.f("ix_bot_execution_logs_user_id_created_at"),
        "bot_execution_logs",
        ["user_id", "created_at"],
    )
    op.create_index(op.f("ix_bot_execution_logs_signal_id"), "bot_execution_logs", ["signal_id"])
    op.create_index(op.f("ix_bot_execution_logs_trade_id"), "bot_execution_logs", ["trade_id"])
    op.create_index(op.f("ix_bot_execution_logs_status"), "bot_execution_logs", ["status"])

    op.create_table(
        "chat_conversations",
        _id(),
        _user_id(),
        sa.Column("title", sa.String(length=255), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_conversations")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_chat_conversations_user_id_users"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        op.f("ix_chat_conversations_user_id_updated_at"),
        "chat_conversations",
        ["user_id", "updated_at"],
    )

    op.create_table(
        "chat_messages",
        _id(),
        sa.Column("conversation_id", sa.UUID(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("context_summary", sa.Text(), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
        sa.CheckConstraint(
            "role IN ('user', 'assistant', 'system')", name=op.f("ck_chat_messages_role")
        ),
        sa.CheckConstraint("input_tokens >= 0", name=op.f("ck_chat_messages_input_tokens")),
        sa.CheckConstraint("output_tokens >= 0", name=op.f("ck_chat_messages_output_tokens")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["chat_conversations.id"],
            name=op.f("fk_chat_messages_conversation_id_chat_conversations"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        op.f("ix_chat_messages_conversation_id_created_at"),
        "chat_messages",
        ["conversation_id", "created_at"],
    )

    op.create_table(
        "knowledge_embeddings",
        _id(),
        sa.Column("source_type", sa.String(length=50), nullable=False),
        sa.Column("source_id", sa.String(length=255), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("embedding", Vector(384), nullable=False),
        sa.Column("embedding_model", sa.String(length=100), nullable=False),
        sa.Column("metadata", postgresql.JSONB(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_embeddings")),
        sa.CheckConstraint(
            "source_type IN ('docs', 'faq', 'strategy', 'guide')",
            name=op.f("ck_knowledge_embeddings_source_type"),
        ),
        sa.UniqueConstraint(
            "source_type",
            "source_id",
            name=op.f("uq_knowledge_embeddings_source_type_source_id"),
        ),
    )
    op.create_index(
        op.f("ix_knowledge_embeddings_embedding"),
        "knowledge_embeddings",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )

    op.create_table(
        "audit_log",
        _id(),
        _user_id(nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("resource_type", sa.String(length=50), nullable=True),
        sa.Column("resource_id", sa.String(length=255), nullable=True),
        sa.Column("ip_address", postgresql.INET(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("old_value", postgresql.JSONB(), nullable=True),
        sa.Column("new_value", postgresql.JSONB(), nullable=True),
        _flag("success", True),
        sa.Column("error_message", sa.Text(), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_audit_log_user_id_users"),
            ondelete="SET NULL",
        ),
    )
    op.create_index(op.f("ix_audit_log_user_id_created_at"), "audit_log", ["user_id", "created_at"])
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"])
    op.create_index(op.f("ix_audit_log_created_at"), "audit_log", ["created_at"])

    op.create_table(
        "notifications",
        _id(),
        _user_id(),
        sa.Column("type", sa.String(length=50), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("related_type", sa.String(length=50), nullable=True),
        sa.Column("related_id", sa.String(length=255), nullable=True),
        _flag("is_read", False),
        _tz("read_at"),
        _flag("email_sent", False),
        _flag("push_sent", False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.CheckConstraint(
            "type IN ('trade_executed', 'trade_failed', 'position_closed', 'stop_loss_hit',"
            " 'take_profit_hit', 'daily_loss_limit', 'daily_summary', 'system')",
            name=op.f("ck_notifications_type"),
        ),
        sa.CheckConstraint(
            "related_type IN ('trade', 'position', 'signal')",
            name=op.f("ck_notifications_related_type"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notifications_user_id_users"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        op.f("ix_notifications_user_id_created_at"), "notifications", ["user_id", "created_at"]
    )
    op.create_index(
        op.f("ix_notifications_user_id_is_read"), "notifications", ["user_id", "is_read"]
    )

    op.create_table(
        "price_history",
        _id(),
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("exchange", sa.String(length=50), nullable=False),
        sa.Column("timeframe", sa.String(length=10), nullable=False),
        sa.Column("open_time", sa.DateTime(timezone=True), nullable=False),
        _money("open", nullable=False),
        _money("high", nullable=False),
        _money("low", nullable=False),
        _money("close", nullable=False),
        sa.Column("volume", sa.Numeric(precision=30, scale=8), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_history")),
        sa.CheckConstraint(f"timeframe IN ({TIMEFRAMES})", name=op.f("ck_price_history_timeframe")),
        sa.CheckConstraint("high >= low", name=op.f("ck_price_history_high_low")),
        sa.CheckConstraint("volume >= 0", name=op.f("ck_price_history_volume")),
        sa.UniqueConstraint(
            "symbol",
            "exchange",
            "timeframe",
            "open_time",
            name=op.f("uq_price_history_symbol_exchange_timeframe_open_time"),
        ),
    )

    for table in UPDATED_AT_TABLES:
        op.execute(
            f"CREATE OR REPLACE TRIGGER trg_{table}_updated_at BEFORE UPDATE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
        )


def downgrade() -> None:
    # Dropping a table drops its indexes, constraints and triggers with it. The vector
    # extension stays: it may predate this schema, and dropping it needs more privileges.
    for table in (
        "price_history",
        "notifications",
        "audit_log",
        "knowledge_embeddings",
        "chat_messages",
        "chat_conversations",
        "bot_execution_logs",
        "real_trades",
        "real_positions",
        "trading_signals",
        "user_risk_settings",
        "exchange_api_keys",
        "webhook_tokens",
        "strategies",
        "users",
    ):
        op.drop_table(table)
    op.execute("DROP FUNCTION IF EXISTS set_updated_at()")
