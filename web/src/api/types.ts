// Shapes of the engine's REST and WebSocket bodies (docs/api/openapi.yml, docs/api/websocket.md).
// Money, prices and quantities are decimal strings: they are shown as the engine sends them and
// never converted to binary floating point.

export type Decimal = string;

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface ChatAllowance {
  enabled: boolean;
  used: number;
  limit: number;
  resets_at: string;
}

export interface Me {
  id: string;
  email: string;
  subscription_tier: string;
  chat_enabled: boolean;
  telegram_enabled: boolean;
  created_at: string;
  chat: ChatAllowance;
}

export type SignalStatus = "queued" | "executing" | "executed" | "rejected" | "skipped" | "failed" | "logged";

export interface Signal {
  id: string;
  seq: number;
  signal_type: string;
  symbol: string;
  exchange: string | null;
  status: SignalStatus | string;
  status_reason: string | null;
  price: Decimal | null;
  suggested_stop_loss: Decimal | null;
  suggested_take_profit: Decimal | null;
  strategy_id: string | null;
  source: string;
  raw_payload?: Record<string, unknown> | null;
  execution_result?: Record<string, unknown> | null;
  created_at: string;
  processed_at: string | null;
}

/** `signal_update` carries only part of a signal. */
export type SignalUpdate = Pick<Signal, "id" | "symbol" | "signal_type" | "status" | "status_reason"> & {
  execution_result?: Record<string, unknown> | null;
};

export interface Trade {
  id: string;
  signal_id: string | null;
  position_id: string | null;
  exchange: string;
  symbol: string;
  side: "buy" | "sell" | string;
  order_type: string;
  reduce_only: boolean;
  status: string;
  quantity: Decimal;
  price: Decimal | null;
  filled_quantity: Decimal;
  avg_fill_price: Decimal | null;
  fee: Decimal | null;
  fee_currency: string | null;
  realized_pnl: Decimal | null;
  client_order_id: string | null;
  exchange_order_id: string | null;
  executed_at: string | null;
  created_at: string;
}

export interface Position {
  id: string;
  exchange: string;
  symbol: string;
  side: "long" | "short" | string;
  status: "open" | "closed" | string;
  quantity: Decimal;
  entry_price: Decimal;
  current_price: Decimal | null;
  leverage: number;
  stop_loss: Decimal | null;
  take_profit: Decimal | null;
  unrealized_pnl: Decimal | null;
  realized_pnl: Decimal | null;
  margin: Decimal | null;
  liquidation_price: Decimal | null;
  signal_id: string | null;
  opened_at: string;
  closed_at: string | null;
}

export interface CloseRequested {
  status?: string;
  message: string;
  signal_id: string;
}

export interface AccountSummary {
  exchange: string;
  equity: Decimal | null;
  wallet_balance: Decimal | null;
  unrealized_pnl: Decimal;
  realized_pnl_today: Decimal;
  trades_today: number;
  open_positions: number;
  as_of: string;
}

export interface RiskSettings {
  max_position_size_usd: Decimal;
  max_leverage: number;
  max_open_positions: number;
  max_daily_trades: number;
  max_daily_loss_percent: Decimal;
  max_portfolio_exposure_percent: Decimal;
  default_risk_per_trade_percent: Decimal;
  require_stop_loss: boolean;
  notify_on_trade: boolean;
  notify_on_stop_loss: boolean;
  notify_on_daily_loss_limit: boolean;
  updated_at: string;
}

export type RiskSettingsUpdate = Partial<Omit<RiskSettings, "updated_at">>;

export interface KeyPermissions {
  can_read: boolean;
  can_trade: boolean;
  can_withdraw: boolean;
}

export interface ExchangeKey {
  id: string;
  exchange: string;
  mode: string;
  label: string | null;
  api_key_hint: string;
  permissions: KeyPermissions;
  is_active: boolean;
  is_valid: boolean;
  last_used_at: string | null;
  last_validated_at: string | null;
  created_at: string;
}

export interface ExchangeKeyIn {
  exchange: string;
  mode: string;
  label?: string | null;
  api_key: string;
  api_secret: string;
  passphrase?: string | null;
}

export interface WebhookToken {
  id: string;
  name: string;
  token_prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface WebhookTokenIssued extends WebhookToken {
  token: string;
}

export interface AuthOptions {
  auth_mode: "local" | "cognito";
  dev_token: boolean;
  webhook_url: string;
}

export interface DevToken {
  access_token: string;
  token_type: "bearer";
  expires_in: number;
  user_id: string;
}

export interface Notification {
  id: string;
  type: string;
  title: string;
  message: string;
  related_type: string | null;
  related_id: string | null;
  is_read: boolean;
  read_at: string | null;
  telegram_status: string | null;
  created_at: string;
}

export interface PriceUpdate {
  symbol: string;
  exchange: string;
  price: Decimal;
}

/** One server message on `/ws/connect`. */
export interface ServerMessage<T = unknown> {
  seq: number;
  type: string;
  ts: string;
  data?: T;
}
