"""Liveness (`/health`) and readiness (`/ready`: PostgreSQL and Redis reachable)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.core.errors import error_body
from app.logging.logger import get_logger
from app.schemas.errors import error

router = APIRouter(tags=["health"])
log = get_logger("api")

_CHECK_TIMEOUT_S = 2.0


@router.get("/health", summary="The process is alive")
async def health() -> dict[str, str]:
    return {"status": "ok"}


async def _check_postgres(request: Request) -> None:
    async with request.app.state.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _check_redis(request: Request) -> None:
    await request.app.state.redis.ping()


@router.get(
    "/ready",
    summary="PostgreSQL and Redis are reachable",
    responses={503: error("A dependency is unreachable; `checks` says which")},
)
async def ready(request: Request) -> Any:
    checks: dict[str, str] = {}
    for name, probe in (("postgres", _check_postgres), ("redis", _check_redis)):
        try:
            await asyncio.wait_for(probe(request), timeout=_CHECK_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = "unreachable"
            log.warning("readiness_check_failed", dependency=name, error_type=type(exc).__name__)
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        body = error_body("not_ready", f"unreachable: {', '.join(down)}")
        body["checks"] = checks
        return JSONResponse(body, status_code=503)
    return {"status": "ready", "checks": checks}
