"""Session-wide test infrastructure: a real PostgreSQL (+pgvector) and a real Redis.

They are started the same way `make run` starts them (the embedded stack, in a temporary
directory on free ports), unless TEST_DATABASE_URL / TEST_REDIS_URL point at servers to use.
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.core.database import create_engine, create_sessionmaker, ensure_database
from app.core.pg import Pool, create_pool
from app.core.redis import create_redis
from app.embedded.ports import free_port
from app.embedded.stack import LocalStack
from app.logging.logger import configure_logging

if TYPE_CHECKING:
    from app.ai.embeddings import LocalEmbedder
    from app.ai.knowledge_base import IndexReport
    from app.models import User


@dataclass(frozen=True)
class TestServers:
    """Where the real servers of this test session are."""

    pg_admin_url: str  # libpq URL of the maintenance database `postgres` (superuser)
    redis_url: str

    def database_url(self, name: str) -> str:
        """libpq URL of database `name` on the same server."""
        base = self.pg_admin_url.rsplit("/", 1)[0]
        return f"{base}/{name}"


@pytest.fixture(scope="session")
def servers() -> Iterator[TestServers]:
    pg_env, redis_env = os.environ.get("TEST_DATABASE_URL"), os.environ.get("TEST_REDIS_URL")
    if pg_env and redis_env:
        yield TestServers(pg_admin_url=pg_env, redis_url=redis_env)
        return
    root = Path(tempfile.mkdtemp(prefix="jadetrade-test-"))
    stack = LocalStack(root, free_port(), free_port(), persistent_redis=False)
    urls = stack.up()
    try:
        admin = urls.database_url.replace("postgresql+asyncpg://", "postgresql://")
        admin = admin.rsplit("/", 1)[0] + "/postgres"
        yield TestServers(pg_admin_url=pg_env or admin, redis_url=redis_env or urls.redis_url)
    finally:
        stack.down(everything=True)


# --------------------------------------------------------------------------- log capture
# Every log line the suite produces (in this process, and from CLI subprocesses that tests
# feed in) is kept, and at the end of the session checked against every secret the tests
# created: webhook tokens, access tokens, keys. A leak fails the run.


class CapturedLogs(io.StringIO):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.extend(line for line in text.splitlines() if line.strip())
        return len(text)

    def add(self, text: str) -> None:
        self.write(text)


@dataclass
class SecretsSeen:
    values: set[str] = field(default_factory=set)

    def add(self, *values: str) -> None:
        self.values.update(v for v in values if v)


@pytest.fixture(scope="session")
def captured_logs() -> CapturedLogs:
    return _CAPTURED


@pytest.fixture(scope="session")
def secrets_seen() -> SecretsSeen:
    return _SECRETS


_CAPTURED = CapturedLogs()
_SECRETS = SecretsSeen()
TEST_ENCRYPTION_KEY = secrets.token_hex(32)
_SECRETS.add(TEST_ENCRYPTION_KEY)


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("DEBUG", "json", stream=_CAPTURED, env="test")


@pytest.fixture(scope="session", autouse=True)
def _no_secret_in_logs() -> Iterator[None]:
    yield
    leaks = [
        (secret[:6] + "…", line[:200])
        for line in _CAPTURED.lines
        for secret in _SECRETS.values
        if secret in line
    ]
    assert not leaks, f"secrets found in captured logs: {leaks[:5]}"


# --------------------------------------------------------------------------- dashboards
# When the whole suite ran, every Loki selector of the shipped dashboards and alert rules
# must select lines the engine really wrote: a label it emits, with a value seen in the
# suite's captured lines (a renamed component or a mistyped level fails the run here).
_WHOLE_SUITE: dict[str, bool] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    option = session.config.option
    tests_dir = Path(__file__).parent.resolve()
    args = [Path(a.split("::")[0]).resolve() for a in session.config.args]
    _WHOLE_SUITE["yes"] = (
        not option.keyword
        and not option.markexpr
        and not getattr(option, "deselect", None)
        and all(a == tests_dir for a in args)
    )


def labels_seen(lines: list[str]) -> dict[str, set[str]]:
    """Every value each Loki label took in `lines` (the JSON ones)."""
    import orjson

    from app.logging.loki import LABELS

    seen: dict[str, set[str]] = {label: set() for label in LABELS}
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            fields = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        for label in LABELS:
            value = fields.get(label)
            if isinstance(value, str) and value:
                seen[label].add(value)
    return seen


@pytest.fixture(scope="session", autouse=True)
def _dashboards_select_real_lines() -> Iterator[None]:
    yield
    if not _WHOLE_SUITE.get("yes"):
        return
    from tests.support.observability import check_log_selectors, stack_queries

    problems = check_log_selectors(stack_queries(), labels_seen(_CAPTURED.lines))
    assert not problems, "dashboard/alert selectors match no line the engine wrote:\n" + (
        "\n".join(problems)
    )


# --------------------------------------------------------------------------- database
@pytest.fixture(scope="session")
async def database_url(servers: TestServers) -> str:
    """A database migrated through the real migrations, shared by the session."""
    from app.core.migrations import upgrade_to_head

    url = servers.database_url("jadetrade_test")
    await ensure_database(url)
    await upgrade_to_head(url)
    return url


@pytest.fixture(scope="session")
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=5, max_overflow=5)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def pg_pool(database_url: str) -> AsyncIterator[Pool]:
    """The hot path's asyncpg pool on the test database (shared by the session)."""
    pool = await create_pool(database_url, min_size=1, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def _table_names(db_engine: AsyncEngine) -> list[str]:
    async with db_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename NOT IN ('alembic_version', 'knowledge_embeddings')"
            )
        )
        return [r[0] for r in rows]


