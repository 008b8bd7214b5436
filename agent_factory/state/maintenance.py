"""The maintenance history in the state store: database sizes, pool figures and query statistics.

The monitor adds a size sample and a pool sample per provider each run;
`slow-queries` adds a snapshot of `pg_stat_statements` each time it runs.
They feed `capacity` (growth per day, days left before the quota),
`maintenance pools` and `maintenance queries` (trends, not snapshots).
Timestamps are UTC ISO-8601 text, as in the other tables. Query texts are
stored as `slow-queries` shows them: normalized and scrubbed of passwords.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .store import StateStore, ts

__all__ = ["PoolSample", "QuerySample", "SizeSample", "add_pool_samples", "add_query_samples", "add_size_samples",
           "pool_samples", "prune", "query_samples", "size_samples"]

_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class SizeSample:
    """The size of one provider's database at one time."""

    provider: str
    at: datetime
    database_bytes: int
    tables_bytes: int | None = None  # our tables with their indexes and TOAST
    quota_bytes: int | None = None  # NAME_STORAGE_QUOTA_MB then


@dataclass(frozen=True)
class PoolSample:
    """Connection figures of one provider at one time: from the server (`source` "server") or one process's pool."""

    provider: str
    at: datetime
    source: str  # "server" (pg_stat_activity) or "pool:<application>:<pid>"
    figures: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class QuerySample:
    """One statement's cumulative `pg_stat_statements` counters at one time."""

    provider: str
    at: datetime
    query: str
    calls: int
    total_ms: float
    rows: int


def add_size_samples(conn: sqlite3.Connection, samples: Sequence[SizeSample]) -> None:
    """Store size samples."""
    conn.executemany("INSERT INTO size_samples (at, provider, database_bytes, tables_bytes, quota_bytes) "
                     "VALUES (?, ?, ?, ?, ?)",
                     [(ts(s.at), s.provider, s.database_bytes, s.tables_bytes, s.quota_bytes) for s in samples])


def add_pool_samples(conn: sqlite3.Connection, samples: Sequence[PoolSample]) -> None:
    """Store pool samples."""
    conn.executemany("INSERT INTO pool_samples (at, provider, source, figures) VALUES (?, ?, ?, ?)",
                     [(ts(s.at), s.provider, s.source, json.dumps(s.figures, sort_keys=True)) for s in samples])


def add_query_samples(conn: sqlite3.Connection, samples: Sequence[QuerySample]) -> None:
    """Store one snapshot of query statistics."""
    conn.executemany("INSERT INTO query_samples (at, provider, query, calls, total_ms, rows) VALUES (?, ?, ?, ?, ?, ?)",
                     [(ts(s.at), s.provider, s.query, s.calls, s.total_ms, s.rows) for s in samples])


def _rows(store: StateStore, sql: str, provider: str | None, since: datetime | None) -> list[tuple[Any, ...]]:
    where, args = "at >= ?", [ts(since or _EPOCH)]
    if provider is not None:
        where += " AND provider = ?"
        args.append(provider)
    with store.connect() as conn:
        return conn.execute(sql.format(where=where), args).fetchall()


def size_samples(store: StateStore, provider: str | None = None, since: datetime | None = None) -> list[SizeSample]:
    """Return size samples, oldest first."""
    rows = _rows(store, "SELECT provider, at, database_bytes, tables_bytes, quota_bytes FROM size_samples "
                        "WHERE {where} ORDER BY at, id", provider, since)
    return [SizeSample(r[0], datetime.fromisoformat(r[1]), r[2], r[3], r[4]) for r in rows]


def pool_samples(store: StateStore, provider: str | None = None, since: datetime | None = None) -> list[PoolSample]:
    """Return pool samples, oldest first."""
    rows = _rows(store, "SELECT provider, at, source, figures FROM pool_samples WHERE {where} ORDER BY at, id",
                 provider, since)
    return [PoolSample(r[0], datetime.fromisoformat(r[1]), r[2], json.loads(r[3])) for r in rows]


def query_samples(store: StateStore, provider: str | None = None, since: datetime | None = None
                  ) -> list[QuerySample]:
    """Return query snapshots, oldest first."""
    rows = _rows(store, "SELECT provider, at, query, calls, total_ms, rows FROM query_samples WHERE {where} "
                        "ORDER BY at, id", provider, since)
    return [QuerySample(r[0], datetime.fromisoformat(r[1]), r[2], r[3], r[4], r[5]) for r in rows]


def prune(conn: sqlite3.Connection, before: datetime) -> dict[str, int]:
    """Delete maintenance history older than `before`; return counts per table."""
    cutoff = ts(before)
    return {table: conn.execute(f"DELETE FROM {table} WHERE at < ?", (cutoff,)).rowcount
            for table in ("size_samples", "pool_samples", "query_samples")}
