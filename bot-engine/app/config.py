"""Engine settings, read from the environment (and an optional `.env` file).

Every setting has a development default so the engine runs locally with no configuration.
`Settings.problems()` lists what is unfit for production; `load_settings()` refuses to hand
out production settings that have any. Nothing here runs at import time.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Published development-only values. Production refuses every one of them.
DEV_ENCRYPTION_KEY = "00" * 31 + "de"
DEV_COGNITO_USER_POOL_ID = "us-east-1_localdev"
DEV_COGNITO_APP_CLIENT_ID = "jadetrade-local-client"
# Claude models the Messages API no longer serves (a request naming one fails).
RETIRED_MODELS = frozenset(
    {
        "claude-sonnet-4-20250514",
        "claude-opus-4-20250514",
        "claude-3-7-sonnet-20250219",
        "claude-3-5-sonnet-20241022",
        "claude-3-5-haiku-20241022",
        "claude-3-opus-20240229",
        "claude-3-haiku-20240307",
    }
)
# Hosts a production URL must not name: compared with, never bound.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", ""})  # noqa: S104  # nosec B104


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


class AuthMode(StrEnum):
    """Where access tokens come from: AWS Cognito, or the engine's own local issuer."""

    COGNITO = "cognito"
    LOCAL = "local"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


def _default_local_dir() -> Path:
    """`.local/` at the repository root when running from a checkout, else in the cwd."""
    package_dir = Path(__file__).resolve().parent
    repo = package_dir.parent.parent
    if (repo / "bot-engine").is_dir() and (repo / "Makefile").is_file():
        return repo / ".local"
    return Path.cwd() / ".local"


def _default_web_dir() -> Path | None:
    """`web/dist/` of the checkout the engine runs from, once the dashboard has been built."""
    folder = Path(__file__).resolve().parent.parent.parent / "web" / "dist"
    return folder if (folder / "index.html").is_file() else None


def _default_knowledge_dir() -> Path | None:
    """`docs/knowledge/` of the checkout the engine runs from, if there is one."""
    folder = Path(__file__).resolve().parent.parent.parent / "docs" / "knowledge"
    return folder if folder.is_dir() else None


