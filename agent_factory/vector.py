"""pgvector where the server has it: detect the extension and its columns, register its psycopg adapter.

Vector columns exist only on providers whose server has pgvector (migrations
guard them on `pg_extension`). Each pooled connection is inspected once, when
the pool opens it (`configure`, one catalog query): whether the `vector` type
exists and which vector columns the schema has. The answer is kept for the
connection's lifetime, so statements pay no extra round trip; a connection
opened before a migration added a vector column sees it once it is replaced
(`DATABASE_POOL_MAX_LIFETIME`). The adapter is pgvector's own
(`pgvector.psycopg`, the `vector` extra), registered from the same query
rather than by `register_vector`, which would cost four more round trips per
connection. Vectors are never written as hand-made literals.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

import psycopg
from psycopg import pq
from psycopg.types import TypeInfo

from .errors import ConfigError

logger = logging.getLogger(__name__)

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

# Per libpq connection: None (no pgvector), or the "table.column" names of its vector columns.
_seen: weakref.WeakKeyDictionary[Any, frozenset[str] | None] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_MISSING = object()


def configure(conn: psycopg.Connection[Any]) -> None:
    """Inspect a new pooled connection (the pool's `configure` hook); never raises for pgvector's sake.

    A server with pgvector but no `pgvector` package installed is logged and treated as
    one without: semantic search there falls back to text.
    """
    try:
        inspect(conn)
    except ConfigError as exc:
        logger.warning("%s; vector columns are not used on this connection", exc)
        with _lock:
            _seen[conn.pgconn] = None
    except psycopg.Error as exc:  # looked up again on first use
        logger.debug("could not inspect pgvector on a new connection: %s", exc)
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        conn.rollback()


def inspect(conn: psycopg.Connection[Any]) -> frozenset[str] | None:
    """Look the connection's database up (one query); return its vector columns, or None without pgvector.

    Registers pgvector's adapter on the connection when the extension is there.
    Raises `ConfigError` when the server has pgvector but the `pgvector` package is missing.
    """
    row = conn.execute(_INSPECT_SQL).fetchone()
    columns = None
    if row is not None:
        try:
            from pgvector.psycopg.vector import register_vector_info
        except ImportError as exc:
            raise ConfigError("the server has pgvector but the pgvector package is missing: "
                              "pip install 'agent-factory[vector]'") from exc
        register_vector_info(conn, TypeInfo("vector", row[0], row[1]))
        columns = frozenset(row[2])
    with _lock:
        _seen[conn.pgconn] = columns
    return columns


def _known(conn: psycopg.Connection[Any]) -> frozenset[str] | None:
    with _lock:
        found = _seen.get(conn.pgconn, _MISSING)
    return inspect(conn) if found is _MISSING else found  # type: ignore[return-value]


def has_pgvector(conn: psycopg.Connection[Any]) -> bool:
    """Return whether the connection's database has the `vector` extension (no query once inspected).

    Raises `ConfigError` when the server has pgvector but the `pgvector` package is missing.
    """
    return _known(conn) is not None


def has_vector_column(conn: psycopg.Connection[Any], table: str, column: str) -> bool:
    """Return whether `table.column` is a pgvector column here (no query once the connection is inspected).

    A provider without pgvector has no such column (its migration skipped it).
    Raises `ConfigError` when the server has pgvector but the `pgvector` package is missing.
    """
    columns = _known(conn)
    return columns is not None and f"{table}.{column}" in columns


def register(conn: psycopg.Connection[Any]) -> None:
    """Make sure pgvector's psycopg adapter is registered on `conn`.

    Raises `ConfigError` when the database has no `vector` extension or the `pgvector` package is missing.
    """
    if not has_pgvector(conn):
        raise ConfigError("the database has no pgvector extension (CREATE EXTENSION vector)")


def to_vector(values: list[float]) -> Any:
    """Return `values` as a `pgvector.Vector` (dumped by the adapter, never as a hand-made literal)."""
    from pgvector.psycopg import Vector

    return Vector(values)
