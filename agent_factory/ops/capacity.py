"""Disk usage against the providers' storage quotas: the runbook's weekly check and quarterly planning.

Managed plans stop accepting writes past their storage quota
(`NAME_STORAGE_QUOTA_MB`). Each monitor run records every healthy provider's
database size (`record_sizes`: `pg_database_size` and
`pg_total_relation_size` of our tables, two cheap catalog reads) and checks
it against the quota: the `capacity` alert is a WARNING from 80 % and
CRITICAL from 95 %, and resolves as every alert does.

`capacity_report` (`agent-factory capacity`) adds the largest tables and
indexes with their dead tuples and a bloat estimate, the growth per day from
the recorded history (least-squares slope over the window) and the days left
before the quota at that rate. The bloat estimate is the heap's share of dead
tuples (`n_dead_tup / (n_live_tup + n_dead_tup)` of the table's size): what a
VACUUM FULL could give back at most, not a precise measurement.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

from ..core import DatabaseManager
from ..errors import AgentFactoryError
from ..schema import EXPECTED_TABLES
from ..state import maintenance
from ..state.maintenance import SizeSample
from ..state.store import StateStore, utcnow
from .alerts import Check, Severity
from .alerts.rules import CAPACITY

logger = logging.getLogger(__name__)

WARNING_RATIO, CRITICAL_RATIO = 0.80, 0.95
MB = 1024 * 1024
_DAY = 86400.0
MIN_HISTORY = timedelta(hours=6)
_STATEMENT_TIMEOUT_MS = 10_000

_SIZES = """
SELECT pg_database_size(current_database()),
       (SELECT sum(pg_total_relation_size(to_regclass(t)))::bigint FROM unnest(%s::text[]) AS t)
"""
_TABLES = """
SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid), s.n_live_tup, s.n_dead_tup
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
ORDER BY pg_total_relation_size(c.oid) DESC LIMIT %s
"""
_INDEXES = """
SELECT i.indexrelname, i.relname, pg_relation_size(i.indexrelid), i.idx_scan
FROM pg_stat_user_indexes i
ORDER BY pg_relation_size(i.indexrelid) DESC LIMIT %s
"""


@dataclass(frozen=True)
class RelationSize:
    """One table or index: its size, and for a table its dead tuples and bloat estimate."""

    name: str
    kind: str  # "table" or "index"
    bytes: int  # a table with its indexes and TOAST; an index alone
    table: str | None = None  # an index's table
    live_tuples: int | None = None
    dead_tuples: int | None = None
    bloat_bytes: int | None = None  # estimate: the heap's share of dead tuples
    scans: int | None = None  # an index's scans since the statistics were reset


@dataclass
class ProviderCapacity:
    """One provider's size, quota, growth and largest relations; `state`, `days_left` and `summary` are derived."""

    provider: str
    database_bytes: int | None
    quota_bytes: int | None
    growth_bytes_per_day: float | None  # None: not enough history
    samples: int  # size samples in the window
    relations: list[RelationSize] = field(default_factory=list)
    error: str | None = None
    used_pct: float | None = field(init=False)  # None without a quota
    days_left: float | None = field(init=False)  # until the quota at the recorded growth; None: no quota or growth
    state: str = field(init=False)  # "ok", "warning" (80 %), "critical" (95 %), "no-quota", "unknown"
    summary: str = field(init=False)

    def __post_init__(self) -> None:
        size, quota, growth = self.database_bytes, self.quota_bytes, self.growth_bytes_per_day
        self.used_pct = None if quota is None or size is None else 100.0 * size / quota
        self.days_left = (max(0.0, (quota - size) / growth) if quota is not None and size is not None
                          and growth is not None and growth > 0 else None)
        ratio = None if self.used_pct is None else self.used_pct / 100.0
        self.state = ("unknown" if size is None else "no-quota" if ratio is None else "critical"
                      if ratio >= CRITICAL_RATIO else "warning" if ratio >= WARNING_RATIO else "ok")
        self.summary = self._describe()

    def _describe(self) -> str:
        if self.database_bytes is None:
            return f"{self.provider}: not measured ({self.error})"
        text = f"{self.provider}: {_mb(self.database_bytes)}"
        if self.quota_bytes is not None:
            text += f" of {_mb(self.quota_bytes)} ({self.used_pct:.1f} %, {self.state})"
        else:
            text += f" (no quota: set {self.provider.upper()}_STORAGE_QUOTA_MB)"
        if self.growth_bytes_per_day is None:
            return text + ", growth unknown (needs 6 h of monitor history)"
        text += f", {_mb(self.growth_bytes_per_day)}/day over {self.samples} samples"
        if self.days_left is not None:
            text += f", {self.days_left:.0f} days left at that rate"
        return text


def _mb(value: float) -> str:
    return f"{value / MB:.1f} MB"


def _quota_bytes(db: DatabaseManager, name: str) -> int | None:
    quota = db.config.providers[name].storage_quota_mb
    return None if quota is None else int(quota * MB)