class ConfigurationError(Exception):
    """Settings that must not be used; `problems` names each bad setting."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"refusing to start with this configuration:\n{lines}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=True,
        extra="ignore",
    )

    # Environment
    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    DEBUG: bool = False

    # Server
    HOST: str = "127.0.0.1"
    PORT: int = Field(default=8000, ge=1, le=65535)
    PUBLIC_URL: str | None = None  # how TradingView and browsers reach us; defaults to HOST:PORT
    CORS_ORIGINS: list[str] = Field(default_factory=list)

    # Database. None in development means "use the embedded PostgreSQL under LOCAL_DIR".
    DATABASE_URL: SecretStr | None = None
    DATABASE_POOL_SIZE: int = Field(default=20, ge=1)
    DATABASE_MAX_OVERFLOW: int = Field(default=10, ge=0)

    # Redis. None in development means "use the embedded Redis under LOCAL_DIR".
    REDIS_URL: SecretStr | None = None

    # Authentication
    AUTH_MODE: AuthMode | None = None  # default: local in development/test, cognito otherwise
    COGNITO_REGION: str = "us-east-1"
    COGNITO_USER_POOL_ID: str = DEV_COGNITO_USER_POOL_ID
    COGNITO_APP_CLIENT_ID: str = DEV_COGNITO_APP_CLIENT_ID
    COGNITO_ISSUER: str | None = None  # override of the issuer URL derived from region and pool
    JWKS_CACHE_SECONDS: int = Field(default=3600, ge=0)
    JWKS_MIN_REFRESH_SECONDS: int = Field(default=30, ge=0)  # throttle refreshes on unknown kid
    JWT_LEEWAY_SECONDS: int = Field(default=30, ge=0)
    DEV_TOKEN_TTL_SECONDS: int = Field(default=12 * 3600, ge=60)
    # Who may ask `POST /api/auth/dev-token` for the demo user's token (local auth mode only):
    # callers on this machine, anyone who reaches the engine (a container on a dev laptop), or
    # nobody.
    DEV_SIGN_IN: Literal["loopback", "any", "off"] = "loopback"

    # The web dashboard's built files, served at `/` (none: the engine serves only its API).
    WEB_DIST_DIR: Path | None = Field(default_factory=_default_web_dir)

    # Encryption of exchange credentials (AES-256-GCM): 64 hex characters.
    ENCRYPTION_KEY: SecretStr = SecretStr(DEV_ENCRYPTION_KEY)
    # Earlier keys, still readable while `jadetrade keys rotate` re-encrypts under the active
    # one; dropped once rotation is done. A JSON list: '["<64 hex>", ...]'.
    ENCRYPTION_KEYS_RETIRED: list[SecretStr] = Field(default_factory=list)

    # AI assistant. Without ANTHROPIC_API_KEY the chat answers in offline mode: retrieved
    # knowledge passages and the user's own data, no language model.
    ANTHROPIC_API_KEY: SecretStr | None = None
    ANTHROPIC_BASE_URL: str | None = None  # a gateway or local stand-in of the Messages API
    AI_MODEL: str = "claude-sonnet-5-5"
    AI_MAX_TOKENS: int = Field(default=2048, ge=1, le=64_000)
    AI_TIMEOUT_S: float = Field(default=60.0, gt=0)  # one model request, streaming included
    AI_MAX_TOOL_ROUNDS: int = Field(default=3, ge=0, le=10)  # read-only look-ups per answer
    # Monthly assistant answers per tier, unless a user's own `chat_messages_limit` is set.
    CHAT_MONTHLY_MESSAGES_PRO: int = Field(default=300, ge=0)
    CHAT_MONTHLY_MESSAGES_ENTERPRISE: int = Field(default=5000, ge=0)
    CHAT_MAX_MESSAGE_CHARS: int = Field(default=4000, ge=1)
    CHAT_MAX_HISTORY_MESSAGES: int = Field(default=20, ge=0)  # earlier turns sent back
    # Knowledge base: embeddings (auto: OpenAI when OPENAI_API_KEY is set, else the local
    # offline model) and retrieval.
    EMBEDDING_PROVIDER: Literal["auto", "local", "openai"] = "auto"
    OPENAI_API_KEY: SecretStr | None = None
    OPENAI_BASE_URL: str | None = None
    OPENAI_EMBEDDING_MODEL: Literal["text-embedding-3-small", "text-embedding-3-large"] = (
        "text-embedding-3-small"
    )
    KB_SEARCH_LIMIT: int = Field(default=4, ge=1, le=20)  # passages given with a question
    # The documents `jadetrade run` indexes on start (`jadetrade kb index` takes any folder).
    KNOWLEDGE_DIR: Path | None = Field(default_factory=_default_knowledge_dir)

    # Logging: JSON lines on stdout, for a log agent (Alloy) to ship. LOKI_URL also pushes
    # them straight to Loki from the process, batched in the background; a slow or absent
    # Loki costs dropped lines (counted in /metrics), never a slow request.
    LOG_LEVEL: str = "INFO"
    LOG_FORMAT: LogFormat = LogFormat.JSON
    LOKI_URL: str | None = None  # e.g. http://loki:3100 (the push path is appended)
    LOKI_TENANT_ID: str | None = None  # sent as X-Scope-OrgID (multi-tenant Loki)
    LOKI_USERNAME: str | None = None  # basic auth (a hosted Loki)
    LOKI_PASSWORD: SecretStr | None = None
    LOKI_BATCH_LINES: int = Field(default=500, ge=1, le=10_000)
    LOKI_FLUSH_INTERVAL_S: float = Field(default=1.0, gt=0, le=60)
    LOKI_BUFFER_LINES: int = Field(default=10_000, ge=1)  # waiting lines; beyond: dropped
    LOKI_TIMEOUT_S: float = Field(default=3.0, gt=0, le=60)
    # Frontend log batches (`POST /api/logs`) per client address and minute.
    FRONTEND_LOG_RATE_LIMIT: int = Field(default=60, ge=1)

    # Metrics: a worker process (`jadetrade worker`) serves its own /metrics here (0: none).
    WORKER_METRICS_PORT: int = Field(default=9101, ge=0, le=65535)

    # Rate limiting (per minute)
    WEBHOOK_RATE_LIMIT: int = Field(default=30, ge=1)
    # Missing or unknown webhook tokens one source address may send per minute before every
    # webhook from it is refused for the rest of the minute (TradingView's own addresses are
    # exempt: a user's mistyped token must not block everyone's alerts).
    WEBHOOK_BAD_TOKEN_LIMIT: int = Field(default=10, ge=1)
    API_RATE_LIMIT: int = Field(default=100, ge=1)

    # Webhook intake
    DEDUPE_WINDOW_S: int = Field(default=60, ge=1)  # same user + payload inside it = duplicate
    MAX_ALERT_AGE_S: int | None = Field(default=None, ge=1)  # refuse alerts whose timenow is older
    TRADINGVIEW_IP_ALLOWLIST: bool = False  # accept webhooks only from TradingView's addresses
    TRADINGVIEW_IPS: list[str] = Field(
        default_factory=lambda: ["52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7"]
    )
    TRUSTED_PROXIES: list[str] = Field(default_factory=list)  # whose X-Forwarded-For we believe

    # Trading
    DEFAULT_EXCHANGE: str = "paper"
    SUPPORTED_EXCHANGES: list[str] = Field(default_factory=lambda: ["paper", "binance", "bybit"])
    MAX_EXECUTION_TIME_MS: int = Field(default=5000, ge=1)
    DEFAULT_SLIPPAGE_PERCENT: Decimal = Field(default=Decimal("0.1"), ge=0, le=100)
    WORKER_CONCURRENCY: int = Field(default=4, ge=1)
    MAX_DELIVERIES: int = Field(default=5, ge=1)  # attempts before a signal is dead-lettered
    # A doorbell unacknowledged this long belongs to a dead consumer and is taken over.
    WORKER_RECLAIM_IDLE_MS: int = Field(default=30_000, ge=100)

    # Live exchanges (Binance, Bybit)
    EXCHANGE_TIMEOUT_MS: int = Field(default=10_000, ge=100)
    # The address exchange requests leave from: every replica behind it shares its request
    # weight budget (Binance limits weight per IP).
    EXCHANGE_EGRESS_ID: str = "default"
    # Replacement API URLs per exchange, for a local stand-in of the exchange:
    # '{"binance": {"fapiPrivate": "http://127.0.0.1:9000/fapi/v1", ...}}'. Refused in production.
    EXCHANGE_API_URLS: dict[str, dict[str, str]] = Field(default_factory=dict)
    # How often open positions and working orders on live exchanges are reconciled.
    POSITION_SYNC_INTERVAL_S: float = Field(default=15.0, gt=0)

    # Public market streams per exchange (ccxt.pro `watch_ticker`), replaced for a local
    # stand-in of the exchange: '{"binance": "ws://127.0.0.1:9001/ws"}'. Refused in production.
    EXCHANGE_WS_URLS: dict[str, str] = Field(default_factory=dict)

    # Real time: WebSocket connections and price updates
    # Messages waiting for one client; a client this far behind is disconnected (code 4008).
    WS_SEND_QUEUE_SIZE: int = Field(default=256, ge=1)
    # An idle connection gets a `ping` message this often (keeps proxies from closing it).
    WS_HEARTBEAT_S: float = Field(default=25.0, gt=0)
    # Protocol-level pings: a peer that does not answer one in time is dead and disconnected.
    WS_PING_INTERVAL_S: float = Field(default=20.0, gt=0)
    WS_PING_TIMEOUT_S: float = Field(default=20.0, gt=0)
    WS_MAX_CONNECTIONS_PER_USER: int = Field(default=20, ge=1)
    # At most one price update per symbol and exchange this often.
    PRICE_UPDATE_INTERVAL_S: float = Field(default=1.0, gt=0)

    # Notifications: Telegram Bot API (no token: in-app notifications only)
    TELEGRAM_BOT_TOKEN: SecretStr | None = None
    TELEGRAM_API_URL: str = "https://api.telegram.org"
    # Attempts to deliver one Telegram message before it is marked failed.
    TELEGRAM_MAX_ATTEMPTS: int = Field(default=5, ge=1)

    # Paper exchange
    PAPER_STARTING_BALANCE: Decimal = Field(default=Decimal("10000"), gt=0)
    PAPER_TAKER_FEE_RATE: Decimal = Field(default=Decimal("0.0004"), ge=0, lt=1)
    PAPER_PRICE_SEED: int = 0
    # Where paper prices come from: a deterministic offline market, or a real exchange's public
    # tickers through ccxt (needs internet access; no API key).
    PAPER_PRICE_SOURCE: Literal["synthetic", "live"] = "synthetic"
    PAPER_LIVE_EXCHANGE: str = "binanceusdm"

    # Embedded local stack (development and tests only)
    LOCAL_DIR: Path = Field(default_factory=_default_local_dir)
    LOCAL_PG_PORT: int = Field(default=55432, ge=1, le=65535)
    LOCAL_REDIS_PORT: int = Field(default=56379, ge=1, le=65535)

    @field_validator("LOG_LEVEL")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper

    # ----------------------------------------------------------------- derived values
    @property
    def is_production(self) -> bool:
        return self.ENVIRONMENT == Environment.PRODUCTION

    @property
    def is_local(self) -> bool:
        """Development and test: the embedded stack and the local token issuer are allowed."""
        return self.ENVIRONMENT in (Environment.DEVELOPMENT, Environment.TEST)

    @property
    def auth_mode(self) -> AuthMode:
        if self.AUTH_MODE is not None:
            return self.AUTH_MODE
        return AuthMode.LOCAL if self.is_local else AuthMode.COGNITO

    @property
    def cognito_issuer(self) -> str:
        if self.COGNITO_ISSUER:
            return self.COGNITO_ISSUER.rstrip("/")
        return (
            f"https://cognito-idp.{self.COGNITO_REGION}.amazonaws.com/{self.COGNITO_USER_POOL_ID}"
        )

    @property
    def public_url(self) -> str:
        if self.PUBLIC_URL:
            return self.PUBLIC_URL.rstrip("/")
        # A wildcard bind address is no host for a URL: compared with, never bound.
        host = "127.0.0.1" if self.HOST in ("0.0.0.0", "::") else self.HOST  # noqa: S104  # nosec B104
        return f"http://{host}:{self.PORT}"

    @property
    def local_issuer(self) -> str:
        """Issuer (`iss`) of tokens minted by the local development issuer."""
        return f"{self.public_url}/local-issuer"

    @property
    def encryption_key_bytes(self) -> bytes:
        return bytes.fromhex(self.ENCRYPTION_KEY.get_secret_value())

    # ----------------------------------------------------------------- validation
    def problems(self) -> list[str]:
        """Everything that makes these settings unfit to run with; empty when fit."""
        found: list[str] = []
        key = self.ENCRYPTION_KEY.get_secret_value()
        if not re.fullmatch(r"[0-9a-fA-F]{64}", key):
            found.append("ENCRYPTION_KEY must be 64 hexadecimal characters (32 bytes)")
        for position, retired in enumerate(self.ENCRYPTION_KEYS_RETIRED, start=1):
            value = retired.get_secret_value()
            if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
                found.append(
                    f"ENCRYPTION_KEYS_RETIRED entry {position} must be 64 hexadecimal characters"
                )
            elif value.lower() == key.lower():
                found.append(
                    f"ENCRYPTION_KEYS_RETIRED entry {position} is the active ENCRYPTION_KEY"
                )
        if self.AI_MODEL in RETIRED_MODELS:
            found.append(f"AI_MODEL {self.AI_MODEL!r} is retired; choose a current model")
        if not self.is_production:
            return found

        if key.lower() == DEV_ENCRYPTION_KEY:
            found.append("ENCRYPTION_KEY is the published development key; generate a new one")
        if self.EXCHANGE_API_URLS:
            found.append(
                "EXCHANGE_API_URLS must be empty in production (it replaces the exchanges)"
            )
        if self.EXCHANGE_WS_URLS:
            found.append("EXCHANGE_WS_URLS must be empty in production (it replaces the exchanges)")
        if self.TELEGRAM_API_URL != "https://api.telegram.org":
            found.append("TELEGRAM_API_URL must be https://api.telegram.org in production")
        if self.auth_mode != AuthMode.COGNITO:
            found.append("AUTH_MODE must be 'cognito' in production (the local issuer is dev-only)")
        if self.COGNITO_USER_POOL_ID in ("", DEV_COGNITO_USER_POOL_ID):
            found.append("COGNITO_USER_POOL_ID is missing or the development default")
        if self.COGNITO_APP_CLIENT_ID in ("", DEV_COGNITO_APP_CLIENT_ID):
            found.append("COGNITO_APP_CLIENT_ID is missing or the development default")
        if self.COGNITO_ISSUER and not self.COGNITO_ISSUER.startswith("https://"):
            found.append("COGNITO_ISSUER must be an https:// URL")
        for name, url in (("DATABASE_URL", self.DATABASE_URL), ("REDIS_URL", self.REDIS_URL)):
            found.extend(_url_problems(name, url))
        if "*" in self.CORS_ORIGINS:
            found.append("CORS_ORIGINS must list origins explicitly, not '*'")
        return found


def _url_problems(name: str, url: SecretStr | None) -> list[str]:
    if url is None or not url.get_secret_value().strip():
        return [f"{name} is missing"]
    parts = urlsplit(url.get_secret_value())
    found = []
    if (parts.hostname or "") in LOCAL_HOSTS:
        found.append(f"{name} points at a local development host")
    if parts.password in (None, "", "postgres", "jadetrade", "password", "changeme"):
        found.append(f"{name} has no password or a development default password")
    return found


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise ConfigurationError if they are unfit."""
    settings = Settings(**overrides)  # type: ignore[arg-type]
    problems = settings.problems()
    if problems:
        raise ConfigurationError(problems)
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings for entry points (CLI, ASGI factory); never called at import."""
    return load_settings()
