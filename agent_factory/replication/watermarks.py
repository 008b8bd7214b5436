"""Watermarks (kept in the target database), the safe horizon on the source, and the per-target lock.

A watermark `(synced_through, after_id)` for (source, target, table) promises:
the target holds, or holds a newer version of, every row version the source
had with `changed_at < synced_through` (after_id NULL), or with
`(changed_at, id) <= (synced_through, after_id)` (a sync stopped half way).

The horizon of a run is the source time below which every row change is
committed and visible: `min(clock - margin, start of the oldest transaction
still writing on the source)`, read before any data. `changed_at` is stamped
by the source's own clock, so clock skew between providers plays no part; the
margin covers writers whose `pg_stat_activity` row is hidden from us (another
role) and clock steps on the source host.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import psycopg

from ..errors import SchemaError, SyncBusyError

LOCK_KEY = 0x4146_5359  # "AFSY": one sync at a time into a target database

_HORIZON_SQL = """
SELECT clock_timestamp(),
       (SELECT min(xact_start) FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND datname = current_database())
"""


@dataclass(frozen=True)
class Watermark:
    """How far the target holds one source table."""

    synced_through: datetime | None  # None: -infinity (rows older than the migration)
    after_id: UUID | None = None


@dataclass(frozen=True)
class Horizon:
    """The source clock when the run started (`now`) and the time below which all changes are visible (`safe`).

    `settled` is `now`, or the start of the oldest transaction still writing
    when one was: every change stamped before it was committed when the run
    began, so every table read later in the run sees all of them (see
    `tables.FOLLOWERS`).
    """

    now: datetime
    safe: datetime
    settled: datetime | None = None

    def until(self, table: str, followers: Iterable[str]) -> datetime:
        """Return the upper bound of the changes a run copies from `table` (exclusive)."""
        if table in followers and self.settled is not None:
            return self.settled
        return self.now


def read_horizon(conn: psycopg.Connection, margin_s: float) -> Horizon:
    """Return the source's horizon; run this before reading any data (ends its own transaction)."""
    row = conn.execute(_HORIZON_SQL).fetchone()
    conn.rollback()
    assert row is not None
    now, oldest = row
    safe = now - timedelta(seconds=margin_s)
    if oldest is not None and oldest < safe:
        safe = oldest
    settled = oldest if oldest is not None and oldest < now else now
    return Horizon(now, safe, settled)


def read_watermarks(conn: psycopg.Connection, source: str, target: str) -> dict[str, Watermark]:
    """Return `{table: Watermark}` stored in the target for this pair (ends its own transaction).

    Raises `SchemaError` when the target has no `sync_watermarks` table.
    """
    try:
        rows = conn.execute(
            "SELECT table_name, CASE WHEN isfinite(synced_through) THEN synced_through END, after_id "
            "FROM sync_watermarks WHERE source = %s AND target = %s",
            (source, target)).fetchall()
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        raise SchemaError(f"provider {target} has no sync_watermarks table (migration 0003_sync_watermarks "
                          "not applied); run `agent-factory schema deploy`") from None
    conn.rollback()
    return {table: Watermark(ts, after) for table, ts, after in rows}


def save_watermarks(conn: psycopg.Connection, source: str, target: str,
                    marks: Iterable[tuple[str, Watermark]]) -> None:
    """Upsert watermarks in the caller's transaction (one statement)."""
    items = list(marks)
    if not items:
        return
    conn.execute(
        """INSERT INTO sync_watermarks AS w (source, target, table_name, synced_through, after_id)
           SELECT %s, %s, name, coalesce(ts, '-infinity'), after
           FROM unnest(%s::text[], %s::timestamptz[], %s::uuid[]) AS u(name, ts, after)
           ON CONFLICT (source, target, table_name) DO UPDATE
           SET synced_through = excluded.synced_through, after_id = excluded.after_id, updated_at = now()""",
        (source, target, [t for t, _ in items], [m.synced_through for _, m in items],
         [m.after_id for _, m in items]))


def acquire_lock(conn: psycopg.Connection, target: str, wait_s: float) -> None:
    """Take the target's sync lock (session level) on `conn`, waiting up to `wait_s` seconds.

    Raises `SyncBusyError` naming the holder when another sync keeps it.
    """
    deadline = time.monotonic() + max(wait_s, 0.0)
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        conn.rollback()
        if row and row[0]:
            return
        if time.monotonic() >= deadline:
            raise SyncBusyError(target, _holder(conn))
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))


def release_lock(conn: psycopg.Connection) -> None:
    """Release the target's sync lock taken by `acquire_lock` on this connection."""
    if conn.closed:
        return
    try:
        conn.rollback()
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        conn.rollback()
    except psycopg.Error:
        conn.close()  # a broken connection loses its session locks anyway


def _holder(conn: psycopg.Connection) -> str:
    try:
        row = conn.execute(
            """SELECT a.pid, a.application_name, a.client_addr::text, a.backend_start
               FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.granted AND l.objid = %s AND l.database = (
                   SELECT oid FROM pg_database WHERE datname = current_database())
               LIMIT 1""", (LOCK_KEY & 0xFFFF_FFFF,)).fetchone()
        conn.rollback()
    except psycopg.Error:
        return "another process"
    if not row:
        return "another process"
    pid, app, addr, _started = row
    return f"backend pid {pid} ({app or 'unknown application'} from {addr or 'local socket'})"
