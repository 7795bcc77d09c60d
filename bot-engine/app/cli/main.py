"""`jadetrade`: the engine's command line.

Every command takes `--json` and then prints exactly one JSON object on stdout (logs go to
stderr for the administrative commands). Exit codes: 0 success, 1 failure of the operation,
2 unusable configuration or arguments.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from app.config import ConfigurationError, Settings, load_settings
from app.core.errors import AppError
from app.logging.logger import configure_logging, loki_target

T = TypeVar("T")

cli = typer.Typer(
    name="jadetrade",
    help="JadeTrade bot engine: TradingView alerts to risk-checked exchange orders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
users_cli = typer.Typer(help="Engine users.", no_args_is_help=True)
tokens_cli = typer.Typer(
    help="Webhook tokens (the secret inside TradingView alerts).", no_args_is_help=True
)
auth_cli = typer.Typer(help="Access tokens.", no_args_is_help=True)
keys_cli = typer.Typer(
    help="Users' exchange API keys (stored encrypted under ENCRYPTION_KEY).", no_args_is_help=True
)
kb_cli = typer.Typer(help="The assistant's knowledge base.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(users_cli, name="users")
cli.add_typer(tokens_cli, name="tokens")
cli.add_typer(auth_cli, name="auth")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(kb_cli, name="kb")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


# ------------------------------------------------------------------------ helpers
def _fail(message: str, code: int, as_json: bool, error_code: str) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"error": {"code": error_code, "message": message}}))
    else:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings(as_json: bool, *, log_to_stderr: bool = True) -> Settings:
    """Settings for a command (exit 2 if unusable), with logging configured.

    Administrative commands log to stderr so that stdout carries only their result.
    """
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        _fail(str(exc), 2, as_json, "configuration_error")
    configure_logging(
        settings.LOG_LEVEL,
        "json" if as_json else settings.LOG_FORMAT.value,
        stream=sys.stderr if log_to_stderr else sys.stdout,
        env=settings.ENVIRONMENT.value,
        loki=loki_target(settings),
    )
    return settings


def _emit(as_json: bool, data: dict[str, Any], human: str) -> None:
    typer.echo(json.dumps(data, default=str) if as_json else human)


def _run_admin(as_json: bool, work: Callable[[Settings], Awaitable[T]]) -> T:
    """Run one administrative operation against the engine's services."""
    from app.cli.services import prepare_database, service_settings, uses_embedded_stack

    settings = _settings(as_json)

    async def body(resolved: Settings) -> T:
        if uses_embedded_stack(settings):
            await prepare_database(resolved)
        return await work(resolved)

    try:
        with service_settings(settings) as resolved:
            return asyncio.run(body(resolved))
    except ConfigurationError as exc:
        _fail(str(exc), 2, as_json, "configuration_error")
    except AppError as exc:
        _fail(exc.message, 1, as_json, exc.code)


def _run_fast(work: Coroutine[Any, Any, T]) -> T:
    """Run a long-lived process's main coroutine on uvloop, the loop `serve` gives uvicorn."""
    if sys.platform == "win32":
        return asyncio.run(work)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(work)


