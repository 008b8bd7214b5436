"""The state store's schema as numbered migrations, tracked in `PRAGMA user_version`.

Migration N brings a store from version N-1 to N. Each runs once, in the same
`BEGIN IMMEDIATE` transaction as the `user_version` bump, so concurrent
processes opening an old store migrate it exactly once and a failed migration
leaves it untouched. Migrations only add (tables, columns, indexes): code that
knows an older version keeps working on a newer store.

A store written before versioning has `user_version` 0 and the tables of
migration 1 already; migration 1 uses `IF NOT EXISTS`, so it is a no-op there.
"""

from __future__ import annotations

import logging
import sqlite3

logger = logging.getLogger(__name__)

_INITIAL = [
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

_SERVING_AND_ALERT_EVENTS = [
    "ALTER TABLE monitor_runs ADD COLUMN primary_provider TEXT",
    "ALTER TABLE monitor_runs ADD COLUMN serving_provider TEXT",
    """CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        alert_key TEXT NOT NULL,
        rule TEXT NOT NULL,
        severity TEXT NOT NULL,
        subject TEXT,
        event TEXT NOT NULL,
        summary TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX alert_events_at ON alert_events(at)",
]

_SYNC_RUNS = [
    """CREATE TABLE sync_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        source TEXT NOT NULL,
        target TEXT NOT NULL,
        ok INTEGER NOT NULL,
        rows_copied INTEGER NOT NULL DEFAULT 0,
        conflicts INTEGER NOT NULL DEFAULT 0,
        tombstones INTEGER NOT NULL DEFAULT 0,
        synced_through TEXT,
        lag_s REAL,
        duration_s REAL,
        error TEXT
    )""",
    "CREATE INDEX sync_runs_target_at ON sync_runs(target, at)",
]

_EVENT_KINDS_AND_DIVERGENCE = [
    # A postponed fail-back was stored as a "failover" from the backup to itself with the reason
    # "fail-back to <primary> postponed: <why>"; it becomes its own kind, from the backup to the primary.
    "ALTER TABLE failover_events ADD COLUMN kind TEXT NOT NULL DEFAULT 'switch'",
    """UPDATE failover_events
       SET kind = 'failback-postponed',
           to_provider = substr(reason, 14, instr(reason, ' postponed: ') - 14),
           reason = substr(reason, instr(reason, ' postponed: ') + 12)
       WHERE from_provider = to_provider AND reason LIKE 'fail-back to % postponed: %'""",
    """CREATE TABLE divergence (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER,
        at TEXT NOT NULL,
        backup TEXT NOT NULL,
        primary_provider TEXT NOT NULL,
        rows INTEGER,
        oldest_at TEXT,
        merged INTEGER NOT NULL DEFAULT 0,
        error TEXT
    )""",
    "CREATE INDEX divergence_at ON divergence(at)",
]

_MAINTENANCE_SAMPLES = [
    """CREATE TABLE size_samples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        provider TEXT NOT NULL,
        database_bytes INTEGER NOT NULL,
        tables_bytes INTEGER,
        quota_bytes INTEGER
    )""",
    "CREATE INDEX size_samples_provider_at ON size_samples(provider, at)",
    """CREATE TABLE pool_samples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        provider TEXT NOT NULL,
        source TEXT NOT NULL,
        figures TEXT NOT NULL
    )""",
    "CREATE INDEX pool_samples_provider_at ON pool_samples(provider, at)",
    """CREATE TABLE query_samples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        provider TEXT NOT NULL,
        query TEXT NOT NULL,
        calls INTEGER NOT NULL,
        total_ms REAL NOT NULL,
        rows INTEGER NOT NULL
    )""",
    "CREATE INDEX query_samples_provider_at ON query_samples(provider, at)",
]

_STREAM_SAMPLES = [
    """CREATE TABLE stream_samples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER,
        at TEXT NOT NULL,
        subscriber TEXT NOT NULL,
        publisher TEXT NOT NULL,
        status TEXT NOT NULL,
        lag_seconds REAL,
        lag_bytes INTEGER,
        detail TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX stream_samples_subscriber_at ON stream_samples(subscriber, at)",
]
# (what it does, its statements); the version after migration N is N (1-based).
MIGRATIONS: list[tuple[str, list[str]]] = [
    ("initial tables", _INITIAL),
    ("monitor_runs.primary_provider/serving_provider, alert_events", _SERVING_AND_ALERT_EVENTS),
    ("sync_runs", _SYNC_RUNS),
    ("backups.signed", ["ALTER TABLE backups ADD COLUMN signed INTEGER NOT NULL DEFAULT 0"]),
    ("failover_events.kind (fail-back postponed), divergence", _EVENT_KINDS_AND_DIVERGENCE),
    ("size_samples, pool_samples, query_samples (maintenance history)", _MAINTENANCE_SAMPLES),
    ("stream_samples (each backup's logical-replication stream per monitor run)", _STREAM_SAMPLES),
]
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    """Return the schema version recorded in the database file."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Bring the database to `SCHEMA_VERSION` in one transaction; return the versions applied.

    `conn` must be in autocommit mode (`isolation_level=None`) with no open
    transaction. On any error the transaction is rolled back and the store
    keeps its old version. A store newer than this code is left alone (logged).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = user_version(conn)
        applied = []
        for version, (what, statements) in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            for statement in statements:
                conn.execute(statement)
            applied.append(version)
            logger.info("state store migrated to version %d: %s", version, what)
        if applied:
            conn.execute(f"PRAGMA user_version = {applied[-1]:d}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    if current > SCHEMA_VERSION:
        logger.warning("state store is at schema version %d, newer than this code's %d; using it as is",
                       current, SCHEMA_VERSION)
    return applied
