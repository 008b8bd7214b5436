"""Load the status page's data from the state store, read-only: settings in, one `Snapshot` out.

No database connection, no provider URL, no password: the page reads
`$AGENT_FACTORY_STATE_DIR/state.db` through `StateStore.read()` (which creates
nothing) in one transaction, so every table comes from the same moment. Free
text that could carry a secret (errors, summaries) is scrubbed again here, and
backups are named by file, never by path. No Streamlit in this module.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from agent_factory.config import env_float, read_env
from agent_factory.redact import scrub_foreign
from agent_factory.state.backups import BackupRecord, RestoreRecord, backup_rows, latest_restore
from agent_factory.state.divergence import Divergence, latest_divergence
from agent_factory.state.schema import user_version
from agent_factory.state.store import StateStore, SyncRun, latest_syncs, ts
from agent_factory.state.streams import StreamSample, latest_stream_samples

@dataclass(frozen=True)
class PageSettings:
    """What the page measures against; defaults follow the runbook and the monitor."""

    state_dir: Path = Path("var")
    backup_max_age: timedelta | None = timedelta(hours=24)  # the RPO target; None: no target
    retention: timedelta = timedelta(days=30)
    sync_max_lag: timedelta = timedelta(minutes=10)
    stream_max_lag: timedelta = timedelta(seconds=30)
    stale_after: timedelta = timedelta(minutes=10)  # a newer heartbeat than this, or "Status unknown"


def page_settings(env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env",
                  state_dir: str | Path | None = None) -> PageSettings:
    """Return the page settings from `env` (default `os.environ`) over `env_file`.

    Reads AGENT_FACTORY_STATE_DIR (unless `state_dir` is given),
    MONITOR_BACKUP_MAX_AGE_HOURS (24; 0 = no target), MONITOR_RETENTION_DAYS
    (30), SYNC_MAX_LAG_MINUTES (10) and STREAM_LAG_ALERT_SECONDS (30). Needs no provider URL. Raises
    `ConfigError` naming a malformed variable.
    """
    values = {k: v.strip() for k, v in read_env(env, env_file).items() if v is not None and v.strip()}
    backup_hours = env_float(values, "MONITOR_BACKUP_MAX_AGE_HOURS", 24, minimum=0, unit="hours")
    return PageSettings(
        state_dir=Path(state_dir if state_dir is not None else values.get("AGENT_FACTORY_STATE_DIR", "./var")),
        backup_max_age=timedelta(hours=backup_hours) if backup_hours > 0 else None,
        retention=timedelta(days=env_float(values, "MONITOR_RETENTION_DAYS", 30, minimum=0.01, unit="days")),
        sync_max_lag=timedelta(minutes=env_float(values, "SYNC_MAX_LAG_MINUTES", 10, minimum=0.01,
                                                 unit="minutes")),
        stream_max_lag=timedelta(seconds=env_float(values, "STREAM_LAG_ALERT_SECONDS", 30, minimum=0.01)),
    )


def clean(text: str | None) -> str | None:
    """Return `text` without passwords, tokens or keys (None stays None)."""
    return None if text is None else scrub_foreign(str(text))


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """Everything the page shows, read from the state store in one transaction.

    Times are timezone-aware UTC. Tables cover the retention window (`since`).
    """

    path: Path
    loaded_at: datetime
    since: datetime
    schema_version: int
    runs: pd.DataFrame  # id, started_at, finished_at, error, primary_provider, serving_provider; newest first
    samples: pd.DataFrame  # run_id, at, provider, is_primary, healthy, latency_ms, error; oldest first
    firing: pd.DataFrame  # key, rule, severity, subject, summary, fired_at
    alert_events: pd.DataFrame  # at, alert_key, rule, severity, subject, event, summary
    deliveries: pd.DataFrame  # failed or expired: created_at, last_attempt_at, alert_key, event, channel, status,
    #                           attempts, last_error
    failovers: pd.DataFrame  # at, from_provider, to_provider, reason, kind ("switch" or "failback-postponed")
    backups: list[BackupRecord] = field(default_factory=list)  # paths are file names
    restore: RestoreRecord | None = None
    syncs: list[SyncRun] = field(default_factory=list)
    divergence: list[Divergence] = field(default_factory=list)  # the newest finding per backup
    sizes: pd.DataFrame = field(default_factory=pd.DataFrame)  # at, provider, database_bytes, quota_bytes; oldest first
    streams: list[StreamSample] = field(default_factory=list)  # the newest stream sample per backup

    @property
    def empty(self) -> bool:
        """Whether the monitor never ran (or not within the retention)."""
        return self.runs.empty


_TIME_COLUMNS = {"started_at", "finished_at", "at", "fired_at", "created_at", "last_attempt_at"}
_TEXT_COLUMNS = {"summary", "error", "last_error", "reason"}


def _frame(conn: sqlite3.Connection, query: str, args: tuple[object, ...] = ()) -> pd.DataFrame:
    cur = conn.execute(query, args)
    frame = pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])
    for column in frame.columns:
        if column in _TIME_COLUMNS:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        elif column in _TEXT_COLUMNS:  # each distinct text once: 8,640 runs repeat a handful of summaries
            cleaned = {text: clean(text) for text in frame[column].dropna().unique()}
            frame[column] = frame[column].map(cleaned, na_action="ignore")
    return frame


def load_snapshot(state_dir: str | Path, now: datetime, retention: timedelta = timedelta(days=30)) -> Snapshot:
    """Read the page's data for the `retention` window before `now`.

    Raises `StateStoreMissingError` when there is no store. A store written by
    an older version is read as it is (missing columns and tables read as
    empty); nothing is created, migrated or locked.
    """
    store = StateStore(state_dir)
    since = now - retention
    cutoff = (ts(since),)
    with store.read() as conn:
        version = user_version(conn)
        serving = "primary_provider, serving_provider" if version >= 2 else \
            "NULL AS primary_provider, NULL AS serving_provider"
        runs = _frame(conn, f"SELECT id, started_at, finished_at, error, {serving} FROM monitor_runs "
                            "WHERE started_at >= ? ORDER BY id DESC", cutoff)
        samples = _frame(conn, "SELECT run_id, at, provider, is_primary, healthy, latency_ms, error "
                               "FROM health_samples WHERE at >= ? ORDER BY at, id", cutoff)
        firing = _frame(conn, "SELECT key, rule, severity, subject, summary, fired_at FROM alerts "
                              "WHERE state = 'firing' ORDER BY key")
        events = (_frame(conn, "SELECT at, alert_key, rule, severity, subject, event, summary FROM alert_events "
                               "WHERE at >= ? ORDER BY at DESC, id DESC", cutoff) if version >= 2 else
                  _frame(conn, "SELECT NULL AS at, '' AS alert_key, '' AS rule, '' AS severity, NULL AS subject, "
                               "'' AS event, '' AS summary WHERE 0"))
        deliveries = _frame(conn, "SELECT created_at, last_attempt_at, alert_key, event, channel, status, attempts, "
                                  "last_error FROM alert_deliveries WHERE (last_error IS NOT NULL OR "
                                  "status = 'expired') AND COALESCE(last_attempt_at, created_at) >= ? "
                                  "ORDER BY id DESC", cutoff)
        kind = "kind" if version >= 5 else "'switch' AS kind"
        failovers = _frame(conn, f"SELECT at, from_provider, to_provider, reason, {kind} FROM failover_events "
                                 "WHERE at >= ? ORDER BY id DESC", cutoff)
        backups = [_named(r) for r in backup_rows(conn, statuses=("ok", "failed", "pruned"))]
        restore = latest_restore(conn)
        syncs = [replace(s, error=clean(s.error)) for s in latest_syncs(conn)] if version >= 3 else []
        diverged = [replace(d, error=clean(d.error)) for d in latest_divergence(conn)] if version >= 5 else []
        sizes = _sizes(conn, cutoff)
        streams = ([replace(x, detail=clean(x.detail) or "") for x in latest_stream_samples(conn)]
                   if version >= 7 else [])
    if restore is not None:
        restore = replace(restore, backup_path=Path(restore.backup_path).name, error=clean(restore.error),
                          pre_restore_backup=Path(restore.pre_restore_backup).name
                          if restore.pre_restore_backup else None)
    return Snapshot(path=store.path, loaded_at=now, since=since, schema_version=version, runs=runs,
                    samples=samples, firing=firing, alert_events=events, deliveries=deliveries, failovers=failovers,
                    backups=backups, restore=restore, syncs=syncs, divergence=diverged, sizes=sizes,
                    streams=streams)


def _sizes(conn: sqlite3.Connection, cutoff: tuple[object, ...]) -> pd.DataFrame:
    """Return the monitor's size samples (hourly peaks), or an empty frame on a store without them."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'size_samples'").fetchone() is None:
        return pd.DataFrame(columns=["at", "provider", "database_bytes", "quota_bytes"])
    return _frame(conn, "SELECT strftime('%Y-%m-%dT%H:00:00+00:00', at) AS at, provider, "
                        "max(database_bytes) AS database_bytes, max(quota_bytes) AS quota_bytes FROM size_samples "
                        "WHERE at >= ? GROUP BY provider, strftime('%Y-%m-%dT%H', at) ORDER BY at, provider", cutoff)


def _named(record: BackupRecord) -> BackupRecord:
    record.path = Path(record.path).name
    record.host = None
    record.error = clean(record.error)
    record.verify_error = clean(record.verify_error)
    return record


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)
