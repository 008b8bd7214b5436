"""One SQLite database (WAL mode) under `AGENT_FACTORY_STATE_DIR`, safe for concurrent processes.

The tables and their versions are in `schema.py` and documented in
docs/STATE.md: failover events (here), the backup catalog (`backups.py`), the
monitor's samples, heartbeats and alerts (`monitoring.py`), and sync runs (here).

Each connection is short-lived and every write is one transaction, so several
processes (agents, cron, the status page) can share the file. `connect()`
creates and migrates the store and takes the write lock; `read()` opens it
read-only and creates nothing (the status page uses it).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, StateDirError, StateStoreError, StateStoreMissingError
from ..redact import scrub
from .schema import migrate, user_version

logger = logging.getLogger(__name__)


def ts(value: datetime) -> str:
    """Return `value` as the stored text form (UTC, microseconds)."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def parse_ts(value: str | None) -> datetime | None:
    """Return the datetime of a stored timestamp, or None."""
    return datetime.fromisoformat(value) if value else None


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


SWITCH = "switch"
FAILBACK_POSTPONED = "failback-postponed"


@dataclass(frozen=True)
class FailoverEvent:
    """One switch of the serving provider (`kind` "switch"), or a fail-back put off ("failback-postponed").

    A postponed fail-back runs from the backup that keeps traffic to the primary it would have gone to.
    """

    at: datetime
    from_provider: str
    to_provider: str
    reason: str
    kind: str = SWITCH

    @property
    def title(self) -> str:
        """Return "failover supabase -> railway" or "fail-back neon postponed", for people."""
        if self.kind == FAILBACK_POSTPONED:
            return f"fail-back {self.from_provider} -> {self.to_provider} postponed"
        return f"{self.from_provider} -> {self.to_provider}"


@dataclass(frozen=True)
class SyncRun:
    """One sync of a backup provider (`target`) from another (`source`), as `record_sync` stored it."""

    id: int
    at: datetime
    source: str
    target: str
    ok: bool
    rows_copied: int
    conflicts: int
    tombstones: int
    synced_through: datetime | None  # the source's data up to this time is on the target
    lag_s: float | None  # how far the target is behind the source, in seconds
    duration_s: float | None
    error: str | None


