"""The runbook's optional checks: failovers, recent errors and slow queries.

`failovers` and `errors` read the state store only (no database needed);
`slow_queries` reads `pg_stat_statements` on one provider where it is
available and says clearly why not where it is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg
from psycopg import sql

from ..core import DatabaseManager
from ..redact import scrub
from ..state import monitoring
from ..state.store import FailoverEvent, StateStore, utcnow

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PASSWORD_LITERAL = re.compile(r"(password\s+)('(?:[^']|'')*'|\S+)", re.IGNORECASE)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """Return the time meant by "24h", "30m", "7d", "2w" (ago) or an ISO-8601 time (naive = UTC).

    Raises `ValueError` with an example when `text` is neither, or reaches back before the year 1.
    """
    match = _SINCE.match(text)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        try:
            return (now or utcnow()) - timedelta(**{_UNITS[unit]: amount})
        except OverflowError:
            raise ValueError(f"{text!r} reaches back before the year 1; e.g. 24h, 30d or 52w") from None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a duration or a time; e.g. 24h, 30m, 7d or 2024-05-01T08:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# ---- failovers and errors ------------------------------------------------------


def failovers(store: StateStore, since: datetime | None = None) -> list[FailoverEvent]:
    """Return failovers and fail-backs recorded by `DatabaseManager`, oldest first, optionally since a time."""
    return store.failovers(since)


@dataclass(frozen=True)
class ErrorEvent:
    """One error recorded in the state store."""

    at: datetime
    source: str  # "health" (a provider failed a monitor check), "delivery" (an alert did not go out), "monitor"
    subject: str  # the provider, the channel or "monitor"
    message: str


def errors(store: StateStore, since: datetime | None = None, limit: int = 100) -> list[ErrorEvent]:
    """Return recent errors, newest first: failed provider checks, failed alert deliveries, failed monitor runs."""
    found = [ErrorEvent(s.at, "health", s.provider, s.error or "unhealthy")
             for s in monitoring.samples(store, since, failed_only=True)]
    found += [ErrorEvent(d.last_attempt_at or d.created_at, "delivery", d.channel,
                         f"{d.event} of {d.alert_key} ({d.status}, {d.attempts} attempts): {d.last_error}")
              for d in monitoring.deliveries(store, since=since, failed_only=True)]
    found += [ErrorEvent(h.started_at, "monitor", "monitor", h.error)
              for h in monitoring.heartbeats(store, limit) if h.error and (since is None or h.started_at >= since)]
    return sorted(found, key=lambda e: e.at, reverse=True)[:limit]


# ---- slow queries ----------------------------------------------------------------


@dataclass(frozen=True)
class SlowQuery:
    """One normalized statement from `pg_stat_statements`."""

    query: str
    calls: int
    total_ms: float
    mean_ms: float
    max_ms: float
    rows: int


@dataclass
class SlowQueryReport:
    """The slowest statements of one provider, or why they cannot be shown."""

    provider: str
    available: bool
    message: str
    queries: list[SlowQuery] = field(default_factory=list)


def slow_queries(db: DatabaseManager, provider: str | None = None, limit: int = 10) -> SlowQueryReport:
    """Return the `limit` statements with the highest mean time on `provider` (default: the primary).

    Reads `pg_stat_statements` for the current database. When the extension is
    not installed, not preloaded or not readable, returns `available=False`
    and a message saying what to do. Statement texts are scrubbed of passwords.
    Raises `ConfigError` for an unknown provider and `ProviderUnavailableError`
    when it cannot be reached.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    name = provider or db.primary_provider
    password = db.config.provider(name).password or ""
    with db.provider_connection(name) as conn:
        try:
            return _read_statements(conn, name, limit, password)
        finally:
            conn.rollback()


def _read_statements(conn: psycopg.Connection, name: str, limit: int, password: str) -> SlowQueryReport:
    row = conn.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_stat_statements'").fetchone()
    if row is None:
        installed = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'").fetchone()
        if installed:
            why = ("pg_stat_statements is not created in this database; run CREATE EXTENSION pg_stat_statements "
                   "as a privileged role (the server must also have it in shared_preload_libraries)")
        else:
            why = ("pg_stat_statements is not available on this server: it needs the PostgreSQL contrib modules, "
                   "shared_preload_libraries = 'pg_stat_statements' and CREATE EXTENSION pg_stat_statements "
                   "(managed providers enable it from their dashboard)")
        return SlowQueryReport(name, False, f"provider {name}: {why}")
    new_columns = conn.info.server_version >= 130000
    total, mean, peak = (("total_exec_time", "mean_exec_time", "max_exec_time") if new_columns
                         else ("total_time", "mean_time", "max_time"))
    query = sql.SQL(
        "SELECT query, calls, {total}, {mean}, {peak}, rows FROM {schema}.pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND calls > 0 "
        "ORDER BY {mean} DESC LIMIT %s"
    ).format(total=sql.Identifier(total), mean=sql.Identifier(mean), peak=sql.Identifier(peak),
             schema=sql.Identifier(row[0]))
    try:
        rows = conn.execute(query, [limit]).fetchall()
    except psycopg.errors.ObjectNotInPrerequisiteState:
        return SlowQueryReport(name, False, f"provider {name}: pg_stat_statements is installed but not loaded "
                                            "(add it to shared_preload_libraries and restart the server)")
    except psycopg.errors.InsufficientPrivilege:
        return SlowQueryReport(name, False, f"provider {name}: this role may not read pg_stat_statements; "
                                            "grant it pg_read_all_stats")
    queries = [SlowQuery(_clean(r[0], password), int(r[1]), float(r[2]), float(r[3]), float(r[4]), int(r[5]))
               for r in rows]
    message = (f"provider {name}: {len(queries)} slowest statements by mean time" if queries
               else f"provider {name}: pg_stat_statements has no statements for this database yet")
    return SlowQueryReport(name, True, message, queries)


def _clean(text: str | None, password: str) -> str:
    text = " ".join((text or "").split())
    return scrub(_PASSWORD_LITERAL.sub(r"\1'***'", text), password)
