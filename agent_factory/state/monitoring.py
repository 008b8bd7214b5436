"""The monitor's tables in the state store: health samples, heartbeats, alert state and events, the outbox.

Writers take a `sqlite3.Connection` so the monitor can update alert state and
queue notifications in one transaction; readers take the `StateStore`.
Timestamps are stored as UTC ISO-8601 with microseconds, so they sort as text.
Nothing stored here holds a password or a token: provider errors are scrubbed
by the core library and channel secrets stay in the environment.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from .store import StateStore, parse_ts, ts


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


# ---- records ---------------------------------------------------------------


@dataclass(frozen=True)
class HealthSample:
    """One provider as one monitor run saw it."""

    provider: str
    at: datetime
    is_primary: bool
    healthy: bool
    latency_ms: float | None
    select_ms: float | None
    error: str | None
    row_counts: dict[str, int | None] = field(default_factory=dict)
    run_id: int | None = None


@dataclass
class AlertState:
    """The persisted state of one alert, keyed by its stable dedup key."""

    key: str
    rule: str
    severity: str
    subject: str | None
    updated_at: datetime
    state: str = "ok"  # "ok" or "firing"
    consecutive_failures: int = 0
    consecutive_ok: int = 0
    summary: str = ""
    first_failed_at: datetime | None = None
    fired_at: datetime | None = None
    last_notified_at: datetime | None = None
    resolved_at: datetime | None = None

    @property
    def firing(self) -> bool:
        """Whether the alert has fired and not yet resolved."""
        return self.state == "firing"

DeliveryStatus = Literal["pending", "sent", "expired"]


@dataclass(frozen=True)
class Delivery:
    """One notification for one channel, in the outbox."""

    id: int
    created_at: datetime
    alert_key: str
    event: str  # "trigger", "reminder" or "resolve"
    severity: str
    channel: str
    subject: str
    body: str
    status: DeliveryStatus
    attempts: int
    last_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None


@dataclass(frozen=True)
class Heartbeat:
    """One monitor run."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    can_serve: bool | None
    providers_up: int | None
    providers_total: int | None
    firing: list[str]
    summary: str | None
    error: str | None
    primary_provider: str | None = None
    serving_provider: str | None = None


@dataclass(frozen=True)
class AlertEvent:
    """One alert firing or resolving, kept for the timeline (pruned with the monitor retention)."""

    at: datetime
    alert_key: str
    rule: str
    severity: str
    subject: str | None
    event: str  # "fired" or "resolved"
    summary: str


# ---- runs and samples ----------------------------------------------------------

_ALERT_COLUMNS = ("key", "rule", "severity", "subject", "state", "consecutive_failures", "consecutive_ok", "summary",
                  "first_failed_at", "fired_at", "last_notified_at", "resolved_at", "updated_at")
_ALERT_TIMES = {"first_failed_at", "fired_at", "last_notified_at", "resolved_at", "updated_at"}
_DELIVERY_COLUMNS = ("id", "created_at", "alert_key", "event", "severity", "channel", "subject", "body", "status",
                     "attempts", "last_attempt_at", "last_error", "sent_at")
_SAMPLE_COLUMNS = "provider, at, is_primary, healthy, latency_ms, select_ms, error, row_counts, run_id"


def start_run(conn: sqlite3.Connection, at: datetime, primary_provider: str | None = None) -> int:
    """Insert the heartbeat row of a run that starts now and return its id."""
    cur = conn.execute("INSERT INTO monitor_runs (started_at, primary_provider) VALUES (?, ?)",
                       (ts(at), primary_provider))
    return int(cur.lastrowid or 0)


def finish_run(conn: sqlite3.Connection, run_id: int, at: datetime, *, can_serve: bool, providers_up: int,
               providers_total: int, firing: list[str], summary: str, error: str | None = None,
               serving_provider: str | None = None) -> None:
    """Complete a run's heartbeat row; `serving_provider` is the one traffic goes to (None: none can serve)."""
    conn.execute(
        "UPDATE monitor_runs SET finished_at = ?, can_serve = ?, providers_up = ?, providers_total = ?, "
        "firing = ?, summary = ?, error = ?, serving_provider = ? WHERE id = ?",
        (ts(at), int(can_serve), providers_up, providers_total, json.dumps(firing), summary, error,
         serving_provider, run_id),
    )


def add_samples(conn: sqlite3.Connection, run_id: int, samples: list[HealthSample]) -> None:
    """Store one run's health samples."""
    conn.executemany(
        "INSERT INTO health_samples (run_id, at, provider, is_primary, healthy, latency_ms, select_ms, error, "
        "row_counts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(run_id, ts(s.at), s.provider, int(s.is_primary), int(s.healthy), s.latency_ms, s.select_ms, s.error,
          json.dumps(s.row_counts, sort_keys=True)) for s in samples],
    )


