"""The runbook's monthly statistics tasks: provider statistics, pool sizes, query performance trends.

- `analyze` ("update provider statistics"): runs `ANALYZE` on each of our
  tables whose statistics are stale (never analyzed, or more rows changed
  since the last analyze than 10 % of the table plus 50, PostgreSQL's own
  autoanalyze rule) and reports each table's autovacuum state.
- `record_pool_figures` ("review connection pool sizes"): each monitor run
  stores, per provider, the server's view (connections of our database by
  state, against `max_connections`: every process counts) and this process's
  pool figures (`psycopg_pool` counters: waiting requests, request errors,
  `PoolExhaustedError`s, connection errors and losses). An application may
  call it too, to store its own pool's figures. `pool_review` sums them up.
- `snapshot_queries` / `query_trends` ("analyze query performance trends"):
  `slow-queries` stores each snapshot of `pg_stat_statements`; a trend is the
  mean time per call within the first and the last interval between
  snapshots (the counters are cumulative, so differences are what happened).
- `record_monitor_run`: what the monitor calls each run (sizes, pools, the
  `capacity` checks, pruning).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

import psycopg
from psycopg import sql

from ..core import DatabaseManager
from ..errors import AgentFactoryError
from ..schema import EXPECTED_TABLES
from ..state import maintenance
from ..state.maintenance import PoolSample, QuerySample
from ..state.monitoring import HealthSample
from ..state.store import StateStore, utcnow
from .alerts import Check
from .capacity import capacity_checks, record_sizes
from .events import SlowQueryReport, slow_queries

logger = logging.getLogger(__name__)

HISTORY_RETENTION = timedelta(days=400)  # capacity planning looks back a quarter or more
STALE_RATIO, STALE_ROWS = 0.10, 50
_STATEMENT_TIMEOUT_MS = 10_000

_TABLE_STATS = """
SELECT s.relname, s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze,
       greatest(s.last_analyze, s.last_autoanalyze), greatest(s.last_vacuum, s.last_autovacuum),
       s.autovacuum_count, s.autoanalyze_count,
       coalesce((SELECT option_value FROM pg_options_to_table(c.reloptions) WHERE option_name = 'autovacuum_enabled'),
                current_setting('autovacuum'))
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema() AND s.relname = ANY(%s)
ORDER BY s.relname
"""
_SERVER_CONNECTIONS = """
SELECT count(*), count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE state = 'idle'),
       count(*) FILTER (WHERE state LIKE 'idle in transaction%%'), count(*) FILTER (WHERE wait_event_type = 'Lock'),
       current_setting('max_connections')::int
FROM pg_stat_activity WHERE datname = current_database()
"""
_POOL_KEYS = ("pool_size", "pool_available", "requests_waiting", "requests_num", "requests_errors",
              "requests_wait_ms", "connections_errors", "connections_lost", "pool_exhausted")


@dataclass(frozen=True, kw_only=True)
class TableStatistics:
    """One table's planner statistics and autovacuum state, and whether this run analyzed it."""

    table: str
    live_tuples: int
    dead_tuples: int
    modified_since_analyze: int
    last_analyze: datetime | None
    last_vacuum: datetime | None
    autovacuum_runs: int
    autoanalyze_runs: int
    autovacuum_enabled: bool
    stale: bool
    analyzed: bool = False


@dataclass
class AnalyzeResult:
    """`analyze` on one provider: its tables, which were stale and which were analyzed (or would be)."""

    provider: str
    check: bool
    tables: list[TableStatistics] = field(default_factory=list)
    error: str | None = None

    @property
    def changed(self) -> bool:
        """Whether any table was analyzed."""
        return any(t.analyzed for t in self.tables)

    @property
    def summary(self) -> str:
        """One line for people."""
        if self.error:
            return f"{self.provider}: not analyzed ({self.error})"
        if not self.tables:
            return f"{self.provider}: none of our tables found (schema not deployed? `agent-factory schema deploy`)"
        stale = [t.table for t in self.tables if t.stale]
        off = [t.table for t in self.tables if not t.autovacuum_enabled]
        verb = "would analyze" if self.check else "analyzed"
        text = f"{self.provider}: {verb} {len(stale)} of {len(self.tables)} tables" + (
            f" ({', '.join(stale)})" if stale else " (statistics current)")
        dead = sum(t.dead_tuples for t in self.tables)
        text += f"; {dead} dead tuples; autovacuum " + (f"OFF for {', '.join(off)}" if off else "on")
        return text


