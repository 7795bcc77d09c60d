"""The FastAPI application: `create_app(settings)` builds it; its lifespan opens and closes
every resource (database engine, Redis, HTTP client, token verifier, WebSocket hub,
in-process workers).

For an ASGI server without the CLI: `uvicorn --factory app.main:create_app`.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import __version__
from app.ai.chat_engine import build_chat_engine
from app.ai.chat_service import ChatService
from app.ai.embeddings import build_embedder
from app.ai.knowledge_base import check_model
from app.api import (
    account,
    auth,
    chat,
    client_logs,
    exchange_keys,
    health,
    history,
    metrics,
    notifications,
    positions,
    risk,
    webhooks,
    websocket,
    wellknown,
)
from app.api.web_app import mount_dashboard
from app.config import AuthMode, Settings, get_settings
from app.core.auth import build_verifier
from app.core.database import create_engine, create_sessionmaker
from app.core.errors import AppError, install_error_handlers
from app.core.local_issuer import LocalIssuer
from app.core.metrics import Metrics
from app.core.pg import create_pool
from app.core.redis import create_redis
from app.core.ws_hub import Hub
from app.exchanges.factory import make_price_feed
from app.logging.logger import get_logger
from app.logging.middleware import RequestContextMiddleware
from app.workers import pipeline
from app.workers.runtime import WorkerRuntime

log = get_logger("main")


class MissingServiceURL(RuntimeError):
    pass


def _lifespan(settings: Settings, run_workers: bool):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.DATABASE_URL is None or settings.REDIS_URL is None:
            raise MissingServiceURL(
                "DATABASE_URL and REDIS_URL must be set (`jadetrade run` starts a local stack)"
            )
        engine = create_engine(
            settings.DATABASE_URL.get_secret_value(),
            pool_size=settings.DATABASE_POOL_SIZE,
            max_overflow=settings.DATABASE_MAX_OVERFLOW,
        )
        pg = await create_pool(
            settings.DATABASE_URL.get_secret_value(), max_size=settings.DATABASE_POOL_SIZE
        )
        redis = create_redis(settings.REDIS_URL.get_secret_value())
        http_client = httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        local_issuer = None
        if settings.auth_mode == AuthMode.LOCAL:
            local_issuer = LocalIssuer.load_or_create(
                settings.LOCAL_DIR / "jwt", settings.local_issuer, settings.COGNITO_APP_CLIENT_ID
            )
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.pg = pg
        app.state.redis = redis
        app.state.http = http_client
        app.state.local_issuer = local_issuer
        app.state.paper_feed = paper_feed = make_price_feed(settings)
        app.state.verifier = build_verifier(
            settings, http_client=http_client, local_issuer=local_issuer
        )
        hub = Hub(redis, max_per_user=settings.WS_MAX_CONNECTIONS_PER_USER)
        app.state.hub = hub
        chat_engine, chat_unavailable = await build_chat_engine(settings)
        app.state.chat = chat_service = ChatService(
            settings,
            app.state.sessionmaker,
            build_embedder(settings),
            chat_engine,
            unavailable=chat_unavailable,
            metrics=app.state.metrics,
        )
        runtime = WorkerRuntime(redis, role="api") if run_workers else None
        worker_pg = None
        try:
            await hub.start()
            await _check_knowledge_base(chat_service)
            if runtime is not None:
                await runtime.start()
                worker_pg = await create_pool(
                    settings.DATABASE_URL.get_secret_value(),
                    max_size=2 * settings.WORKER_CONCURRENCY + 4,
                    wait_for_flush=False,
                )
                app.state.pipeline = pipeline.install(
                    runtime, settings, worker_pg, redis, app.state.metrics
                )
            # Everything allocated so far lives as long as the process: keep it out of the
            # collector's full passes, whose pauses grow with the objects they walk.
            gc.freeze()
            log.info(
                "engine_started",
                env=settings.ENVIRONMENT.value,
                auth_mode=settings.auth_mode.value,
                workers=run_workers,
            )
            yield
        finally:
            await hub.stop()
            await chat_service.aclose()
            if runtime is not None:
                await runtime.stop()
            if worker_pg is not None:
                await worker_pg.close()
            await http_client.aclose()
            close_feed = getattr(paper_feed, "close", None)
            if close_feed is not None:
                await close_feed()
            await redis.aclose()
            await pg.close()
            await engine.dispose()
            log.info("engine_stopped")

    return lifespan


async def _check_knowledge_base(chat_service: ChatService) -> None:
    """Say loudly at start-up when the stored passages belong to another embedding model:
    the assistant refuses to search them until they are re-indexed."""
    async with chat_service.sessionmaker() as session:
        try:
            await check_model(session, chat_service.embedder)
        except AppError as exc:
            log.error("knowledge_base_unusable", code=exc.code, message=exc.message)
        except Exception as exc:  # database down at start: /ready reports it; search re-checks
            log.warning("knowledge_base_check_skipped", error_type=type(exc).__name__)


def create_app(settings: Settings | None = None, *, run_workers: bool = False) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="JadeTrade Bot Engine",
        summary="TradingView alerts to risk-checked exchange orders",
        version=__version__,
        lifespan=_lifespan(settings, run_workers),
    )
    install_error_handlers(app)
    if settings.CORS_ORIGINS:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.CORS_ORIGINS,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        )
    app.state.metrics = Metrics()
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    # Routes are matched in order: the webhook, by far the busiest, is tried first.
    for module in (
        webhooks,
        health,
        metrics,
        wellknown,
        auth,
        account,
        history,
        positions,
        risk,
        exchange_keys,
        notifications,
        chat,
        client_logs,
        websocket,
    ):
        app.include_router(module.router)
    if settings.WEB_DIST_DIR is not None:
        mount_dashboard(app, settings.WEB_DIST_DIR)
    return app
