"""pgvector where the server has it: detection, the psycopg adapter, and what is optional without it.

Convention (docs/INTEGRATIONS.md, "pgvector"): vector columns and tables exist
only on providers whose server has the `vector` extension. Migrations create
them inside `DO $$ ... IF EXISTS (SELECT 1 FROM pg_extension WHERE extname =
'vector') THEN ... END IF $$`. The sync copies an optional column only when both
sides have it and an optional table only when both sides have it; `schema
verify` and `verify` report a provider without pgvector with `missing_message`
instead of drift. Indexes whose name starts with `RUNTIME_INDEX_PREFIX` are made
at run time (an HNSW index needs the dimensions, which only the application
knows) and are never drift either.

The `pgvector` Python package (extra `vector`) is imported here only, and
optionally: without it `register` returns False and callers fall back to text.

Each pooled connection is also inspected once, when the pool opens it
(`configure`, one catalog query): whether the `vector` type exists, which
vector columns the schema has, and pgvector's adapter registered from the same
answer. `has_vector_column` then costs no round trip; a connection opened
before a migration added a vector column sees it once the pool replaces it
(`DATABASE_POOL_MAX_LIFETIME`). Vectors are written through the adapter
(`to_vector`), never as hand-made literals.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

import psycopg
from psycopg import pq
from psycopg.types import TypeInfo

logger = logging.getLogger(__name__)

EXTENSION = "vector"
# {table: vector columns that exist only where pgvector does}; the sync drops them when one side lacks them.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {"knowledge_atoms": ("embedding",)}
# Tables that exist only where pgvector does, in parent-before-child order (synced after TABLES).
OPTIONAL_TABLES: tuple[str, ...] = ("langgraph_store_vectors",)
RUNTIME_INDEX_PREFIX = "af_runtime_"


def has_pgvector(conn: psycopg.Connection[Any]) -> bool:
    """Return whether the database behind `conn` has the `vector` extension installed."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = %s)", (EXTENSION,)).fetchone()
    return bool(row and row[0])


def package_available() -> bool:
    """Return whether the `pgvector` Python package (extra `vector`) is importable."""
    try:
        import pgvector.psycopg  # noqa: F401
    except ImportError:
        return False
    return True


def register(conn: psycopg.Connection[Any]) -> bool:
    """Register pgvector's psycopg adapter on `conn` once; return False when the server or the package lacks it.

    Costs one catalog query the first time on a connection, none after.
    """
    if conn.adapters.types.get(EXTENSION) is not None:
        return True
    if not package_available():
        return False
    from pgvector.psycopg import register_vector

    try:
        register_vector(conn)
    except psycopg.ProgrammingError:  # pgvector raises it when the type is not in the database
        return False
    return True


def enable(conn: psycopg.Connection[Any], provider: str) -> bool:
    """Create the `vector` extension when the server ships it; return whether it is installed now.

    Needs a role allowed to create it (the local providers' admin role). Never
    raises for a server without pgvector: that provider keeps working on text.
    """
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = %s)",
                       (EXTENSION,)).fetchone()
    if not (row and row[0]):
        logger.info("provider %s: the server has no pgvector; semantic search falls back to text there", provider)
        return False
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return True


def missing_message(provider: str) -> str:
    """Return the one sentence `verify` and `schema verify` show for a provider without pgvector."""
    return f"pgvector missing on {provider}: semantic search falls back to text there"


def is_optional(table: str, column: str | None = None) -> bool:
    """Return whether a table (or a column of it) exists only where pgvector does."""
    if column is None:
        return table in OPTIONAL_TABLES
    return table in OPTIONAL_TABLES or column in OPTIONAL_COLUMNS.get(table, ())


# ---- per-connection inspection (the pool's configure hook) ------------------------------

# The vector type (if the extension is there) and the vector columns of the current schema's tables.
_INSPECT_SQL = """
SELECT t.oid, t.typarray,
       array(SELECT c.relname || '.' || a.attname
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             WHERE a.atttypid = t.oid AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind = 'r'
               AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()))
FROM pg_type t JOIN pg_extension e ON e.extname = 'vector'
WHERE t.typname = 'vector' AND t.typnamespace = e.extnamespace
"""

# Per libpq connection: None (no pgvector usable), or the "table.column" names of its vector columns.
_seen: weakref.WeakKeyDictionary[Any, frozenset[str] | None] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_UNSEEN = object()


def configure(conn: psycopg.Connection[Any]) -> None:
    """Inspect a new pooled connection (the pool's `configure` hook); never raises.

    A server with pgvector but no `pgvector` package here counts as one without
    (logged once per connection): semantic search there falls back to text.
    """
    try:
        inspect(conn)
    except psycopg.Error as exc:  # looked up again on first use
        logger.debug("could not inspect pgvector on a new connection: %s", exc)
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        conn.rollback()


def inspect(conn: psycopg.Connection[Any]) -> frozenset[str] | None:
    """Look the connection's database up (one query); return its vector columns, or None when pgvector is unusable.

    Registers pgvector's adapter on the connection when the extension and the package are there.
    """
    row = conn.execute(_INSPECT_SQL).fetchone()
    columns = None
    if row is not None:
        if package_available():
            from pgvector.psycopg.vector import register_vector_info

            register_vector_info(conn, TypeInfo(EXTENSION, row[0], row[1]))
            columns = frozenset(row[2])
        else:
            logger.warning("the server has pgvector but the pgvector package is missing "
                           "(pip install 'agent-factory[vector]'): vector columns are not used")
    with _lock:
        _seen[conn.pgconn] = columns
    return columns


def has_vector_column(conn: psycopg.Connection[Any], table: str, column: str) -> bool:
    """Return whether `table.column` is a usable pgvector column here (no query once the connection is inspected).

    A provider without pgvector has no such column (its migration skipped it).
    """
    with _lock:
        found = _seen.get(conn.pgconn, _UNSEEN)
    columns = inspect(conn) if found is _UNSEEN else found
    return columns is not None and f"{table}.{column}" in columns  # type: ignore[operator]


def to_vector(values: list[float]) -> Any:
    """Return `values` as a `pgvector` `Vector`, dumped by the adapter (never a hand-made literal)."""
    try:
        from pgvector import Vector  # pgvector >= 0.4
    except ImportError:  # pragma: no cover - older releases kept it in the adapter module
        from pgvector.psycopg import Vector  # type: ignore[attr-defined,no-redef]

    return Vector(values)