def analyze(db: DatabaseManager, provider: str | None = None, *, check: bool) -> list[AnalyzeResult]:
    """ANALYZE our stale tables on `provider` (default every provider); with `check`, only report.

    A provider that cannot be reached or refuses ANALYZE is reported with its
    error. Raises `ConfigError` for an unknown provider.
    """
    names = [db.config.provider(provider).name] if provider else list(db.providers)
    results = []
    for name in names:
        result = AnalyzeResult(name, check)
        try:
            with db.provider_connection(name) as conn:
                tables = _table_statistics(conn)
                conn.rollback()
                conn.autocommit = True
                try:
                    for t in tables:
                        analyzed = t.stale and not check
                        if analyzed:
                            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(t.table)))
                            logger.info("provider %s: analyzed %s", name, t.table)
                        result.tables.append(_with(t, analyzed))
                finally:
                    conn.autocommit = False
        except AgentFactoryError as exc:
            result.error = getattr(exc, "reason", str(exc))
        except psycopg.Error as exc:
            result.error = f"{type(exc).__name__}: {exc.diag.message_primary or exc}"
        results.append(result)
    return results


def _with(t: TableStatistics, analyzed: bool) -> TableStatistics:
    return TableStatistics(**{**t.__dict__, "analyzed": analyzed})


def _table_statistics(conn: psycopg.Connection) -> list[TableStatistics]:
    rows = conn.execute(_TABLE_STATS, [list(EXPECTED_TABLES)]).fetchall()
    out = []
    for table, live, dead, modified, last_analyze, last_vacuum, vacuums, analyzes, enabled in rows:
        live, modified = int(live or 0), int(modified or 0)
        stale = last_analyze is None or modified > STALE_ROWS + STALE_RATIO * live
        out.append(TableStatistics(
            table=table, live_tuples=live, dead_tuples=int(dead or 0), modified_since_analyze=modified,
            last_analyze=last_analyze, last_vacuum=last_vacuum, autovacuum_runs=int(vacuums or 0),
            autoanalyze_runs=int(analyzes or 0), autovacuum_enabled=str(enabled).lower() in ("on", "true"),
            stale=stale))
    return out


# ---- pools ---------------------------------------------------------------------------


def record_pool_figures(db: DatabaseManager, store: StateStore, names: Sequence[str], now: datetime
                        ) -> list[PoolSample]:
    """Store the server's connection figures for each of `names` and this process's pool figures; return them."""
    samples = []
    stats = db.get_provider_stats()
    for name in names:
        try:
            with db.provider_connection(name) as conn:
                conn.execute(f"SET LOCAL statement_timeout = {_STATEMENT_TIMEOUT_MS}")
                row = conn.execute(_SERVER_CONNECTIONS).fetchone()
                conn.rollback()
        except (AgentFactoryError, psycopg.Error) as exc:
            logger.warning("provider %s: could not read pg_stat_activity: %s", name, type(exc).__name__)
        else:
            if row is not None:
                keys = ("connections", "active", "idle", "idle_in_transaction", "waiting_on_locks", "max_connections")
                samples.append(PoolSample(name, now, "server", dict(zip(keys, map(int, row), strict=True))))
    for name in db.providers:
        figures = {k: int(stats[name].get(k) or 0) for k in _POOL_KEYS}
        samples.append(PoolSample(name, now, f"pool:{os.getpid()}", figures))
    with store.connect() as conn:
        maintenance.add_pool_samples(conn, samples)
    return samples


@dataclass(frozen=True, kw_only=True)
class PoolReview:
    """A provider's connection figures over a period: peaks, and the errors pools counted."""

    provider: str
    samples: int
    peak_connections: int | None
    max_connections: int | None
    peak_waiting_requests: int
    pool_exhausted: int
    request_errors: int
    connection_errors: int
    connections_lost: int
    advice: str


