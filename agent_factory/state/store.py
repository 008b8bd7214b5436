"""One SQLite database (WAL mode) under `AGENT_FACTORY_STATE_DIR`, safe for concurrent processes.

Schema (documented in docs/STATE.md):

- `failover_events(id, at, from_provider, to_provider, reason)`: every switch of
  the serving provider, written by `DatabaseManager`.
- `backups(id, provider, path, format, purpose, status, started_at, finished_at,
  duration_s, size_bytes, sha256, host, server_version, pg_dump_version, row_counts,
  verified_at, verify_depth, verify_error, error, deleted_at)`: the backup catalog,
  one row per attempt (status ok, failed or pruned), written by `agent_factory.ops.backup`.
- `restores(id, provider, backup_path, backup_provider, started_at, finished_at,
  duration_s, status, pre_restore_backup, error)`: every restore, with its RTO.
- `health_samples(id, run_id, at, provider, is_primary, healthy, latency_ms,
  select_ms, error, row_counts)`: one row per provider per monitor run (row_counts
  is JSON `{table: count}`), pruned after MONITOR_RETENTION_DAYS (default 30).
- `monitor_runs(id, started_at, finished_at, can_serve, providers_up,
  providers_total, firing, summary, error)`: the monitor heartbeat, one row per run.
- `alerts(key, rule, severity, subject, state, consecutive_failures,
  consecutive_ok, summary, first_failed_at, fired_at, last_notified_at,
  resolved_at, updated_at)`: alert state between runs, one row per dedup key
  (e.g. `agent-factory/primary-down/neon`); state is "ok" or "firing".
- `alert_deliveries(id, created_at, alert_key, event, severity, channel, subject,
  body, status, attempts, last_attempt_at, last_error, sent_at, lease_until)`: the
  outbox, one row per notification per channel; status "pending" (retried on the
  next run), "sent" or "expired". Never holds a token or password.

Each connection is short-lived and every write is one transaction, so several
processes (agents, cron, the status page) can share the file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS failover_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        from_provider TEXT NOT NULL,
        to_provider TEXT NOT NULL,
        reason TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS failover_events_at ON failover_events(at)",
    """CREATE TABLE IF NOT EXISTS backups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        provider TEXT NOT NULL,
        path TEXT NOT NULL,
        format TEXT NOT NULL,
        purpose TEXT NOT NULL DEFAULT 'manual',
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        duration_s REAL,
        size_bytes INTEGER,
        sha256 TEXT,
        host TEXT,
        server_version TEXT,
        pg_dump_version TEXT,
        row_counts TEXT,
        verified_at TEXT,
        verify_depth TEXT,
        verify_error TEXT,
        error TEXT,
        deleted_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS backups_provider_started ON backups(provider, started_at)",
    "CREATE INDEX IF NOT EXISTS backups_path ON backups(path)",
    """CREATE TABLE IF NOT EXISTS restores (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        provider TEXT NOT NULL,
        backup_path TEXT NOT NULL,
        backup_provider TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        duration_s REAL,
        status TEXT NOT NULL,
        pre_restore_backup TEXT,
        error TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS health_samples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER,
        at TEXT NOT NULL,
        provider TEXT NOT NULL,
        is_primary INTEGER NOT NULL,
        healthy INTEGER NOT NULL,
        latency_ms REAL,
        select_ms REAL,
        error TEXT,
        row_counts TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS health_samples_at ON health_samples(at)",
    "CREATE INDEX IF NOT EXISTS health_samples_provider_at ON health_samples(provider, at)",
    """CREATE TABLE IF NOT EXISTS monitor_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        can_serve INTEGER,
        providers_up INTEGER,
        providers_total INTEGER,
        firing TEXT,
        summary TEXT,
        error TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS monitor_runs_started ON monitor_runs(started_at)",
    """CREATE TABLE IF NOT EXISTS alerts (
        key TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        severity TEXT NOT NULL,
        subject TEXT,
        state TEXT NOT NULL DEFAULT 'ok',
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        consecutive_ok INTEGER NOT NULL DEFAULT 0,
        summary TEXT NOT NULL DEFAULT '',
        first_failed_at TEXT,
        fired_at TEXT,
        last_notified_at TEXT,
        resolved_at TEXT,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS alert_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,
        alert_key TEXT NOT NULL,
        event TEXT NOT NULL,
        severity TEXT NOT NULL,
        channel TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_attempt_at TEXT,
        last_error TEXT,
        sent_at TEXT,
        lease_until TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS alert_deliveries_status ON alert_deliveries(status, id)",
]


def _use_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Put the file in WAL mode; two first openers race for it, and the loser finds it done."""
    for _ in range(attempts):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:  # switching needs the file to itself
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    raise sqlite3.OperationalError("could not put the state store in WAL mode: another process keeps it locked")


@dataclass(frozen=True)
class FailoverEvent:
    """One switch of the serving provider."""

    at: datetime
    from_provider: str
    to_provider: str
    reason: str


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class StateStore:
    """The state database at `<state_dir>/state.db`; created on first use."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / "state.db"
        self._ready = False
        self._lock = threading.Lock()

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """Yield a connection inside one transaction (committed on success, rolled back on error)."""
        self._ensure_schema()
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _ensure_schema(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                conn.execute("PRAGMA busy_timeout = 30000")
                _use_wal(conn)
                for ddl in SCHEMA:
                    conn.execute(ddl)
            finally:
                conn.close()
            self.path.chmod(0o600)
            self._ready = True

    # ---- failover events ------------------------------------------------

    def record_failover(self, from_provider: str, to_provider: str, reason: str) -> FailoverEvent:
        """Append one failover (or fail-back) event and return it."""
        event = FailoverEvent(utcnow(), from_provider, to_provider, reason)
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO failover_events (at, from_provider, to_provider, reason) VALUES (?, ?, ?, ?)",
                (event.at.isoformat(), from_provider, to_provider, reason),
            )
        return event

    def failovers(self, since: datetime | None = None) -> list[FailoverEvent]:
        """Return failover events, oldest first, optionally only those at or after `since`."""
        query = "SELECT at, from_provider, to_provider, reason FROM failover_events"
        args: tuple[str, ...] = ()
        if since is not None:
            query += " WHERE at >= ?"
            args = (since.astimezone(timezone.utc).isoformat(),)
        with self.connect() as conn:
            rows = conn.execute(query + " ORDER BY id", args).fetchall()
        return [FailoverEvent(datetime.fromisoformat(r[0]), r[1], r[2], r[3]) for r in rows]