def measure(conn: psycopg.Connection) -> tuple[int, int | None]:
    """Return the database's size and the size of our tables (with indexes and TOAST), in bytes."""
    row = conn.execute(_SIZES, [list(EXPECTED_TABLES)]).fetchone()
    assert row is not None
    return int(row[0]), None if row[1] is None else int(row[1])


def _survey(db: DatabaseManager, name: str, limit: int) -> tuple[int, int | None, list[RelationSize]]:
    """Measure provider `name` (and list its `limit` largest relations when `limit` > 0), bounded by a timeout."""
    with db.provider_connection(name) as conn:
        conn.execute(f"SET LOCAL statement_timeout = {_STATEMENT_TIMEOUT_MS}")
        database, tables = measure(conn)
        relations = _relations(conn, limit) if limit > 0 else []
        conn.rollback()
    return database, tables, relations


def record_sizes(db: DatabaseManager, store: StateStore, names: Sequence[str], now: datetime) -> list[SizeSample]:
    """Measure each of `names` (the healthy providers) and store the samples; a provider that fails is skipped."""
    samples = []
    for name in names:
        try:
            database, tables, _ = _survey(db, name, 0)
        except (AgentFactoryError, psycopg.Error) as exc:
            logger.warning("provider %s: could not measure the database size: %s", name, type(exc).__name__)
            continue
        samples.append(SizeSample(name, now, database, tables, _quota_bytes(db, name)))
    with store.connect() as conn:
        maintenance.add_size_samples(conn, samples)
    return samples


def capacity_checks(db: DatabaseManager, samples: Sequence[SizeSample]) -> list[Check]:
    """Return one `capacity` check per measured provider that has a quota (WARNING 80 %, CRITICAL 95 %)."""
    checks = []
    for s in samples:
        if s.quota_bytes is None:
            continue
        ratio = s.database_bytes / s.quota_bytes
        severity = Severity.CRITICAL if ratio >= CRITICAL_RATIO else Severity.WARNING
        var = f"{s.provider.upper()}_STORAGE_QUOTA_MB"
        detail = (f"provider {s.provider} uses {_mb(s.database_bytes)} of its {_mb(s.quota_bytes)} quota "
                  f"({100 * ratio:.1f} %, {var})")
        if ratio >= WARNING_RATIO:
            detail += ("; writes stop at the quota: delete or archive old rows, VACUUM, or raise the plan "
                       "(`agent-factory capacity` shows the largest tables)")
        checks.append(Check(CAPACITY, severity, ratio >= WARNING_RATIO, detail, s.provider))
    return checks


def growth_per_day(samples: Sequence[SizeSample]) -> float | None:
    """Return the least-squares growth of `database_bytes` in bytes per day.

    None with under two samples or when they span less than `MIN_HISTORY` (a
    few minutes of noise would project absurd rates).
    """
    if len(samples) < 2 or samples[-1].at - samples[0].at < MIN_HISTORY:
        return None
    t0 = samples[0].at
    xs = [(s.at - t0).total_seconds() / _DAY for s in samples]
    ys = [float(s.database_bytes) for s in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


def capacity_report(db: DatabaseManager, store: StateStore, *, provider: str | None = None, days: float = 30.0,
                    limit: int = 5, now: datetime | None = None) -> list[ProviderCapacity]:
    """Return every provider's (or `provider`'s) size, quota, growth over the last `days` and largest relations.

    Measures each provider now (and records the sample). A provider that cannot
    be reached is reported with its error. Raises `ConfigError` for an unknown provider.
    """
    now = now or utcnow()
    names = [db.config.provider(provider).name] if provider else list(db.providers)
    report = []
    for name in names:
        try:
            database, tables, relations = _survey(db, name, limit)
        except AgentFactoryError as exc:
            report.append(ProviderCapacity(name, None, _quota_bytes(db, name), None, 0,
                                           error=getattr(exc, "reason", str(exc))))
            continue
        sample = SizeSample(name, now, database, tables, _quota_bytes(db, name))
        with store.connect() as sconn:
            maintenance.add_size_samples(sconn, [sample])
        history = maintenance.size_samples(store, name, since=now - timedelta(days=days))
        report.append(ProviderCapacity(name, database, sample.quota_bytes, growth_per_day(history), len(history),
                                       relations))
    return report


def _relations(conn: psycopg.Connection, limit: int) -> list[RelationSize]:
    out = []
    for name, total, heap, live, dead in conn.execute(_TABLES, [limit]).fetchall():
        live, dead = int(live or 0), int(dead or 0)
        bloat = int(heap * dead / (live + dead)) if live + dead else 0
        out.append(RelationSize(name, "table", int(total), None, live, dead, bloat))
    for name, table, size, scans in conn.execute(_INDEXES, [limit]).fetchall():
        out.append(RelationSize(name, "index", int(size), table, scans=int(scans or 0)))
    return out