def pool_review(store: StateStore, pool_max_size: int, since: datetime) -> list[PoolReview]:
    """Sum up the recorded pool figures per provider since `since`, with one sentence of advice each."""
    by_provider: dict[str, list[PoolSample]] = defaultdict(list)
    for s in maintenance.pool_samples(store, since=since):
        by_provider[s.provider].append(s)
    reviews = []
    for name, samples in by_provider.items():
        server = [s.figures for s in samples if s.source == "server"]
        pools: dict[str, list[dict[str, int]]] = defaultdict(list)
        for s in samples:
            if s.source != "server":
                pools[s.source].append(s.figures)

        def growth(key: str) -> int:  # counters are cumulative per process (pool): sum each one's highest
            return sum(max(f.get(key, 0) for f in fs) for fs in pools.values())  # noqa: B023 - used in this iteration

        peak = max((f["connections"] for f in server), default=None)
        limit = max((f["max_connections"] for f in server), default=None)
        waiting = max((f.get("requests_waiting", 0) for fs in pools.values() for f in fs), default=0)
        exhausted, errors = growth("pool_exhausted"), growth("requests_errors")
        if exhausted or waiting:
            advice = (f"requests waited for a connection ({exhausted} PoolExhaustedError): raise "
                      f"DATABASE_POOL_MAX_SIZE (now {pool_max_size}) if the server has room, or reduce concurrency")
        elif peak is not None and limit and peak >= 0.8 * limit:
            advice = (f"the server peaked at {peak} of {limit} connections: lower DATABASE_POOL_MAX_SIZE or put a "
                      "pooler in front before adding processes")
        else:
            advice = f"no waiting and no exhaustion recorded: DATABASE_POOL_MAX_SIZE={pool_max_size} is enough"
        reviews.append(PoolReview(
            provider=name, samples=len(samples), peak_connections=peak, max_connections=limit,
            peak_waiting_requests=waiting, pool_exhausted=exhausted, request_errors=errors,
            connection_errors=growth("connections_errors"), connections_lost=growth("connections_lost"), advice=advice))
    return reviews


# ---- query trends ----------------------------------------------------------------------


def snapshot_queries(db: DatabaseManager, store: StateStore, provider: str | None = None, limit: int = 50,
                     now: datetime | None = None) -> int:
    """Store a snapshot of `pg_stat_statements` on `provider` (default the primary); return the statements stored.

    Returns 0 when the extension is not available. Raises as `events.slow_queries`.
    """
    return record_query_snapshot(store, slow_queries(db, provider, limit=limit), now)


def record_query_snapshot(store: StateStore, report: SlowQueryReport, now: datetime | None = None) -> int:
    """Store the statements of a `slow_queries` report as one snapshot; return how many."""
    now = now or utcnow()
    samples = [QuerySample(report.provider, now, q.query, q.calls, q.total_ms, q.rows) for q in report.queries]
    with store.connect() as conn:
        maintenance.add_query_samples(conn, samples)
    return len(samples)


@dataclass(frozen=True)
class QueryTrend:
    """One statement's mean time per call in the first and the last recorded interval."""

    query: str
    calls: int  # calls over the whole period
    first_mean_ms: float | None
    last_mean_ms: float | None
    since: datetime
    until: datetime

    @property
    def change_pct(self) -> float | None:
        """How much slower (positive) or faster the statement got, in percent."""
        if not self.first_mean_ms or self.last_mean_ms is None:
            return None
        return 100.0 * (self.last_mean_ms - self.first_mean_ms) / self.first_mean_ms


def query_trends(store: StateStore, provider: str, since: datetime, limit: int = 10) -> list[QueryTrend]:
    """Return the statements with the most calls between snapshots since `since`, slowest-growing first."""
    series: dict[str, list[QuerySample]] = defaultdict(list)
    for s in maintenance.query_samples(store, provider, since):
        series[s.query].append(s)
    trends = []
    for query, samples in series.items():
        intervals = [(b.total_ms - a.total_ms, b.calls - a.calls) for a, b in pairwise(samples)
                     if b.calls > a.calls]  # a counter reset (calls going down) starts again
        if not intervals:
            continue
        first, last = intervals[0], intervals[-1]
        trends.append(QueryTrend(query, sum(c for _, c in intervals), first[0] / first[1], last[0] / last[1],
                                 samples[0].at, samples[-1].at))
    trends.sort(key=lambda t: (t.change_pct or 0.0), reverse=True)
    return trends[:limit]


# ---- the monitor's part -------------------------------------------------------------------


def record_monitor_run(db: DatabaseManager, store: StateStore, samples: Sequence[HealthSample], now: datetime
                       ) -> list[Check]:
    """Record sizes and pool figures of the healthy providers, prune old history; return the `capacity` checks.

    Never raises for a provider problem; a state store problem raises.
    """
    healthy = [s.provider for s in samples if s.healthy]
    sizes = record_sizes(db, store, healthy, now)
    record_pool_figures(db, store, healthy, now)
    with store.connect() as conn:
        maintenance.prune(conn, now - HISTORY_RETENTION)
    return capacity_checks(db, sizes)
