"""`agent-factory capacity` and `agent-factory maintenance analyze | pools | queries`: the runbook's checklists."""

from __future__ import annotations

import argparse

from ..core import DatabaseManager
from ..ops.capacity import capacity_report
from ..ops.maintenance import analyze, pool_review, query_trends, snapshot_queries
from ..state.store import StateStore
from .monitor import _since
from .output import EXIT_FAILED, EXIT_OK, Outcome


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "capacity", help="database size per provider against NAME_STORAGE_QUOTA_MB, growth and days left",
        description="Measure every provider now, list its largest tables and indexes (dead tuples, bloat "
                    "estimate) and project growth from the monitor's history. Exit 1 when a provider is at 95 % "
                    "of its quota or more, or cannot be measured.")
    parser.add_argument("--provider", help="one provider (default: every provider)")
    parser.add_argument("--days", type=float, default=30.0, help="history window for the growth rate (default 30)")
    parser.add_argument("--limit", type=int, default=5, help="largest tables and indexes to list (default 5)")
    parser.set_defaults(handler=_capacity)

    parser = sub.add_parser("maintenance", help="monthly statistics: analyze, pool review, query trends")
    actions = parser.add_subparsers(dest="maintenance_command", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("analyze", help="ANALYZE our tables whose statistics are stale; show autovacuum state")
    p.add_argument("--provider", help="one provider (default: every provider)")
    p.add_argument("--dry-run", action="store_true", help="report which tables are stale; analyze nothing")
    p.set_defaults(handler=_analyze)
    p = actions.add_parser("pools", help="review connection pool sizes from the monitor's recorded figures")
    p.add_argument("--since", type=_since, default="30d", help="30d, 7d, 24h or an ISO time (default 30d)")
    p.set_defaults(handler=_pools)
    p = actions.add_parser("queries", help="query performance trends from the recorded pg_stat_statements snapshots")
    p.add_argument("--provider", help="provider name (default: the primary)")
    p.add_argument("--since", type=_since, default="30d", help="30d, 7d, 24h or an ISO time (default 30d)")
    p.add_argument("--limit", type=int, default=10, help="how many statements (default 10)")
    p.set_defaults(handler=_queries)


def _capacity(args: argparse.Namespace) -> Outcome:
    with DatabaseManager() as db:
        report = capacity_report(db, StateStore(db.config.state_dir), provider=args.provider, days=args.days,
                                 limit=args.limit)
    lines = []
    for p in report:
        lines.append(("[FAIL] " if p.state in ("critical", "unknown") else "[WARN] " if p.state == "warning"
                      else "[OK] ") + p.summary)
        for r in p.relations:
            bloat_mb = (r.bloat_bytes or 0) / 1048576
            extra = (f", {r.dead_tuples} dead tuples, ~{bloat_mb:.1f} MB bloat" if r.kind == "table"
                     else f" on {r.table}, {r.scans} scans")
            lines.append(f"    {r.kind:5} {r.name}: {r.bytes / 1048576:.1f} MB{extra}")
    failed = any(p.state in ("critical", "unknown") for p in report)
    return Outcome(EXIT_FAILED if failed else EXIT_OK, "\n".join(lines), report)


def _analyze(args: argparse.Namespace) -> Outcome:
    with DatabaseManager() as db:
        results = analyze(db, args.provider, check=args.dry_run)
    failed = any(r.error for r in results)
    return Outcome(EXIT_FAILED if failed else EXIT_OK,
                   "\n".join(("[FAIL] " if r.error else "[OK] ") + r.summary for r in results), results)


def _pools(args: argparse.Namespace) -> Outcome:
    with DatabaseManager() as db:
        reviews = pool_review(StateStore(db.config.state_dir), db.config.pool_max_size, args.since)
    if not reviews:
        return Outcome(EXIT_OK, f"no pool figures recorded since {args.since:%Y-%m-%d %H:%M} UTC; the monitor "
                                "records them each run (`agent-factory monitor --once`)", [])
    lines = [f"{r.provider}: peak {r.peak_connections} of {r.max_connections} server connections, "
             f"{r.pool_exhausted} pool exhausted, {r.connection_errors} connection errors, "
             f"{r.connections_lost} lost ({r.samples} samples): {r.advice}" for r in reviews]
    return Outcome(EXIT_OK, "\n".join(lines), reviews)


def _queries(args: argparse.Namespace) -> Outcome:
    with DatabaseManager() as db:
        name = args.provider or db.primary_provider
        store = StateStore(db.config.state_dir)
        stored = snapshot_queries(db, store, name)
    trends = query_trends(store, name, args.since, limit=args.limit)
    if not trends:
        why = "" if stored else " (pg_stat_statements is not available there: see `agent-factory slow-queries`)"
        return Outcome(EXIT_OK, f"{name}: no trend yet: snapshots are taken by this command and by `slow-queries`; "
                                f"run it again later{why}", [])
    lines = [f"{name}: mean ms per call, first vs last interval since {args.since:%Y-%m-%d}",
             f"{'first':>10} {'last':>10} {'change':>8} {'calls':>8}  query"]
    for t in trends:
        change = f"{t.change_pct:+.0f} %" if t.change_pct is not None else "n/a"
        lines.append(f"{t.first_mean_ms or 0:10.2f} {t.last_mean_ms or 0:10.2f} {change:>8} {t.calls:8d}  "
                     f"{t.query[:120]}")
    return Outcome(EXIT_OK, "\n".join(lines), trends)