@pytest.fixture
async def clean_state(
    db_engine: AsyncEngine, _table_names: list[str], servers: TestServers
) -> None:
    """Each test that touches data starts from empty tables and an empty Redis database.

    The knowledge base is kept: it holds no user data, and embedding the shipped documents
    takes seconds (`tests/ai` index them once per session and clean up their own rows)."""
    async with db_engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(_table_names)} CASCADE"))
    redis = create_redis(servers.redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


@pytest.fixture
async def session(db_engine: AsyncEngine, clean_state: None) -> AsyncIterator[AsyncSession]:
    async with create_sessionmaker(db_engine)() as s:
        yield s


# --------------------------------------------------------------------------- knowledge base
KNOWLEDGE_DIR = Path(__file__).resolve().parents[2] / "docs" / "knowledge"


@pytest.fixture(scope="session")
async def local_embedder() -> AsyncIterator[LocalEmbedder]:
    from app.ai.embeddings import LocalEmbedder

    embedder = LocalEmbedder()
    yield embedder
    await embedder.aclose()


@pytest.fixture(scope="session")
async def shipped_knowledge(db_engine: AsyncEngine, local_embedder: LocalEmbedder) -> IndexReport:
    """docs/knowledge indexed into the session's database (kept across `clean_state`)."""
    from app.ai.knowledge_base import index_chunks, read_folder

    return await index_chunks(
        create_sessionmaker(db_engine), local_embedder, read_folder(KNOWLEDGE_DIR)
    )


# --------------------------------------------------------------------------- the app
@pytest.fixture(scope="session")
def local_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local")


def make_settings(database_url: str, redis_url: str, local_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LOCAL_DIR": local_dir,
        "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "LOG_LEVEL": "DEBUG",
        "PUBLIC_URL": "http://testserver",
        "WEB_DIST_DIR": None,  # the API alone, whether or not the dashboard has been built
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def settings(database_url: str, servers: TestServers, local_dir: Path) -> Settings:
    return make_settings(database_url, servers.redis_url, local_dir)


@asynccontextmanager
async def running_app(settings: Settings, **kwargs: Any) -> AsyncIterator[FastAPI]:
    from app.main import create_app

    app = create_app(settings, **kwargs)
    async with LifespanManager(app):
        yield app


@asynccontextmanager
async def http_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(settings) as started:
        yield started


@pytest.fixture
async def client(app: FastAPI, clean_state: None) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(app) as c:
        yield c


# --------------------------------------------------------------------------- factories
@dataclass
class Factory:
    """Creates users, webhook tokens and access tokens through the engine's own services."""

    app: FastAPI
    secrets: SecretsSeen

    async def user(self, tier: str = "pro", email: str | None = None) -> User:
        from app.core import users

        async with self.app.state.sessionmaker() as s:
            created = await users.create_user(
                s, email or f"{uuid.uuid4().hex[:10]}@example.com", users.Tier(tier)
            )
            await s.commit()
            return created

    async def webhook_token(self, user: User, name: str = "default") -> str:
        from app.core import webhook_tokens

        async with self.app.state.sessionmaker() as s:
            issued = await webhook_tokens.issue(s, user.id, name)
            await s.commit()
        self.secrets.add(issued.token)
        return issued.token

    def access_token(self, user: User, ttl_s: int = 600) -> str:
        token: str = self.app.state.local_issuer.mint(user.id, ttl_s=ttl_s, username=user.email)
        self.secrets.add(token)
        return token

    def auth(self, user: User) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token(user)}"}


@pytest.fixture
def factory(app: FastAPI, secrets_seen: SecretsSeen, clean_state: None) -> Factory:
    return Factory(app=app, secrets=secrets_seen)
