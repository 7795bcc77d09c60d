"""Read a database's schema from the PostgreSQL catalogs, and describe how two schemas differ.

Each section maps an object's key (e.g. `users.email`) to a normalised description produced by
the server itself (`format_type`, `pg_get_indexdef`, `pg_get_constraintdef`, ...), so two
schemas built by different DDL text compare equal exactly when PostgreSQL sees them as equal.
"""

from __future__ import annotations

from typing import Any

Catalog = dict[str, dict[str, str]]

# Left out of every section: Alembic's bookkeeping table (not part of the schema) and the
# objects that belong to an extension (pgvector installs its functions and types into
# `public`; the extension itself is compared by name and version).

_QUERIES: dict[str, str] = {
    "relations": """
        SELECT c.relname AS key, 'relkind ' || c.relkind::text AS value
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND c.relname NOT IN ('alembic_version')
          AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = 'pg_class'::regclass
                          AND dep.objid = c.oid AND dep.deptype = 'e')
    """,
    "columns": """
        SELECT c.relname || '.' || a.attname AS key,
               concat_ws(' ',
                   '#' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
                   format_type(a.atttypid, a.atttypmod),
                   CASE WHEN a.attnotnull THEN 'NOT NULL' ELSE 'NULL' END,
                   'DEFAULT ' || pg_get_expr(d.adbin, d.adrelid),
                   NULLIF('identity ' || a.attidentity::text, 'identity '),
                   NULLIF('generated ' || a.attgenerated::text, 'generated '),
                   CASE WHEN a.attcollation <> t.typcollation
                        THEN 'COLLATE ' || a.attcollation::regcollation::text END
               ) AS value
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relname NOT IN ('alembic_version')
    """,
    "indexes": """
        SELECT i.relname AS key, pg_get_indexdef(i.oid) AS value
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class c ON c.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = i.relnamespace
        WHERE n.nspname = 'public' AND c.relname NOT IN ('alembic_version')
    """,
    "constraints": """
        SELECT c.relname || '.' || k.conname AS key,
               k.contype::text || ': ' || pg_get_constraintdef(k.oid) AS value
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname NOT IN ('alembic_version')
    """,
    "triggers": """
        SELECT c.relname || '.' || g.tgname AS key, pg_get_triggerdef(g.oid) AS value
        FROM pg_trigger g
        JOIN pg_class c ON c.oid = g.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND NOT g.tgisinternal AND c.relname NOT IN ('alembic_version')
    """,
    "functions": """
        SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS key,
               pg_get_functiondef(p.oid) AS value
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p')
          AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = 'pg_proc'::regclass
                          AND dep.objid = p.oid AND dep.deptype = 'e')
    """,
    "types": """
        SELECT t.typname AS key,
               'typtype ' || t.typtype::text
               || coalesce(' ' || format_type(nullif(t.typbasetype, 0), t.typtypmod), '')
               || coalesce(' (' || (SELECT string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder)
                                    FROM pg_enum e WHERE e.enumtypid = t.oid) || ')', '')
               AS value
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = 'public' AND t.typtype IN ('d', 'e', 'r', 'm')
          AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = 'pg_type'::regclass
                          AND dep.objid = t.oid AND dep.deptype = 'e')
    """,
    "extensions": """
        SELECT e.extname AS key, 'version ' || e.extversion || ' in ' || n.nspname AS value
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    """,
}

SECTIONS = tuple(_QUERIES)


async def read_catalog(conn: Any) -> Catalog:
    """The schema of the database `conn` (an asyncpg connection) is connected to."""
    catalog: Catalog = {}
    for section, query in _QUERIES.items():
        rows = await conn.fetch(query)
        catalog[section] = {row["key"]: row["value"] for row in rows}
    return catalog


def catalog_differences(
    left: Catalog, right: Catalog, *, left_name: str = "left", right_name: str = "right"
) -> list[str]:
    """One readable line (or block) per difference; empty when the schemas are the same."""
    width = max(len(left_name), len(right_name))
    found: list[str] = []
    for section in SECTIONS:
        a, b = left.get(section, {}), right.get(section, {})
        for key in sorted(a.keys() - b.keys()):
            found.append(f"{section}: {key} only in {left_name}: {a[key]}")
        for key in sorted(b.keys() - a.keys()):
            found.append(f"{section}: {key} only in {right_name}: {b[key]}")
        for key in sorted(a.keys() & b.keys()):
            if a[key] != b[key]:
                found.append(
                    f"{section}: {key} differs\n"
                    f"    {left_name:<{width}} : {a[key]}\n"
                    f"    {right_name:<{width}} : {b[key]}"
                )
    return found


def format_differences(differences: list[str]) -> str:
    return f"{len(differences)} schema difference(s):\n" + "\n".join(
        f"  - {line}" for line in differences
    )
