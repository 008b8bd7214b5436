"""One SQLite database (WAL mode) under `AGENT_FACTORY_STATE_DIR`, safe for concurrent processes.

Schema (documented in docs/STATE.md):

- `failover_events(id, at, from_provider, to_provider, reason)`: every switch of
  the serving provider, written by `DatabaseManager`.

Each connection is short-lived and every write is one transaction, so several
processes (agents, cron, the status page) can share the file.
"""

from __future__ import annotations

import sqlite3
import threading
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
]


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
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA busy_timeout = 30000")
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
