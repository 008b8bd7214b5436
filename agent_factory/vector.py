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
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import psycopg

logger = logging.getLogger(__name__)

EXTENSION = "vector"
# {table: vector columns that exist only where pgvector does}; the sync drops them when one side lacks them.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {}
# Tables that exist only where pgvector does, in parent-before-child order (synced after TABLES).
OPTIONAL_TABLES: tuple[str, ...] = ("langgraph_store_vectors",)
RUNTIME_INDEX_PREFIX = "af_runtime_"


def has_pgvector(conn: psycopg.Connection[Any]) -> bool:
    """Return whether the database behind `conn` has the `vector` extension installed."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = %s)", (EXTENSION,)).fetchone()
    return bool(row and row[0])


def package_available() -> bool:
    """Return whether the `pgvector` Python package (extra `vector`) is importable."""
    return importlib.util.find_spec("pgvector") is not None


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
