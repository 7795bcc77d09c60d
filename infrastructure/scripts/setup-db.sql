-- JadeTrade bot engine: database schema, for setting up a database by hand.
--
-- Usage (PostgreSQL 14 or newer, with the pgvector extension available on the server):
--
--     psql -v ON_ERROR_STOP=1 -X -f setup-db.sql postgresql://USER@HOST:PORT/DBNAME
--
-- The script is idempotent: it runs on an empty database and can be run again on the same
-- database; objects that already exist are left as they are. It does NOT alter existing
-- tables, so it cannot bring an older schema up to date: that is what the engine's
-- migrations are for (`alembic upgrade head`). To let the migrations manage a database
-- set up with this script, mark it once as being at the first revision, from bot-engine/:
--
--     alembic -x url=postgresql://USER@HOST:PORT/DBNAME stamp head
--
-- CREATE EXTENSION needs a role allowed to create extensions (usually a superuser); if the
-- engine's role is not, have an administrator run `CREATE EXTENSION vector;` first.
--
-- Conventions: money, prices and quantities are NUMERIC(20, 8) (never floating point);
-- every timestamp is TIMESTAMPTZ; constraint and index names follow
-- pk_<table>, fk_<table>_<column>_<referenced table>, uq_<table>_<columns>,
-- ck_<table>_<rule>, ix_<table>_<columns>.

\set ON_ERROR_STOP on

BEGIN;

-- A second run reports every existing object as a NOTICE; keep the output to what matters.
SET LOCAL client_min_messages = warning;

-- Vector similarity search for the assistant's knowledge base.
CREATE EXTENSION IF NOT EXISTS vector;

-- Keeps updated_at current: attached as a BEFORE UPDATE trigger to every table that has one.
CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$;

-- ---------------------------------------------------------------------------------------
-- users: one row per account. id is the Cognito `sub` (local development accounts get a
-- UUID string from the engine). Holds the subscription tier and the chat allowance.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS users (
    id VARCHAR(255) NOT NULL,
    email VARCHAR(320) NOT NULL,
    subscription_tier VARCHAR(20) DEFAULT 'free' NOT NULL,
    chat_enabled BOOLEAN DEFAULT false NOT NULL,
    chat_messages_used INTEGER DEFAULT 0 NOT NULL,
    chat_messages_limit INTEGER DEFAULT 0 NOT NULL,  -- 0: the tier's monthly allowance
    telegram_chat_id VARCHAR(100),
    telegram_enabled BOOLEAN DEFAULT false NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    chat_usage_month DATE,  -- migration 0007: first day (UTC) of the month counted
    CONSTRAINT pk_users PRIMARY KEY (id),
    CONSTRAINT ck_users_tier CHECK (subscription_tier IN ('free', 'pro', 'enterprise')),
    CONSTRAINT ck_users_chat_messages_used CHECK (chat_messages_used >= 0),
    CONSTRAINT ck_users_chat_messages_limit CHECK (chat_messages_limit >= 0),
    CONSTRAINT uq_users_email UNIQUE (email)
);

-- ---------------------------------------------------------------------------------------
-- strategies: the catalogue of trading strategies (shared by all users), with the lowest
-- tier allowed to use each one and the JSON Schema of its parameters.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS strategies (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    is_active BOOLEAN DEFAULT true NOT NULL,
    min_tier VARCHAR(20) DEFAULT 'free' NOT NULL,
    supported_exchanges TEXT[] DEFAULT ARRAY['binance'::text] NOT NULL,
    risk_level VARCHAR(20) DEFAULT 'medium' NOT NULL,
    timeframe VARCHAR(10) DEFAULT '1h' NOT NULL,
    parameter_schema JSONB,
    default_parameters JSONB,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_strategies PRIMARY KEY (id),
    CONSTRAINT ck_strategies_min_tier CHECK (min_tier IN ('free', 'pro', 'enterprise')),
    CONSTRAINT ck_strategies_risk_level CHECK (risk_level IN ('low', 'medium', 'high')),
    CONSTRAINT ck_strategies_timeframe CHECK (timeframe IN ('1m', '3m', '5m', '15m', '30m',
        '1h', '2h', '4h', '6h', '8h', '12h', '1d', '3d', '1w', '1M')),
    CONSTRAINT uq_strategies_name UNIQUE (name)
);

