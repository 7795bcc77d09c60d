"""The schema: migrations, models and infrastructure/scripts/setup-db.sql agree, and work.

Every test runs against real PostgreSQL + pgvector, in databases created for this module.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, pool, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.core.database import ensure_database, to_asyncpg_url, to_libpq_url
from app.core.migrations import current_revision, downgrade_to, upgrade_to_head
from app.embedded.postgres import psql_path, server_env
from app.models import (
    Base,
    KnowledgeEmbedding,
    RealTrade,
    Strategy,
    TradingSignal,
    User,
)
from tests.schema_catalog import Catalog, catalog_differences, format_differences, read_catalog

if TYPE_CHECKING:
    from tests.conftest import TestServers

SETUP_SQL = Path(__file__).resolve().parents[2] / "infrastructure" / "scripts" / "setup-db.sql"
HEAD = "0007"

MakeDatabase = Callable[[str], Awaitable[str]]


@pytest.fixture(scope="module")
async def make_database(servers: TestServers) -> AsyncIterator[MakeDatabase]:
    """Factory of empty, uniquely named databases; all of them are dropped afterwards."""
    created: list[str] = []

    async def make(label: str) -> str:
        name = f"test_schema_{label}_{uuid.uuid4().hex[:10]}"
        url = servers.database_url(name)
        assert await ensure_database(url)
        created.append(name)
        return url

    yield make

    admin = await asyncpg.connect(to_libpq_url(servers.pg_admin_url))
    try:
        for name in created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@dataclass(frozen=True)
class PsqlRun:
    returncode: int
    stdout: str
    stderr: str


async def run_setup_sql(url: str) -> PsqlRun:
    proc = await asyncio.create_subprocess_exec(
        str(psql_path()),
        "-v",
        "ON_ERROR_STOP=1",
        "-X",
        "-q",
        "-f",
        str(SETUP_SQL),
        to_libpq_url(url),
        env=server_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return PsqlRun(proc.returncode, out.decode(), err.decode())


async def catalog_of(url: str) -> Catalog:
    conn = await asyncpg.connect(to_libpq_url(url))
    try:
        return await read_catalog(conn)
    finally:
        await conn.close()


@dataclass(frozen=True)
class ScriptDatabase:
    url: str
    runs: tuple[PsqlRun, PsqlRun]


@pytest.fixture(scope="module")
async def script_db(make_database: MakeDatabase) -> ScriptDatabase:
    """A database set up by running setup-db.sql twice."""
    url = await make_database("sql")
    first = await run_setup_sql(url)
    second = await run_setup_sql(url)
    return ScriptDatabase(url, (first, second))


@pytest.fixture(scope="module")
async def migrated_db(make_database: MakeDatabase) -> str:
    """A database brought to head by the migrations."""
    url = await make_database("alembic")
    await upgrade_to_head(url)
    return url


# ----------------------------------------------------------------------------- setup-db.sql


async def test_setup_sql_runs_cleanly_on_an_empty_database_and_again(
    script_db: ScriptDatabase,
) -> None:
    for number, run in enumerate(script_db.runs, start=1):
        assert run.returncode == 0, f"run {number} failed:\n{run.stderr}"
        assert run.stderr == "", f"run {number} printed to stderr:\n{run.stderr}"


async def test_setup_sql_builds_the_same_schema_as_the_migrations(
    script_db: ScriptDatabase, migrated_db: str
) -> None:
    assert all(run.returncode == 0 for run in script_db.runs)
    from_script, from_migrations = await catalog_of(script_db.url), await catalog_of(migrated_db)

    differences = catalog_differences(
        from_script, from_migrations, left_name="setup-db.sql", right_name="migrations"
    )

    assert not differences, format_differences(differences)
    assert "vector" in from_migrations["extensions"]
    assert "set_updated_at()" in from_migrations["functions"]
    assert len(from_migrations["relations"]) == 20  # 19 tables + the seq identity sequence


async def test_catalog_comparison_reports_a_changed_schema(
    script_db: ScriptDatabase, migrated_db: str
) -> None:
    from_script = await catalog_of(script_db.url)
    conn = await asyncpg.connect(to_libpq_url(migrated_db))
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("ALTER TABLE users ADD COLUMN nickname TEXT")
            await conn.execute("DROP INDEX ix_real_trades_status")
            await conn.execute("ALTER TABLE notifications ALTER COLUMN push_sent SET DEFAULT true")
            changed = await read_catalog(conn)
        finally:
            await tx.rollback()
        unchanged = await read_catalog(conn)
    finally:
        await conn.close()

    differences = catalog_differences(from_script, changed, left_name="sql", right_name="db")
    report = format_differences(differences)

    assert len(differences) == 3, report
    assert "columns: users.nickname only in db: #12 text NULL" in report
    assert "indexes: ix_real_trades_status only in sql: CREATE INDEX" in report
    assert "columns: notifications.push_sent differs" in report
    assert "DEFAULT true" in report
    assert catalog_differences(from_script, unchanged) == []


# ----------------------------------------------------------------------------- migrations


def _metadata_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "compare_server_default": True},
    )
    return list(compare_metadata(context, Base.metadata))


async def test_models_match_the_migrated_database(migrated_db: str) -> None:
    engine = create_async_engine(to_asyncpg_url(migrated_db), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(_metadata_differences)
    finally:
        await engine.dispose()

    assert differences == [], "\n".join(repr(d) for d in differences)


async def test_models_create_exactly_the_migrated_tables(
    make_database: MakeDatabase, migrated_db: str
) -> None:
    """compare_metadata does not look at CHECK constraints, index methods or operator
    classes (the HNSW index); building the tables from the models and comparing catalogs
    covers those too.
    """
    url = await make_database("models")
    engine = create_async_engine(to_asyncpg_url(url), poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
            await conn.run_sync(Base.metadata.create_all)
    finally:
        await engine.dispose()
    from_models, from_migrations = await catalog_of(url), await catalog_of(migrated_db)
    # The updated_at function and triggers exist only in the migrations, by design.
    for catalog in (from_models, from_migrations):
        del catalog["functions"], catalog["triggers"]

    differences = catalog_differences(
        from_models, from_migrations, left_name="models", right_name="migrations"
    )

    assert not differences, format_differences(differences)


async def test_downgrade_to_base_and_upgrade_again(make_database: MakeDatabase) -> None:
    url = await make_database("roundtrip")
    assert await current_revision(url) is None
    await upgrade_to_head(url)
    assert await current_revision(url) == HEAD
    at_head = await catalog_of(url)

    await downgrade_to(url, "base")

    assert await current_revision(url) is None
    emptied = await catalog_of(url)
    assert emptied["relations"] == {}
    assert emptied["functions"] == {}
    assert emptied["triggers"] == {}
    assert "vector" in emptied["extensions"]  # deliberately left installed

    await upgrade_to_head(url)

    assert await current_revision(url) == HEAD
    again = await catalog_of(url)
    differences = catalog_differences(at_head, again, left_name="first", right_name="second")
    assert not differences, format_differences(differences)


async def test_concurrent_upgrades_migrate_once(make_database: MakeDatabase) -> None:
    url = await make_database("concurrent")

    await asyncio.gather(upgrade_to_head(url), upgrade_to_head(url), upgrade_to_head(url))

    assert await current_revision(url) == HEAD


# ----------------------------------------------------------------------------- behaviour


async def test_updated_at_is_set_by_the_trigger_on_update(migrated_db: str) -> None:
    conn = await asyncpg.connect(to_libpq_url(migrated_db))
    user_id = str(uuid.uuid4())
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    try:
        await conn.execute(
            "INSERT INTO users (id, email, created_at, updated_at) VALUES ($1, $2, $3, $3)",
            user_id,
            f"{user_id}@example.com",
            long_ago,
        )

        # Even an UPDATE that sets updated_at itself gets the time of the update.
        now = await conn.fetchval(
            "UPDATE users SET telegram_enabled = true, updated_at = $2 WHERE id = $1"
            " RETURNING now()",
            user_id,
            long_ago,
        )

        row = await conn.fetchrow("SELECT created_at, updated_at FROM users WHERE id = $1", user_id)
        assert row is not None
        assert row["created_at"] == long_ago
        assert row["updated_at"] == now
    finally:
        await conn.execute("DELETE FROM users WHERE id = $1", user_id)
        await conn.close()


async def test_models_round_trip_decimals_and_vectors(migrated_db: str) -> None:
    engine = create_async_engine(to_asyncpg_url(migrated_db), poolclass=pool.NullPool)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    user_id = str(uuid.uuid4())
    source_id = f"faq-{uuid.uuid4().hex}"
    try:
        async with sessionmaker() as session:
            user = User(id=user_id, email=f"{user_id}@example.com")
            strategy = Strategy(name=f"strategy-{user_id}")
            session.add_all([user, strategy])
            await session.flush()
            signal = TradingSignal(
                user_id=user_id,
                strategy_id=strategy.id,
                signal_type="long_entry",
                symbol="BTCUSDT",
                price=Decimal("43250.12345678"),
                dedupe_key="alert-1",
            )
            session.add(signal)
            await session.flush()
            trade = RealTrade(
                user_id=user_id,
                signal_id=signal.id,
                exchange="binance",
                symbol="BTC/USDT",
                side="buy",
                order_type="market",
                quantity=Decimal("0.00012345"),
                client_order_id=f"jt-{signal.id.hex[:16]}-entry",
            )
            vector = [1.0 / (i + 1) for i in range(384)]
            passage = KnowledgeEmbedding(
                source_type="faq",
                source_id=source_id,
                document=source_id,
                content="What is a stop loss?",
                content_hash="0" * 64,
                embedding=vector,
                embedding_dimensions=384,
                embedding_model="all-MiniLM-L6-v2",
                metadata_={"lang": "en"},
            )
            session.add_all([trade, passage])
            await session.commit()

            # Server defaults came back through RETURNING (no lazy load in async code).
            assert user.subscription_tier == "free"
            assert strategy.supported_exchanges == ["binance"]
            assert trade.status == "pending"
            assert trade.filled_quantity == Decimal("0")

            trade.status = "filled"
            await session.commit()
            # The trigger's value was fetched by the UPDATE itself.
            assert "updated_at" in trade.__dict__
            assert trade.updated_at >= trade.created_at

        async with sessionmaker() as session:
            stored = (await session.execute(select(RealTrade).filter_by(id=trade.id))).scalar_one()
            assert stored.quantity == Decimal("0.00012345")
            assert isinstance(stored.quantity, Decimal)
            stored_signal = await session.get(TradingSignal, signal.id)
            assert stored_signal is not None
            assert stored_signal.price == Decimal("43250.12345678")
            stored_passage = await session.get(KnowledgeEmbedding, passage.id)
            assert stored_passage is not None
            assert stored_passage.embedding == pytest.approx(vector, rel=1e-6)
            assert stored_passage.metadata_ == {"lang": "en"}

            nearest = await session.scalar(
                select(KnowledgeEmbedding.source_id)
                .order_by(KnowledgeEmbedding.embedding.cosine_distance(vector))
                .limit(1)
            )
            assert nearest == source_id
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("DELETE FROM users WHERE id = $1", (user_id,))
            await conn.exec_driver_sql(
                "DELETE FROM strategies WHERE name = $1", (f"strategy-{user_id}",)
            )
            await conn.exec_driver_sql(
                "DELETE FROM knowledge_embeddings WHERE source_id = $1", (source_id,)
            )
        await engine.dispose()


async def test_a_redelivered_alert_and_a_repeated_client_order_id_are_refused(
    migrated_db: str,
) -> None:
    conn = await asyncpg.connect(to_libpq_url(migrated_db))
    user_id = str(uuid.uuid4())
    try:
        await conn.execute(
            "INSERT INTO users (id, email) VALUES ($1, $2)", user_id, f"{user_id}@example.com"
        )
        insert_signal = (
            "INSERT INTO trading_signals (user_id, signal_type, symbol, dedupe_key)"
            " VALUES ($1, 'long_entry', 'BTCUSDT', 'tv-123')"
        )
        await conn.execute(insert_signal, user_id)
        with pytest.raises(asyncpg.UniqueViolationError, match="dedupe_key"):
            await conn.execute(insert_signal, user_id)

        insert_trade = (
            "INSERT INTO real_trades (user_id, exchange, symbol, side, order_type, quantity,"
            " client_order_id) VALUES ($1, 'binance', 'BTC/USDT', 'buy', 'market', 1, 'cid-1')"
        )
        await conn.execute(insert_trade, user_id)
        with pytest.raises(asyncpg.UniqueViolationError, match="client_order_id"):
            await conn.execute(insert_trade, user_id)
    finally:
        await conn.execute("DELETE FROM users WHERE id = $1", user_id)
        await conn.close()