def prune(conn: sqlite3.Connection, before: datetime) -> dict[str, int]:
    """Delete monitor history older than `before`; return counts per table.

    Samples, heartbeats, alert events, finished deliveries, sync runs and
    divergence rows go; the newest sync run of each (source, target) and the
    newest divergence row of each backup stay, so a sync that stopped long ago
    still shows how far behind its target is.
    """
    cutoff = ts(before)
    return {
        "health_samples": conn.execute("DELETE FROM health_samples WHERE at < ?", (cutoff,)).rowcount,
        "monitor_runs": conn.execute("DELETE FROM monitor_runs WHERE started_at < ?", (cutoff,)).rowcount,
        "alert_events": conn.execute("DELETE FROM alert_events WHERE at < ?", (cutoff,)).rowcount,
        "alert_deliveries": conn.execute(
            "DELETE FROM alert_deliveries WHERE status != 'pending' AND created_at < ?", (cutoff,)).rowcount,
        "sync_runs": conn.execute(
            "DELETE FROM sync_runs WHERE at < ? AND id NOT IN (SELECT MAX(id) FROM sync_runs GROUP BY source, target)",
            (cutoff,)).rowcount,
        "divergence": conn.execute(
            "DELETE FROM divergence WHERE at < ? AND id NOT IN "
            "(SELECT MAX(id) FROM divergence GROUP BY backup, primary_provider)", (cutoff,)).rowcount,
    }


def _sample(row: tuple[Any, ...]) -> HealthSample:
    return HealthSample(row[0], _at(row[1]), bool(row[2]), bool(row[3]), row[4], row[5], row[6],
                        json.loads(row[7] or "{}"), row[8])


def samples(store: StateStore, since: datetime | None = None, provider: str | None = None,
            failed_only: bool = False) -> list[HealthSample]:
    """Return health samples, newest first, optionally since a time, for one provider, or only the failed ones."""
    where, args = ["at >= ?"], [ts(since or datetime.min.replace(tzinfo=timezone.utc))]
    if provider is not None:
        where.append("provider = ?")
        args.append(provider)
    if failed_only:
        where.append("healthy = 0")
    with store.connect() as conn:
        rows = conn.execute(f"SELECT {_SAMPLE_COLUMNS} FROM health_samples WHERE {' AND '.join(where)} "
                            "ORDER BY at DESC, id DESC", args).fetchall()
    return [_sample(r) for r in rows]


def heartbeats(store: StateStore, limit: int = 10) -> list[Heartbeat]:
    """Return the latest monitor runs, newest first."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT id, started_at, finished_at, can_serve, providers_up, providers_total, firing, summary, error, "
            "primary_provider, serving_provider FROM monitor_runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [Heartbeat(r[0], _at(r[1]), parse_ts(r[2]), None if r[3] is None else bool(r[3]),
                      r[4], r[5], json.loads(r[6] or "[]"), r[7], r[8], r[9], r[10]) for r in rows]


def last_heartbeat(store: StateStore) -> Heartbeat | None:
    """Return the newest monitor run, or None if the monitor never ran."""
    found = heartbeats(store, 1)
    return found[0] if found else None


# ---- alert state ---------------------------------------------------------------


def load_alerts(conn: sqlite3.Connection) -> dict[str, AlertState]:
    """Return every alert's state, by key."""
    rows = conn.execute(f"SELECT {', '.join(_ALERT_COLUMNS)} FROM alerts").fetchall()
    result = {}
    for row in rows:
        values = dict(zip(_ALERT_COLUMNS, row, strict=True))
        for name in _ALERT_TIMES:
            values[name] = parse_ts(values[name])
        result[values["key"]] = AlertState(**values)
    return result


def save_alert(conn: sqlite3.Connection, alert: AlertState) -> None:
    """Insert or update one alert's state."""
    values = [getattr(alert, c) for c in _ALERT_COLUMNS]
    values = [ts(v) if isinstance(v, datetime) else v for v in values]
    conn.execute(
        f"INSERT OR REPLACE INTO alerts ({', '.join(_ALERT_COLUMNS)}) VALUES ({', '.join('?' * len(values))})",
        values,
    )