def _serve(settings: Settings, *, run_workers: bool) -> None:
    import uvicorn

    from app.api.ws_server import EngineWebSocketProtocol
    from app.main import create_app

    config = uvicorn.Config(
        create_app(settings, run_workers=run_workers),
        host=settings.HOST,
        port=settings.PORT,
        log_config=None,
        access_log=False,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        lifespan="on",
        timeout_graceful_shutdown=10,
        ws=EngineWebSocketProtocol,
        ws_ping_interval=settings.WS_PING_INTERVAL_S,
        ws_ping_timeout=settings.WS_PING_TIMEOUT_S,
        ws_max_size=64 * 1024,
    )
    uvicorn.Server(config).run()


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks (stopping the stack) always run."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# ------------------------------------------------------------------------ commands
@cli.command("run")
def run_local(as_json: JsonOpt = False) -> None:
    """Local all-in-one: embedded PostgreSQL + Redis, migrations, a demo account, the engine.

    With --json the demo account (URL, tokens, a curl alert) is one JSON object on stdout and
    the engine's log lines go to stderr.
    """
    from app.cli.demo import banner, demo_price, ensure_demo_account, summary
    from app.cli.kb import index_shipped_knowledge
    from app.cli.services import prepare_database, service_settings

    settings = _settings(as_json, log_to_stderr=as_json)
    if not settings.is_local:
        _fail("`run` is for local development; use `serve` in production", 2, as_json, "usage")
    _exit_on_sigterm()
    try:
        with service_settings(settings) as resolved:

            async def setup() -> dict[str, str]:
                await prepare_database(resolved)
                await index_shipped_knowledge(resolved)
                account = await ensure_demo_account(resolved)
                return summary(resolved, account, await demo_price(resolved))

            info = asyncio.run(setup())
            _emit(as_json, info, banner(resolved, info))
            _serve(resolved, run_workers=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a local run ends; everything was stopped on the way out


@cli.command()
def serve(
    workers: Annotated[bool, typer.Option(help="Run the workers inside the API process.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Log JSON lines.")] = False,
) -> None:
    """The HTTP/WebSocket API (with in-process workers unless --no-workers)."""
    from app.cli.services import prepare_database, service_settings, uses_embedded_stack

    settings = _settings(as_json, log_to_stderr=False)
    _exit_on_sigterm()
    try:
        with service_settings(settings) as resolved:
            if uses_embedded_stack(settings):
                asyncio.run(prepare_database(resolved))
            _serve(resolved, run_workers=workers)
    except ConfigurationError as exc:
        _fail(str(exc), 2, False, "configuration_error")
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@cli.command()
def worker(
    as_json: Annotated[bool, typer.Option("--json", help="Log JSON lines.")] = False,
) -> None:
    """Background workers only, in a process of their own (scale-out)."""
    from app.cli.services import service_settings
    from app.core.metrics import Metrics, serve_metrics
    from app.core.pg import create_pool
    from app.core.redis import create_redis
    from app.workers import pipeline
    from app.workers.runtime import WorkerRuntime

    settings = _settings(as_json, log_to_stderr=False)

    async def main(resolved: Settings) -> None:
        assert resolved.REDIS_URL is not None and resolved.DATABASE_URL is not None
        redis = create_redis(resolved.REDIS_URL.get_secret_value())
        # Each running key holds a connection (its lock) and borrows one per exchange call.
        pool = await create_pool(
            resolved.DATABASE_URL.get_secret_value(),
            max_size=2 * resolved.WORKER_CONCURRENCY + 4,
            wait_for_flush=False,  # see create_pool: a lost execution simply runs again
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runtime = WorkerRuntime(redis, role="worker")
        metrics = Metrics()
        server = None
        if resolved.WORKER_METRICS_PORT:
            server = serve_metrics(metrics, resolved.HOST, resolved.WORKER_METRICS_PORT)
        try:
            await runtime.start()
            pipeline.install(runtime, resolved, pool, redis, metrics)
            await stop.wait()
        finally:
            if server is not None:
                server.shutdown()
            await runtime.stop()
            await redis.aclose()
            await pool.close()

    try:
        with service_settings(settings) as resolved:
            _run_fast(main(resolved))
    except ConfigurationError as exc:
        _fail(str(exc), 2, False, "configuration_error")


@cli.command()
def watch(
    token: Annotated[str, typer.Option(help="Access token (`make run` prints one).")],
    url: Annotated[str | None, typer.Option(help="The engine's URL (default: PUBLIC_URL).")] = None,
    topic: Annotated[
        list[str] | None,
        typer.Option(help="Topic to follow; repeatable (default: signals, trades, positions)."),
    ] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many events.")] = None,
) -> None:
    """Follow your live signals, trades and positions over the WebSocket API."""
    from app.cli import watch as watching

    settings = _settings(False, log_to_stderr=True)
    target = watching.ws_url(url or settings.public_url)
    try:
        topics = topic or watching.DEFAULT_TOPICS
        code = asyncio.run(
            watching.watch(target, token, topics=topics, count=count, show=typer.echo)
        )
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except OSError as exc:
        _fail(f"cannot reach {target}: {exc}", 1, False, "unreachable")
    if code not in (1000, 1001):
        _fail(f"the engine closed the connection ({code})", 1, False, "closed")


@db_cli.command("upgrade")
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Create the database if missing and migrate it to the newest schema."""
    from app.cli.services import prepare_database
    from app.core.migrations import current_revision

    async def work(settings: Settings) -> str | None:
        await prepare_database(settings)
        assert settings.DATABASE_URL is not None
        return await current_revision(settings.DATABASE_URL.get_secret_value())

    revision = _run_admin(as_json, work)
    _emit(as_json, {"revision": revision}, f"database at revision {revision}")


@users_cli.command("create")
def users_create(
    email: Annotated[str, typer.Option("--email", help="The user's email address.")],
    tier: Annotated[str, typer.Option("--tier", help="free, pro or enterprise.")] = "free",
    as_json: JsonOpt = False,
) -> None:
    """Create a user (with default risk settings)."""
    from app.cli.services import db_session
    from app.core.users import Tier, create_user

    try:
        chosen = Tier(tier.lower())
    except ValueError:
        _fail("--tier must be one of free, pro, enterprise", 2, as_json, "validation_error")

    async def work(settings: Settings) -> dict[str, str]:
        async with db_session(settings) as session:
            user = await create_user(session, email, chosen)
            return {"id": user.id, "email": user.email, "tier": user.subscription_tier}

    created = _run_admin(as_json, work)
    _emit(as_json, created, f"created user {created['id']} ({created['email']}, {chosen})")


@tokens_cli.command("issue")
def tokens_issue(
    user_id: Annotated[str, typer.Argument(help="Id of the user the token belongs to.")],
    name: Annotated[str, typer.Option(help="A label to tell tokens apart.")] = "default",
    as_json: JsonOpt = False,
) -> None:
    """Issue a webhook token. It is shown once; only its hash is stored."""
    from app.cli.services import db_session
    from app.core import webhook_tokens

    async def work(settings: Settings) -> dict[str, str]:
        async with db_session(settings) as session:
            issued = await webhook_tokens.issue(session, user_id, name)
            return {"id": str(issued.record.id), "token": issued.token}

    issued = _run_admin(as_json, work)
    _emit(
        as_json,
        issued,
        f"token {issued['id']}:\n  {issued['token']}\n(shown once; put it in the alert's 'token')",
    )


@tokens_cli.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="Id of the token to revoke.")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a webhook token; alerts carrying it are refused from now on."""
    from app.cli.services import db_session
    from app.core import webhook_tokens

    try:
        parsed = uuid.UUID(token_id)
    except ValueError:
        _fail("TOKEN_ID must be a UUID", 2, as_json, "validation_error")

    async def work(settings: Settings) -> dict[str, str]:
        async with db_session(settings) as session:
            record = await webhook_tokens.revoke(session, parsed)
            return {"id": str(record.id), "revoked_at": str(record.revoked_at)}

    revoked = _run_admin(as_json, work)
    _emit(as_json, revoked, f"token {revoked['id']} revoked at {revoked['revoked_at']}")


@keys_cli.command("rotate")
def keys_rotate(
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows read per query.")
    ] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Re-encrypt every stored exchange key under the active ENCRYPTION_KEY.

    \b
    Changing the encryption key:
      1. Generate a new key (64 hex characters: `openssl rand -hex 32`).
      2. Set it as ENCRYPTION_KEY and move the old one to ENCRYPTION_KEYS_RETIRED
         (a JSON list: '["<old key>"]').
      3. Deploy, so that every engine process runs with both keys.
      4. Run `jadetrade keys rotate`. It must report no failure: a failed key opens with
         none of the configured keys. Running it again rotates nothing.
      5. Remove the old key from ENCRYPTION_KEYS_RETIRED and deploy.

    Safe while the engine runs. Exits 1 when a key cannot be decrypted (listed by id; left as is).
    """
    from app.core.credentials import Keyring
    from app.core.exchange_keys import RotationReport, rotate_keys
    from app.core.pg import create_pool

    async def work(settings: Settings) -> RotationReport:
        assert settings.DATABASE_URL is not None
        keyring = Keyring.from_settings(settings)
        pool = await create_pool(settings.DATABASE_URL.get_secret_value(), max_size=2)
        try:
            return await rotate_keys(pool, keyring, batch_size=batch_size)
        finally:
            await pool.close()

    report = _run_admin(as_json, work)
    human = [
        f"active key {report.active_kid}: {report.rotated} rotated,"
        f" {report.already_current} already current, {len(report.failed)} failed"
    ]
    human += [f"  failed {f.key_id} ({f.field or 'row'}): {f.reason}" for f in report.failed]
    _emit(as_json, report.as_dict(), "\n".join(human))
    if report.failed:
        raise typer.Exit(1)


@kb_cli.command("index")
def kb_index(
    path: Annotated[
        Path | None,
        typer.Argument(help="Folder of Markdown documents (default: KNOWLEDGE_DIR)."),
    ] = None,
    reindex: Annotated[
        bool,
        typer.Option(help="Re-embed everything; needed after changing the embedding provider."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Embed and store new or changed passages, remove those of deleted documents."""
    from rich.progress import Progress

    from app.ai.knowledge_base import IndexReport
    from app.cli.kb import describe, index_folder

    folder = path or _settings(as_json).KNOWLEDGE_DIR
    if folder is None or not folder.is_dir():
        _fail(f"{folder} is not a folder of documents", 2, as_json, "usage")

    async def work(settings: Settings) -> IndexReport:
        with Progress(disable=as_json, transient=True) as bar:
            task = bar.add_task("indexing", total=None)
            return await index_folder(
                settings,
                folder,
                reindex=reindex,
                on_total=lambda n: bar.update(task, total=n),
                progress=lambda n: bar.advance(task, n),
            )

    report = _run_admin(as_json, work)
    _emit(as_json, {"folder": str(folder), **vars(report)}, describe(report))


@kb_cli.command("search")
def kb_search(
    question: Annotated[str, typer.Argument(help="What a user would ask.")],
    limit: Annotated[int, typer.Option(min=1, max=20)] = 4,
    as_json: JsonOpt = False,
) -> None:
    """The passages the assistant would be given for QUESTION, best first."""
    from app.cli.kb import search_text

    async def work(settings: Settings) -> list[dict[str, Any]]:
        passages = await search_text(settings, question, limit=limit)
        return [
            {
                "document": p.document,
                "title": p.title,
                "score": round(p.score, 5),
                "similarity": p.similarity,
            }
            for p in passages
        ]

    found = _run_admin(as_json, work)
    lines = [
        f"{n}. {p['title']} ({p['document']}), similarity {p['similarity'] or 0:.3f}"
        for n, p in enumerate(found, start=1)
    ]
    _emit(as_json, {"passages": found}, "\n".join(lines) or "no passage matched")


@cli.command("openapi")
def openapi(
    output: Annotated[
        Path | None, typer.Option(help="Write the document here instead of stdout.")
    ] = None,
) -> None:
    """Print the HTTP API's OpenAPI document (YAML), generated from the application."""
    from app.cli.openapi import openapi_yaml

    document = openapi_yaml(_settings(False))
    if output is None:
        typer.echo(document, nl=False)
    else:
        output.write_text(document)


@auth_cli.command("dev-token")
def auth_dev_token(
    user_id: Annotated[str, typer.Argument(help="Id of the user to mint a token for.")],
    as_json: JsonOpt = False,
) -> None:
    """Mint an access token from the local issuer (development only)."""
    from app.cli.services import db_session
    from app.core.errors import NotFound
    from app.core.local_issuer import LocalIssuer, ensure_dev_tokens_allowed
    from app.models import User

    settings = _settings(as_json)
    try:
        ensure_dev_tokens_allowed(settings)
    except AppError as exc:
        _fail(exc.message, 2, as_json, exc.code)

    async def work(resolved: Settings) -> dict[str, str]:
        async with db_session(resolved) as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound(f"user {user_id} does not exist", code="user_not_found")
        issuer = LocalIssuer.load_or_create(
            resolved.LOCAL_DIR / "jwt", resolved.local_issuer, resolved.COGNITO_APP_CLIENT_ID
        )
        token = issuer.mint(user.id, ttl_s=resolved.DEV_TOKEN_TTL_SECONDS, username=user.email)
        return {
            "access_token": token,
            "token_type": "Bearer",  # the OAuth token type, not a secret  # nosec B105
            "expires_in": str(resolved.DEV_TOKEN_TTL_SECONDS),
        }

    minted = _run_admin(as_json, work)
    _emit(as_json, minted, minted["access_token"])


def main() -> None:
    """Console script entry point (`jadetrade`)."""
    cli()