_SYNC_COLUMNS = ("id", "at", "source", "target", "ok", "rows_copied", "conflicts", "tombstones", "synced_through",
                 "lag_s", "duration_s", "error")


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class StateStore:
    """The state database at `<state_dir>/state.db`; created and migrated on the first `connect()`."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / "state.db"
        self._ready = False
        self._lock = threading.Lock()

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """Yield a connection inside one write transaction (committed on success, rolled back on error).

        Creates the file and applies pending migrations first. Waits up to
        30 s for another process's write lock (`sqlite3.OperationalError` after).
        """
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

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """Yield a read-only connection inside one deferred transaction: one consistent snapshot.

        Creates nothing and migrates nothing (an older store reads as it is: see
        `schema_version()`). Raises `StateStoreMissingError` when the file does
        not exist.
        """
        if not self.path.is_file():
            raise StateStoreMissingError(f"no state store at {self.path.absolute()}; run `agent-factory monitor "
                                         "--once` (or set AGENT_FACTORY_STATE_DIR)")
        conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True, timeout=30,
                               isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("ROLLBACK")
        finally:
            conn.close()

    def schema_version(self) -> int:
        """Return the store's schema version without changing it; raises `StateStoreMissingError` if absent."""
        with self.read() as conn:
            return user_version(conn)

    def _ensure_schema(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            conn = self._open()
            try:
                conn.execute("PRAGMA busy_timeout = 30000")
                _use_wal(conn)
                migrate(conn)
            except sqlite3.DatabaseError as exc:
                if "not a database" not in str(exc):
                    raise
                raise StateStoreError(f"{self.path.absolute()} is not a state store (not a SQLite database); "
                                      "move it away or point AGENT_FACTORY_STATE_DIR elsewhere") from None
            finally:
                conn.close()
            self.path.chmod(0o600)
            self._ready = True

    def _open(self) -> sqlite3.Connection:
        """Create the directory (0700) and open the file; raise `StateDirError` when either is impossible."""
        where = self.path.parent.absolute()
        hint = "point AGENT_FACTORY_STATE_DIR (--state-dir) at a directory"
        if where.exists() and not where.is_dir():
            raise StateDirError(f"the state directory {where} is a file, not a directory; {hint}")
        try:
            where.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:  # a file among its parents, no permission, read-only file system
            raise StateDirError(f"cannot create the state directory {where}: {exc.strerror}; {hint}") from None
        if self.path.is_dir():
            raise StateDirError(f"{self.path.absolute()} is a directory, not a state store file; {hint}")
        try:
            return sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise StateDirError(f"cannot open the state store {self.path.absolute()}: {exc}; {hint}") from None

    # ---- failover events ------------------------------------------------

    def record_failover(self, from_provider: str, to_provider: str, reason: str) -> FailoverEvent:
        """Append one switch of the serving provider (failover, fail-back, `set_provider`) and return it."""
        return self._record_event(FailoverEvent(utcnow(), from_provider, to_provider, reason))

    def record_failback_postponed(self, backup: str, primary: str, reason: str) -> FailoverEvent:
        """Append a fail-back from `backup` to `primary` that did not happen, with why, and return it."""
        return self._record_event(FailoverEvent(utcnow(), backup, primary, reason, FAILBACK_POSTPONED))

    def _record_event(self, event: FailoverEvent) -> FailoverEvent:
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO failover_events (at, from_provider, to_provider, reason, kind) VALUES (?, ?, ?, ?, ?)",
                (event.at.isoformat(), event.from_provider, event.to_provider, event.reason, event.kind),
            )
        return event

    def failovers(self, since: datetime | None = None) -> list[FailoverEvent]:
        """Return failover events (switches and postponed fail-backs), oldest first, optionally from `since` on."""
        query = "SELECT at, from_provider, to_provider, reason, kind FROM failover_events"
        args: tuple[str, ...] = ()
        if since is not None:
            query += " WHERE at >= ?"
            args = (since.astimezone(timezone.utc).isoformat(),)
        with self.connect() as conn:
            rows = conn.execute(query + " ORDER BY id", args).fetchall()
        return [FailoverEvent(datetime.fromisoformat(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    # ---- sync runs ------------------------------------------------------

    def record_sync(self, source: str, target: str, *, ok: bool, rows_copied: int = 0, conflicts: int = 0,
                    tombstones: int = 0, synced_through: datetime | None = None, lag_s: float | None = None,
                    duration_s: float | None = None, error: str | None = None) -> None:
        """Append one sync run of `target` from `source`; pruned with the monitor's retention.

        Raises `InvalidInputError` (nothing written) for an empty or equal
        provider name, a negative count, a negative duration or a naive
        `synced_through`. `error` is scrubbed of passwords and cut to 1000 chars.
        """
        for name, value in (("source", source), ("target", target)):
            if not isinstance(value, str) or not value.strip():
                raise InvalidInputError(f"sync {name} must be a provider name, got {value!r}")
        if source == target:
            raise InvalidInputError(f"sync source and target are both {source!r}; a provider does not sync to itself")
        for name, count in (("rows_copied", rows_copied), ("conflicts", conflicts), ("tombstones", tombstones)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise InvalidInputError(f"sync {name} must be a whole number >= 0, got {count!r}")
        for name, seconds in (("lag_s", lag_s), ("duration_s", duration_s)):
            if seconds is not None and not (isinstance(seconds, (int, float)) and seconds >= 0):
                raise InvalidInputError(f"sync {name} must be seconds >= 0 or None, got {seconds!r}")
        if synced_through is not None and synced_through.tzinfo is None:
            raise InvalidInputError(f"synced_through {synced_through.isoformat()} has no time zone; pass UTC")
        through = ts(synced_through) if synced_through is not None else None
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO sync_runs (at, source, target, ok, rows_copied, conflicts, tombstones, synced_through, "
                "lag_s, duration_s, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ts(utcnow()), source, target, int(bool(ok)), rows_copied, conflicts, tombstones, through,
                 lag_s, duration_s, scrub(error)[:1000] if error else None),
            )

    def latest_syncs(self) -> list[SyncRun]:
        """Return the newest sync run per (source, target), ordered by target then source."""
        with self.connect() as conn:
            return latest_syncs(conn)


def latest_syncs(conn: sqlite3.Connection) -> list[SyncRun]:
    """Return the newest sync run per (source, target) on an open connection (read-only is fine)."""
    rows = conn.execute(
        f"SELECT {', '.join(_SYNC_COLUMNS)} FROM sync_runs WHERE id IN "
        "(SELECT MAX(id) FROM sync_runs GROUP BY source, target) ORDER BY target, source").fetchall()
    return [_sync_run(r) for r in rows]


def _sync_run(row: tuple[Any, ...]) -> SyncRun:
    v = dict(zip(_SYNC_COLUMNS, row, strict=True))
    v["at"], v["synced_through"], v["ok"] = parse_ts(v["at"]), parse_ts(v["synced_through"]), bool(v["ok"])
    return SyncRun(**v)