def add_alert_event(conn: sqlite3.Connection, at: datetime, alert: AlertState, event: str, summary: str) -> None:
    """Append one fire or resolve of `alert` to `alert_events`, in the caller's transaction."""
    conn.execute(
        "INSERT INTO alert_events (at, alert_key, rule, severity, subject, event, summary) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (ts(at), alert.key, alert.rule, alert.severity, alert.subject, event, summary),
    )


def alert_events(store: StateStore, since: datetime | None = None) -> list[AlertEvent]:
    """Return alert fires and resolves, newest first, optionally since a time."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT at, alert_key, rule, severity, subject, event, summary FROM alert_events WHERE at >= ? "
            "ORDER BY at DESC, id DESC", (ts(since or datetime.min.replace(tzinfo=timezone.utc)),)).fetchall()
    return [AlertEvent(_at(r[0]), *r[1:]) for r in rows]


def alert_states(store: StateStore) -> list[AlertState]:
    """Return every alert's state, firing ones first."""
    with store.connect() as conn:
        alerts = list(load_alerts(conn).values())
    return sorted(alerts, key=lambda a: (not a.firing, a.key))


# ---- outbox ----------------------------------------------------------------------


def enqueue_delivery(conn: sqlite3.Connection, at: datetime, *, alert_key: str, event: str, severity: str,
                     channel: str, subject: str, body: str) -> int:
    """Queue one notification for one channel and return its id."""
    cur = conn.execute(
        "INSERT INTO alert_deliveries (created_at, alert_key, event, severity, channel, subject, body) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (ts(at), alert_key, event, severity, channel, subject, body),
    )
    return int(cur.lastrowid or 0)


def _delivery(row: tuple[Any, ...]) -> Delivery:
    v = dict(zip(_DELIVERY_COLUMNS, row, strict=True))
    for name in ("created_at", "last_attempt_at", "sent_at"):
        v[name] = parse_ts(v[name])
    return Delivery(**v)


def claim_deliveries(store: StateStore, at: datetime, lease_until: datetime) -> list[Delivery]:
    """Lease every pending delivery not leased by another process, oldest first, and return them."""
    with store.connect() as conn:
        rows = conn.execute(
            f"SELECT {', '.join(_DELIVERY_COLUMNS)} FROM alert_deliveries WHERE status = 'pending' "
            "AND (lease_until IS NULL OR lease_until < ?) ORDER BY id", (ts(at),)).fetchall()
        conn.executemany("UPDATE alert_deliveries SET lease_until = ? WHERE id = ?",
                         [(ts(lease_until), r[0]) for r in rows])
    return [_delivery(r) for r in rows]


def mark_sent(store: StateStore, delivery_id: int, at: datetime) -> None:
    """Record a delivery that went through."""
    with store.connect() as conn:
        conn.execute("UPDATE alert_deliveries SET status = 'sent', sent_at = ?, last_attempt_at = ?, "
                     "attempts = attempts + 1, lease_until = NULL WHERE id = ?", (ts(at), ts(at), delivery_id))


def mark_failed(store: StateStore, delivery_id: int, at: datetime, error: str | None, *, attempted: bool) -> None:
    """Record a delivery that failed (or was not attempted); it stays pending for the next run."""
    with store.connect() as conn:
        conn.execute("UPDATE alert_deliveries SET last_attempt_at = CASE WHEN ? THEN ? ELSE last_attempt_at END, "
                     "attempts = attempts + ?, last_error = COALESCE(?, last_error), lease_until = NULL WHERE id = ?",
                     (int(attempted), ts(at), int(attempted), error, delivery_id))


def expire_deliveries(store: StateStore, created_before: datetime) -> int:
    """Give up on pending deliveries queued before `created_before`; return how many."""
    with store.connect() as conn:
        return conn.execute("UPDATE alert_deliveries SET status = 'expired', lease_until = NULL "
                            "WHERE status = 'pending' AND created_at < ?", (ts(created_before),)).rowcount


def deliveries(store: StateStore, status: str | None = None, since: datetime | None = None,
               failed_only: bool = False) -> list[Delivery]:
    """Return outbox rows, newest first, touched since `since`; `failed_only` keeps those that ever failed."""
    where = ["COALESCE(last_attempt_at, created_at) >= ?"]
    args = [ts(since or datetime.min.replace(tzinfo=timezone.utc))]
    if status is not None:
        where.append("status = ?")
        args.append(status)
    if failed_only:
        where.append("last_error IS NOT NULL")
    with store.connect() as conn:
        rows = conn.execute(f"SELECT {', '.join(_DELIVERY_COLUMNS)} FROM alert_deliveries "
                            f"WHERE {' AND '.join(where)} ORDER BY id DESC", args).fetchall()
    return [_delivery(r) for r in rows]
