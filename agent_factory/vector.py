"""pgvector where the server has it: detect the extension and register its psycopg adapter per connection.

Vector columns exist only on providers whose server has pgvector (migrations
guard them on `pg_extension`). A connection is looked up once: the result
(the `vector` type, or None) is kept for the connection's lifetime, so the
statements that follow pay no extra round trip. The `pgvector` package (the
`vector` extra) is imported only when a server has the extension.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

import psycopg
from psycopg.types import TypeInfo

from .errors import ConfigError

logger = logging.getLogger(__name__)

_TYPE_SQL = """
SELECT t.oid, t.typarray FROM pg_type t JOIN pg_extension e ON e.extname = 'vector'
WHERE t.typname = 'vector' AND t.typnamespace = e.extnamespace
"""

# The type of a vector column (the extension's type), if the column exists.
_COLUMN_SQL = """
SELECT t.oid, t.typarray FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass(%s) AND a.attname = %s AND NOT a.attisdropped AND t.typname = 'vector'
"""

_seen: weakref.WeakKeyDictionary[psycopg.Connection[Any], dict[str, bool]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def has_pgvector(conn: psycopg.Connection[Any]) -> bool:
    """Return whether the connection's database has the `vector` extension (registering its adapter if so).

    One catalog query the first time a connection is asked, none after.
    Raises `ConfigError` when the server has pgvector but the `pgvector` package is not installed.
    """
    return _lookup(conn, "", _TYPE_SQL, ())


def has_vector_column(conn: psycopg.Connection[Any], table: str, column: str) -> bool:
    """Return whether `table.column` exists as a pgvector column here (registering the adapter if so).

    A provider without pgvector has no such column (its migration skipped it). One catalog
    query the first time a connection is asked about this column, none after.
    Raises `ConfigError` when the column exists but the `pgvector` package is not installed.
    """
    return _lookup(conn, f"{table}.{column}", _COLUMN_SQL, (table, column))


def _lookup(conn: psycopg.Connection[Any], key: str, query: str, params: tuple[str, ...]) -> bool:
    with _lock:
        known = _seen.get(conn, {}).get(key)
    if known is not None:
        return known
    row = conn.execute(query, params).fetchone()
    if row is not None:
        _register_info(conn, TypeInfo("vector", row[0], row[1]))
    with _lock:
        _seen.setdefault(conn, {})[key] = row is not None
    return row is not None


def register(conn: psycopg.Connection[Any]) -> None:
    """Register pgvector's psycopg adapter on `conn`.

    Raises `ConfigError` when the database has no `vector` extension or the `pgvector` package is missing.
    """
    if not has_pgvector(conn):
        raise ConfigError("the database has no pgvector extension (CREATE EXTENSION vector)")


def _register_info(conn: psycopg.Connection[Any], info: TypeInfo) -> None:
    try:
        from pgvector.psycopg.vector import register_vector_info
    except ImportError as exc:
        raise ConfigError("the server has pgvector but the pgvector package is missing: "
                          "pip install 'agent-factory[vector]'") from exc
    register_vector_info(conn, info)


def to_vector(values: list[float]) -> Any:
    """Return `values` as a `pgvector.Vector` (dumped by the adapter, never as a hand-made literal)."""
    from pgvector.psycopg import Vector

    return Vector(values)