-- ---------------------------------------------------------------------------------------
-- webhook_tokens: secrets users put in their TradingView alert URLs. Only the hex SHA-256
-- of a token is stored; token_prefix is a short, non-secret start of it shown in the UI.
-- A revoked token keeps its row (revoked_at set) so old alerts fail with a clear reason.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS webhook_tokens (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    user_id VARCHAR(255) NOT NULL,
    name VARCHAR(100) DEFAULT 'default' NOT NULL,
    token_hash VARCHAR(64) NOT NULL,
    token_prefix VARCHAR(16) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    last_used_at TIMESTAMP WITH TIME ZONE,
    revoked_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT pk_webhook_tokens PRIMARY KEY (id),
    CONSTRAINT ck_webhook_tokens_token_hash_hex CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT fk_webhook_tokens_user_id_users FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT uq_webhook_tokens_token_hash UNIQUE (token_hash)
);
CREATE INDEX IF NOT EXISTS ix_webhook_tokens_user_id ON webhook_tokens (user_id);

-- ---------------------------------------------------------------------------------------
-- exchange_api_keys: users' exchange credentials, encrypted by the engine (AES-256-GCM)
-- before they reach the database. Keys with withdrawal permission are refused outright.
-- mode: 'live' trades real funds, 'demo' the exchange's demo-trading environment.
-- api_key_hint: the key's last four characters, shown in listings without decrypting.
-- A user trades through at most one active key per exchange; labels need not be unique
-- (a replacement key often keeps the label of the key it replaces).
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS exchange_api_keys (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    user_id VARCHAR(255) NOT NULL,
    exchange VARCHAR(50) NOT NULL,
    label VARCHAR(100),
    api_key_encrypted TEXT NOT NULL,
    api_secret_encrypted TEXT NOT NULL,
    passphrase_encrypted TEXT,
    is_read_only BOOLEAN DEFAULT true NOT NULL,
    can_trade BOOLEAN DEFAULT false NOT NULL,
    can_withdraw BOOLEAN DEFAULT false NOT NULL,
    is_active BOOLEAN DEFAULT true NOT NULL,
    is_valid BOOLEAN DEFAULT true NOT NULL,
    last_used_at TIMESTAMP WITH TIME ZONE,
    last_validated_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    mode VARCHAR(10) DEFAULT 'live' NOT NULL,  -- migration 0005
    api_key_hint VARCHAR(4),                   -- migration 0005
    CONSTRAINT pk_exchange_api_keys PRIMARY KEY (id),
    CONSTRAINT ck_exchange_api_keys_no_withdraw CHECK (NOT can_withdraw),
    CONSTRAINT ck_exchange_api_keys_mode CHECK (mode IN ('live', 'demo')),
    CONSTRAINT fk_exchange_api_keys_user_id_users FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_exchange_api_keys_user_id_exchange
    ON exchange_api_keys (user_id, exchange);
CREATE UNIQUE INDEX IF NOT EXISTS uq_exchange_api_keys_active
    ON exchange_api_keys (user_id, exchange) WHERE is_active;

-- ---------------------------------------------------------------------------------------
-- user_risk_settings: one row per user; the limits checked before any order is sent.
-- Percentages are of account equity; max_position_size_usd is in US dollars.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS user_risk_settings (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    user_id VARCHAR(255) NOT NULL,
    max_position_size_usd NUMERIC(20, 2) DEFAULT 1000 NOT NULL,
    max_leverage INTEGER DEFAULT 10 NOT NULL,
    max_open_positions INTEGER DEFAULT 5 NOT NULL,
    max_daily_trades INTEGER DEFAULT 50 NOT NULL,
    max_daily_loss_percent NUMERIC(5, 2) DEFAULT 10 NOT NULL,
    max_portfolio_exposure_percent NUMERIC(5, 2) DEFAULT 80 NOT NULL,
    default_risk_per_trade_percent NUMERIC(5, 2) DEFAULT 2 NOT NULL,
    require_stop_loss BOOLEAN DEFAULT true NOT NULL,
    notify_on_trade BOOLEAN DEFAULT true NOT NULL,
    notify_on_stop_loss BOOLEAN DEFAULT true NOT NULL,
    notify_on_daily_loss_limit BOOLEAN DEFAULT true NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_user_risk_settings PRIMARY KEY (id),
    CONSTRAINT ck_user_risk_settings_max_position_size_usd CHECK (max_position_size_usd > 0),
    CONSTRAINT ck_user_risk_settings_max_leverage CHECK (max_leverage >= 1),
    CONSTRAINT ck_user_risk_settings_max_open_positions CHECK (max_open_positions >= 0),
    CONSTRAINT ck_user_risk_settings_max_daily_trades CHECK (max_daily_trades >= 0),
    CONSTRAINT ck_user_risk_settings_max_daily_loss_percent
        CHECK (max_daily_loss_percent > 0 AND max_daily_loss_percent <= 100),
    CONSTRAINT ck_user_risk_settings_max_portfolio_exposure_percent
        CHECK (max_portfolio_exposure_percent > 0 AND max_portfolio_exposure_percent <= 100),
    CONSTRAINT ck_user_risk_settings_default_risk_per_trade_percent
        CHECK (default_risk_per_trade_percent > 0 AND default_risk_per_trade_percent <= 100),
    CONSTRAINT uq_user_risk_settings_user_id UNIQUE (user_id),
    CONSTRAINT fk_user_risk_settings_user_id_users FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);

-- ---------------------------------------------------------------------------------------
-- trading_signals: every alert received (from TradingView, or made by the engine or a
-- person) and what became of it. dedupe_key identifies one alert: a redelivery of the
-- same alert violates uq_trading_signals_user_id_dedupe_key instead of trading twice.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS trading_signals (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    user_id VARCHAR(255) NOT NULL,
    strategy_id UUID,
    signal_type VARCHAR(20) NOT NULL,
    symbol VARCHAR(50) NOT NULL,
    exchange VARCHAR(50),
    price NUMERIC(20, 8),
    suggested_entry NUMERIC(20, 8),
    suggested_stop_loss NUMERIC(20, 8),
    suggested_take_profit NUMERIC(20, 8),
    source VARCHAR(50) DEFAULT 'tradingview' NOT NULL,
    raw_payload JSONB,
    dedupe_key VARCHAR(128),
    status VARCHAR(20) DEFAULT 'received' NOT NULL,
    processed_at TIMESTAMP WITH TIME ZONE,
    execution_result JSONB,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    -- arrival order: signals of one user and symbol execute in seq order
    seq BIGINT GENERATED ALWAYS AS IDENTITY NOT NULL,
    -- SHA-256 of the normalised alert without its token: "the same alert" in the window
    payload_hash VARCHAR(64),
    -- why the signal ended as it did, in words for the user
    status_reason TEXT,
    -- the alert's sizing instructions, normalised (raw_payload keeps what was sent)
    leverage INTEGER,
    requested_quantity NUMERIC(20, 8),
    requested_notional NUMERIC(20, 8),
    risk_percent NUMERIC(10, 4),
    CONSTRAINT pk_trading_signals PRIMARY KEY (id),
    CONSTRAINT ck_trading_signals_signal_type
        CHECK (signal_type IN ('long_entry', 'long_exit', 'short_entry', 'short_exit')),
    CONSTRAINT ck_trading_signals_source CHECK (source IN ('tradingview', 'internal', 'manual')),
    CONSTRAINT ck_trading_signals_status CHECK (status IN ('received', 'validated', 'queued',
        'executing', 'executed', 'failed', 'skipped', 'rejected', 'logged')),
    CONSTRAINT uq_trading_signals_user_id_dedupe_key UNIQUE (user_id, dedupe_key),
    CONSTRAINT uq_trading_signals_seq UNIQUE (seq),
    CONSTRAINT ck_trading_signals_leverage CHECK (leverage BETWEEN 1 AND 125),
    CONSTRAINT fk_trading_signals_user_id_users FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT fk_trading_signals_strategy_id_strategies FOREIGN KEY (strategy_id)
        REFERENCES strategies (id) ON DELETE SET NULL
);
CREATE INDEX IF NOT EXISTS ix_trading_signals_user_id_created_at
    ON trading_signals (user_id, created_at);
CREATE INDEX IF NOT EXISTS ix_trading_signals_strategy_id ON trading_signals (strategy_id);
CREATE INDEX IF NOT EXISTS ix_trading_signals_status ON trading_signals (status);
CREATE INDEX IF NOT EXISTS ix_trading_signals_user_id_payload_hash_created_at
    ON trading_signals (user_id, payload_hash, created_at);
-- the work still to do per (user, symbol), in arrival order: what the executor reads
CREATE INDEX IF NOT EXISTS ix_trading_signals_pending
    ON trading_signals (user_id, symbol, seq) WHERE status IN ('queued', 'executing');

-- ---------------------------------------------------------------------------------------
-- real_positions: positions held on an exchange, as the engine last saw them.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS real_positions (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    user_id VARCHAR(255) NOT NULL,
    api_key_id UUID,
    exchange VARCHAR(50) NOT NULL,
    symbol VARCHAR(50) NOT NULL,
    side VARCHAR(10) NOT NULL,
    status VARCHAR(20) DEFAULT 'open' NOT NULL,
    entry_price NUMERIC(20, 8) NOT NULL,
    current_price NUMERIC(20, 8),
    quantity NUMERIC(20, 8) NOT NULL,
    leverage INTEGER DEFAULT 1 NOT NULL,
    stop_loss NUMERIC(20, 8),
    take_profit NUMERIC(20, 8),
    trailing_stop_percent NUMERIC(5, 2),
    unrealized_pnl NUMERIC(20, 8),
    unrealized_pnl_percent NUMERIC(10, 4),
    realized_pnl NUMERIC(20, 8),
    margin NUMERIC(20, 8),
    liquidation_price NUMERIC(20, 8),
    signal_id UUID,
    strategy_id UUID,
    exchange_position_id VARCHAR(255),
    opened_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    closed_at TIMESTAMP WITH TIME ZONE,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_real_positions PRIMARY KEY (id),
    CONSTRAINT ck_real_positions_side CHECK (side IN ('long', 'short')),
    CONSTRAINT ck_real_positions_status CHECK (status IN ('open', 'closed')),
    CONSTRAINT ck_real_positions_entry_price_positive CHECK (entry_price > 0),
    CONSTRAINT ck_real_positions_quantity_not_negative CHECK (quantity >= 0),
    CONSTRAINT ck_real_positions_leverage CHECK (leverage >= 1),
    CONSTRAINT fk_real_positions_user_id_users FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT fk_real_positions_api_key_id_exchange_api_keys FOREIGN KEY (api_key_id)
        REFERENCES exchange_api_keys (id) ON DELETE SET NULL,
    CONSTRAINT fk_real_positions_signal_id_trading_signals FOREIGN KEY (signal_id)
        REFERENCES trading_signals (id) ON DELETE SET NULL,
    CONSTRAINT fk_real_positions_strategy_id_strategies FOREIGN KEY (strategy_id)
        REFERENCES strategies (id) ON DELETE SET NULL
);
CREATE INDEX IF NOT EXISTS ix_real_positions_user_id_status ON real_positions (user_id, status);
CREATE INDEX IF NOT EXISTS ix_real_positions_api_key_id ON real_positions (api_key_id);
CREATE INDEX IF NOT EXISTS ix_real_positions_signal_id ON real_positions (signal_id);
CREATE INDEX IF NOT EXISTS ix_real_positions_strategy_id ON real_positions (strategy_id);
-- one-way mode: at most one open position per user, exchange and symbol
CREATE UNIQUE INDEX IF NOT EXISTS uq_real_positions_open
    ON real_positions (user_id, exchange, symbol) WHERE status = 'open';

-- ---------------------------------------------------------------------------------------
-- real_trades: orders sent to an exchange and their fills. A row is written as `pending`
-- before the order is sent; `unknown` means the exchange's answer was lost and the order
-- must be looked up by client_order_id before anything is retried.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS real_trades (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    user_id VARCHAR(255) NOT NULL,
    api_key_id UUID,
    position_id UUID,
    exchange VARCHAR(50) NOT NULL,
    symbol VARCHAR(50) NOT NULL,
    side VARCHAR(10) NOT NULL,
    order_type VARCHAR(20) NOT NULL,
    reduce_only BOOLEAN DEFAULT false NOT NULL,
    quantity NUMERIC(20, 8) NOT NULL,
    price NUMERIC(20, 8),  -- NULL for market orders until filled
    filled_quantity NUMERIC(20, 8) DEFAULT 0 NOT NULL,
    avg_fill_price NUMERIC(20, 8),
    fee NUMERIC(20, 8),
    fee_currency VARCHAR(20),
    status VARCHAR(20) DEFAULT 'pending' NOT NULL,
    client_order_id VARCHAR(64),
    exchange_order_id VARCHAR(255),
    signal_id UUID,
    strategy_id UUID,
    realized_pnl NUMERIC(20, 8),
    realized_pnl_percent NUMERIC(10, 4),
    executed_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_real_trades PRIMARY KEY (id),
    CONSTRAINT ck_real_trades_side CHECK (side IN ('buy', 'sell')),
    CONSTRAINT ck_real_trades_order_type CHECK (order_type IN ('market', 'limit', 'stop_market',
        'stop_limit', 'take_profit_market', 'take_profit_limit')),
    CONSTRAINT ck_real_trades_status CHECK (status IN ('pending', 'open', 'partially_filled',
        'filled', 'canceled', 'failed', 'unknown')),
    CONSTRAINT ck_real_trades_quantity_positive CHECK (quantity > 0),
    CONSTRAINT ck_real_trades_filled_quantity_not_negative CHECK (filled_quantity >= 0),
    CONSTRAINT uq_real_trades_user_id_client_order_id UNIQUE (user_id, client_order_id),
    CONSTRAINT fk_real_trades_user_id_users FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT fk_real_trades_api_key_id_exchange_api_keys FOREIGN KEY (api_key_id)
        REFERENCES exchange_api_keys (id) ON DELETE SET NULL,
    CONSTRAINT fk_real_trades_position_id_real_positions FOREIGN KEY (position_id)
        REFERENCES real_positions (id) ON DELETE SET NULL,
    CONSTRAINT fk_real_trades_signal_id_trading_signals FOREIGN KEY (signal_id)
        REFERENCES trading_signals (id) ON DELETE SET NULL,
    CONSTRAINT fk_real_trades_strategy_id_strategies FOREIGN KEY (strategy_id)
        REFERENCES strategies (id) ON DELETE SET NULL
);
CREATE INDEX IF NOT EXISTS ix_real_trades_user_id_created_at ON real_trades (user_id, created_at);
CREATE INDEX IF NOT EXISTS ix_real_trades_user_id_executed_at ON real_trades (user_id, executed_at);
CREATE INDEX IF NOT EXISTS ix_real_trades_working ON real_trades (user_id, symbol)
    WHERE status IN ('pending', 'open', 'partially_filled', 'unknown');
CREATE INDEX IF NOT EXISTS ix_real_trades_unattached ON real_trades (user_id, symbol)
    WHERE position_id IS NULL;
CREATE INDEX IF NOT EXISTS ix_real_trades_status ON real_trades (status);
CREATE INDEX IF NOT EXISTS ix_real_trades_api_key_id ON real_trades (api_key_id);
CREATE INDEX IF NOT EXISTS ix_real_trades_position_id ON real_trades (position_id);
CREATE INDEX IF NOT EXISTS ix_real_trades_signal_id ON real_trades (signal_id);
CREATE INDEX IF NOT EXISTS ix_real_trades_strategy_id ON real_trades (strategy_id);

-- ---------------------------------------------------------------------------------------
-- bot_execution_logs: one row per attempt to execute a signal: timing, risk-check outcome
-- (NULL until the checks ran) and the error, if any.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS bot_execution_logs (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    user_id VARCHAR(255) NOT NULL,
    signal_id UUID,
    trade_id UUID,
    status VARCHAR(20) NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,
    duration_ms INTEGER,
    risk_check_passed BOOLEAN,
    risk_check_details JSONB,
    trade_executed BOOLEAN DEFAULT false NOT NULL,
    error_type VARCHAR(100),
    error_message TEXT,
    error_stack TEXT,
    retry_count INTEGER DEFAULT 0 NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_bot_execution_logs PRIMARY KEY (id),
    CONSTRAINT ck_bot_execution_logs_status
        CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    CONSTRAINT ck_bot_execution_logs_duration_ms CHECK (duration_ms >= 0),
    CONSTRAINT ck_bot_execution_logs_retry_count CHECK (retry_count >= 0),
    CONSTRAINT fk_bot_execution_logs_user_id_users FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT fk_bot_execution_logs_signal_id_trading_signals FOREIGN KEY (signal_id)
        REFERENCES trading_signals (id) ON DELETE SET NULL,
    CONSTRAINT fk_bot_execution_logs_trade_id_real_trades FOREIGN KEY (trade_id)
        REFERENCES real_trades (id) ON DELETE SET NULL
);
CREATE INDEX IF NOT EXISTS ix_bot_execution_logs_user_id_created_at
    ON bot_execution_logs (user_id, created_at);
CREATE INDEX IF NOT EXISTS ix_bot_execution_logs_signal_id ON bot_execution_logs (signal_id);
CREATE INDEX IF NOT EXISTS ix_bot_execution_logs_trade_id ON bot_execution_logs (trade_id);
CREATE INDEX IF NOT EXISTS ix_bot_execution_logs_status ON bot_execution_logs (status);

-- ---------------------------------------------------------------------------------------
-- chat_conversations / chat_messages: the AI assistant's conversations. Token counts are
-- kept per message for billing.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS chat_conversations (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    user_id VARCHAR(255) NOT NULL,
    title VARCHAR(255),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_chat_conversations PRIMARY KEY (id),
    CONSTRAINT fk_chat_conversations_user_id_users FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_chat_conversations_user_id_updated_at
    ON chat_conversations (user_id, updated_at);

CREATE TABLE IF NOT EXISTS chat_messages (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    conversation_id UUID NOT NULL,
    role VARCHAR(20) NOT NULL,
    content TEXT NOT NULL,
    input_tokens INTEGER,  -- excludes the cached part of the prompt
    output_tokens INTEGER,
    context_summary TEXT,  -- what of the user's account data went with the question
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    -- migration 0007: assistant messages, 'claude' or 'offline' (no language model)
    mode VARCHAR(20),
    model VARCHAR(100),
    stop_reason VARCHAR(30),
    cache_read_input_tokens INTEGER,
    cache_creation_input_tokens INTEGER,
    sources JSONB,  -- the knowledge passages the answer was given
    CONSTRAINT pk_chat_messages PRIMARY KEY (id),
    CONSTRAINT ck_chat_messages_role CHECK (role IN ('user', 'assistant', 'system')),
    CONSTRAINT ck_chat_messages_mode CHECK (mode IN ('claude', 'offline')),
    CONSTRAINT ck_chat_messages_input_tokens CHECK (input_tokens >= 0),
    CONSTRAINT ck_chat_messages_output_tokens CHECK (output_tokens >= 0),
    CONSTRAINT fk_chat_messages_conversation_id_chat_conversations FOREIGN KEY (conversation_id)
        REFERENCES chat_conversations (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_chat_messages_conversation_id_created_at
    ON chat_messages (conversation_id, created_at);

-- ---------------------------------------------------------------------------------------
-- knowledge_embeddings: passages of the assistant's knowledge base with their embedding.
-- source_id is `<document>#<chunk>`, so re-indexing a document is an upsert per passage.
-- embedding_model records which model made the vector (vectors of different models are
-- not comparable). The column has no fixed size; pgvector indexes one size at a time, so
-- each supported size (384: all-MiniLM-L6-v2, 1536: text-embedding-3-small) has a partial
-- HNSW index over the column cast to it. HNSW, unlike IVFFlat, needs no data to be built
-- well. search_vector serves full-text ranking beside vector search.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS knowledge_embeddings (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    source_type VARCHAR(50) NOT NULL,
    source_id VARCHAR(255) NOT NULL,
    title VARCHAR(500),
    content TEXT NOT NULL,
    content_hash VARCHAR(64) NOT NULL,  -- hex SHA-256 of the embedded text and model
    embedding VECTOR NOT NULL,
    embedding_model VARCHAR(100) NOT NULL,
    metadata JSONB,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    embedding_dimensions INTEGER NOT NULL,  -- migration 0007
    document VARCHAR(255) NOT NULL,
    chunk_index INTEGER DEFAULT 0 NOT NULL,
    search_vector TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('english', content), 'B')
    ) STORED,
    CONSTRAINT pk_knowledge_embeddings PRIMARY KEY (id),
    CONSTRAINT ck_knowledge_embeddings_source_type
        CHECK (source_type IN ('docs', 'faq', 'strategy', 'guide')),
    CONSTRAINT ck_knowledge_embeddings_embedding_dimensions
        CHECK (embedding_dimensions = vector_dims(embedding)),
    CONSTRAINT uq_knowledge_embeddings_source_type_source_id UNIQUE (source_type, source_id)
);
CREATE INDEX IF NOT EXISTS ix_knowledge_embeddings_embedding_384
    ON knowledge_embeddings USING hnsw ((embedding::vector(384)) vector_cosine_ops)
    WHERE embedding_dimensions = 384;
CREATE INDEX IF NOT EXISTS ix_knowledge_embeddings_embedding_1536
    ON knowledge_embeddings USING hnsw ((embedding::vector(1536)) vector_cosine_ops)
    WHERE embedding_dimensions = 1536;
CREATE INDEX IF NOT EXISTS ix_knowledge_embeddings_search_vector
    ON knowledge_embeddings USING gin (search_vector);
CREATE INDEX IF NOT EXISTS ix_knowledge_embeddings_source_type_document
    ON knowledge_embeddings (source_type, document);
CREATE INDEX IF NOT EXISTS ix_knowledge_embeddings_embedding_model
    ON knowledge_embeddings (embedding_model);

-- ---------------------------------------------------------------------------------------
-- audit_log: security-relevant actions (credentials, trades, settings). Rows outlive the
-- user they concern (user_id becomes NULL).
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS audit_log (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    user_id VARCHAR(255),
    action VARCHAR(100) NOT NULL,  -- e.g. 'api_key.create', 'trade.execute'
    resource_type VARCHAR(50),
    resource_id VARCHAR(255),
    ip_address INET,
    user_agent TEXT,
    old_value JSONB,
    new_value JSONB,
    success BOOLEAN DEFAULT true NOT NULL,
    error_message TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_audit_log PRIMARY KEY (id),
    CONSTRAINT fk_audit_log_user_id_users FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX IF NOT EXISTS ix_audit_log_user_id_created_at ON audit_log (user_id, created_at);
CREATE INDEX IF NOT EXISTS ix_audit_log_action ON audit_log (action);
CREATE INDEX IF NOT EXISTS ix_audit_log_created_at ON audit_log (created_at);

-- ---------------------------------------------------------------------------------------
-- notifications: messages shown to a user in the app, and whether they also went out by
-- e-mail, push or Telegram. The dedupe key stores a notification derived twice once.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS notifications (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    user_id VARCHAR(255) NOT NULL,
    type VARCHAR(50) NOT NULL,
    title VARCHAR(255) NOT NULL,
    message TEXT NOT NULL,
    related_type VARCHAR(50),
    related_id VARCHAR(255),
    is_read BOOLEAN DEFAULT false NOT NULL,
    read_at TIMESTAMP WITH TIME ZONE,
    email_sent BOOLEAN DEFAULT false NOT NULL,
    push_sent BOOLEAN DEFAULT false NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    dedupe_key VARCHAR(120),                    -- migration 0006
    telegram_status VARCHAR(10),                -- migration 0006
    telegram_sent_at TIMESTAMP WITH TIME ZONE,  -- migration 0006
    telegram_error VARCHAR(255),                -- migration 0006
    CONSTRAINT pk_notifications PRIMARY KEY (id),
    CONSTRAINT ck_notifications_type CHECK (type IN ('trade_executed', 'trade_failed',
        'position_closed', 'stop_loss_hit', 'take_profit_hit', 'daily_loss_limit',
        'daily_summary', 'system', 'signal_rejected')),
    CONSTRAINT ck_notifications_related_type CHECK (related_type IN ('trade', 'position', 'signal')),
    CONSTRAINT ck_notifications_telegram_status CHECK (telegram_status IN ('pending', 'sent',
        'failed')),
    CONSTRAINT uq_notifications_user_id_dedupe_key UNIQUE (user_id, dedupe_key),
    CONSTRAINT fk_notifications_user_id_users FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_notifications_user_id_created_at
    ON notifications (user_id, created_at);
CREATE INDEX IF NOT EXISTS ix_notifications_user_id_is_read ON notifications (user_id, is_read);

-- ---------------------------------------------------------------------------------------
-- price_history: OHLCV candles for backtests and charts. The unique constraint is also
-- the index for reading a range of candles of one market and timeframe.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS price_history (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    symbol VARCHAR(50) NOT NULL,
    exchange VARCHAR(50) NOT NULL,
    timeframe VARCHAR(10) NOT NULL,
    open_time TIMESTAMP WITH TIME ZONE NOT NULL,
    open NUMERIC(20, 8) NOT NULL,
    high NUMERIC(20, 8) NOT NULL,
    low NUMERIC(20, 8) NOT NULL,
    close NUMERIC(20, 8) NOT NULL,
    volume NUMERIC(30, 8),
    CONSTRAINT pk_price_history PRIMARY KEY (id),
    CONSTRAINT ck_price_history_timeframe CHECK (timeframe IN ('1m', '3m', '5m', '15m', '30m',
        '1h', '2h', '4h', '6h', '8h', '12h', '1d', '3d', '1w', '1M')),
    CONSTRAINT ck_price_history_high_low CHECK (high >= low),
    CONSTRAINT ck_price_history_volume CHECK (volume >= 0),
    CONSTRAINT uq_price_history_symbol_exchange_timeframe_open_time
        UNIQUE (symbol, exchange, timeframe, open_time)
);

-- updated_at triggers (CREATE OR REPLACE TRIGGER: PostgreSQL 14 or newer).
CREATE OR REPLACE TRIGGER trg_users_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE OR REPLACE TRIGGER trg_strategies_updated_at BEFORE UPDATE ON strategies
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE OR REPLACE TRIGGER trg_exchange_api_keys_updated_at BEFORE UPDATE ON exchange_api_keys
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE OR REPLACE TRIGGER trg_user_risk_settings_updated_at BEFORE UPDATE ON user_risk_settings
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE OR REPLACE TRIGGER trg_real_positions_updated_at BEFORE UPDATE ON real_positions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE OR REPLACE TRIGGER trg_real_trades_updated_at BEFORE UPDATE ON real_trades
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE OR REPLACE TRIGGER trg_chat_conversations_updated_at BEFORE UPDATE ON chat_conversations
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE OR REPLACE TRIGGER trg_knowledge_embeddings_updated_at BEFORE UPDATE ON knowledge_embeddings
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- =======================================================================================
-- Paper exchange
--
-- Migration 0002: the books of the simulated USDT-margined futures exchange the engine
-- trades on when no real exchange is configured. account_id is the id the engine trades
-- under (its user id) and deliberately has no foreign key to users: the exchange is
-- independent of the engine's schema, as a real one is.
-- =======================================================================================

-- paper_accounts: one USDT wallet per account. wallet_balance = deposits + realised PnL
-- - fees; it can go below zero (the paper exchange has no liquidation engine).
CREATE TABLE IF NOT EXISTS paper_accounts (
    account_id VARCHAR(255) NOT NULL,
    wallet_balance NUMERIC(20, 8) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    version BIGINT DEFAULT 0 NOT NULL,
    CONSTRAINT pk_paper_accounts PRIMARY KEY (account_id)
);

-- paper_orders: every accepted order (rejected requests store nothing). client_order_id is
-- unique per account: placing an order again with the same client id returns the first.
-- realized_pnl is what the order's fills closed, fees excluded; fee is charged separately.
CREATE TABLE IF NOT EXISTS paper_orders (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    account_id VARCHAR(255) NOT NULL,
    client_order_id VARCHAR(64) NOT NULL,
    symbol VARCHAR(50) NOT NULL,
    side VARCHAR(10) NOT NULL,
    type VARCHAR(20) NOT NULL,
    status VARCHAR(20) NOT NULL,
    quantity NUMERIC(20, 8) NOT NULL,
    filled_quantity NUMERIC(20, 8) DEFAULT 0 NOT NULL,
    avg_fill_price NUMERIC(20, 8),
    price NUMERIC(20, 8),  -- limit price
    stop_price NUMERIC(20, 8),  -- trigger price of stop / take-profit orders
    reduce_only BOOLEAN DEFAULT false NOT NULL,
    fee NUMERIC(20, 8) DEFAULT 0 NOT NULL,
    realized_pnl NUMERIC(20, 8) DEFAULT 0 NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_paper_orders PRIMARY KEY (id),
    CONSTRAINT fk_paper_orders_account_id_paper_accounts FOREIGN KEY (account_id)
        REFERENCES paper_accounts (account_id) ON DELETE CASCADE,
    CONSTRAINT ck_paper_orders_side CHECK (side IN ('buy', 'sell')),
    CONSTRAINT ck_paper_orders_type
        CHECK (type IN ('market', 'limit', 'stop_market', 'take_profit_market')),
    CONSTRAINT ck_paper_orders_status
        CHECK (status IN ('open', 'partially_filled', 'filled', 'canceled', 'rejected')),
    CONSTRAINT ck_paper_orders_quantity_positive CHECK (quantity > 0),
    CONSTRAINT ck_paper_orders_filled_quantity
        CHECK (filled_quantity >= 0 AND filled_quantity <= quantity),
    CONSTRAINT ck_paper_orders_price_positive CHECK (price > 0),
    CONSTRAINT ck_paper_orders_stop_price_positive CHECK (stop_price > 0),
    CONSTRAINT ck_paper_orders_avg_fill_price_positive CHECK (avg_fill_price > 0),
    CONSTRAINT ck_paper_orders_fee_not_negative CHECK (fee >= 0),
    CONSTRAINT ck_paper_orders_limit_has_price CHECK (type <> 'limit' OR price IS NOT NULL),
    CONSTRAINT ck_paper_orders_trigger_has_stop_price
        CHECK (type NOT IN ('stop_market', 'take_profit_market') OR stop_price IS NOT NULL),
    CONSTRAINT uq_paper_orders_account_id_client_order_id UNIQUE (account_id, client_order_id)
);
-- Working orders only: what the trigger worker scans every second.
CREATE INDEX IF NOT EXISTS ix_paper_orders_account_id_symbol ON paper_orders (account_id, symbol)
    WHERE status IN ('open', 'partially_filled');

-- paper_positions: net positions (one-way mode), one row per account and symbol while the
-- position is open; the row is deleted when it is closed.
CREATE TABLE IF NOT EXISTS paper_positions (
    account_id VARCHAR(255) NOT NULL,
    symbol VARCHAR(50) NOT NULL,
    side VARCHAR(10) NOT NULL,
    quantity NUMERIC(20, 8) NOT NULL,
    entry_price NUMERIC(20, 8) NOT NULL,
    leverage INTEGER NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_paper_positions PRIMARY KEY (account_id, symbol),
    CONSTRAINT fk_paper_positions_account_id_paper_accounts FOREIGN KEY (account_id)
        REFERENCES paper_accounts (account_id) ON DELETE CASCADE,
    CONSTRAINT ck_paper_positions_side CHECK (side IN ('long', 'short')),
    CONSTRAINT ck_paper_positions_quantity_positive CHECK (quantity > 0),
    CONSTRAINT ck_paper_positions_entry_price_positive CHECK (entry_price > 0),
    CONSTRAINT ck_paper_positions_leverage CHECK (leverage >= 1)
);

-- paper_leverage: the leverage chosen per account and symbol; it outlives positions.
CREATE TABLE IF NOT EXISTS paper_leverage (
    account_id VARCHAR(255) NOT NULL,
    symbol VARCHAR(50) NOT NULL,
    leverage INTEGER NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_paper_leverage PRIMARY KEY (account_id, symbol),
    CONSTRAINT fk_paper_leverage_account_id_paper_accounts FOREIGN KEY (account_id)
        REFERENCES paper_accounts (account_id) ON DELETE CASCADE,
    CONSTRAINT ck_paper_leverage_leverage CHECK (leverage >= 1)
);

CREATE OR REPLACE TRIGGER trg_paper_accounts_updated_at BEFORE UPDATE ON paper_accounts
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE OR REPLACE TRIGGER trg_paper_orders_updated_at BEFORE UPDATE ON paper_orders
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE OR REPLACE TRIGGER trg_paper_positions_updated_at BEFORE UPDATE ON paper_positions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE OR REPLACE TRIGGER trg_paper_leverage_updated_at BEFORE UPDATE ON paper_leverage
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
-- End of paper exchange.

COMMIT;
