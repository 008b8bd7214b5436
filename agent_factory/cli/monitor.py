"""`agent-factory monitor | failovers | errors | slow-queries`: health monitoring and the runbook's checks."""

from __future__ import annotations

import argparse
import signal
import threading
from datetime import datetime

from ..core import DatabaseManager
from ..ops.events import errors, failovers, parse_since, slow_queries
from ..ops.maintenance import record_query_snapshot
from ..ops.monitor import MonitorResult, run_monitor_loop, run_monitor_once
from ..state.store import FAILBACK_POSTPONED, StateStore
from .argtypes import count, positive_seconds
from .output import EXIT_FAILED, EXIT_OK, Outcome, emit


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "monitor", help="check every provider, record samples, fire and deliver alerts (cron: --once)",
        description="Exit 0 when at least one provider serves, 1 when all are down. Alert channels come from "
                    "TELEGRAM_*, SMTP_*/ALERT_EMAIL_* and PAGERDUTY_* in the environment or .env.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="run once and exit (the default; for cron)")
    mode.add_argument("--loop", type=positive_seconds, metavar="SECONDS", help="run every SECONDS until interrupted")
    parser.add_argument("--count", type=count, metavar="N", help="with --loop: stop after N runs")
    parser.set_defaults(handler=_monitor)

    parser = sub.add_parser("failovers", help="list failovers and fail-backs recorded in the state store")
    parser.add_argument("--since", type=_since, default="24h", help="24h, 30m, 7d or an ISO time (default 24h)")
    parser.set_defaults(handler=_failovers)

    parser = sub.add_parser("errors", help="list recent errors: failed provider checks and alert deliveries")
    parser.add_argument("--since", type=_since, default="24h", help="24h, 30m, 7d or an ISO time (default 24h)")
    parser.add_argument("--limit", type=count, default=50, help="at most this many, newest first (default 50)")
    parser.set_defaults(handler=_errors)

    parser = sub.add_parser("slow-queries", help="the slowest statements from pg_stat_statements (kept as history)")
    parser.add_argument("--provider", help="provider name (default: the primary)")
    parser.add_argument("--limit", type=count, default=10, help="how many statements (default 10)")
    parser.set_defaults(handler=_slow_queries)


def _since(text: str) -> datetime:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _outcome(result: MonitorResult) -> Outcome:
    return Outcome(EXIT_OK if result.can_serve else EXIT_FAILED, result.summary, result)


def _monitor(args: argparse.Namespace) -> Outcome:
    with DatabaseManager() as db:
        store = StateStore(db.config.state_dir)
        if args.loop is None:
            return _outcome(run_monitor_once(db, store))
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
        seen: list[MonitorResult] = []

        def report(result: MonitorResult) -> None:
            seen.append(result)
            emit(_outcome(result), args.json)

        try:
            last = run_monitor_loop(args.loop, db, store, count=args.count, on_result=report, stop=stop)
        except KeyboardInterrupt:
            last = seen[-1] if seen else None
        code = EXIT_OK if last is not None and last.can_serve else EXIT_FAILED
        return Outcome(code, f"monitor stopped after {len(seen)} runs",
                       {"runs": len(seen), "can_serve": bool(last and last.can_serve)})


def _store() -> StateStore:
    from ..config import load_config

    return StateStore(load_config().state_dir)


def _failovers(args: argparse.Namespace) -> Outcome:
    events = failovers(_store(), args.since)
    if not events:
        return Outcome(EXIT_OK, f"no failovers since {args.since:%Y-%m-%d %H:%M} UTC", [])
    lines = [f"{e.at:%Y-%m-%d %H:%M:%S} UTC  {e.title}: {e.reason}" for e in events]
    postponed = sum(e.kind == FAILBACK_POSTPONED for e in events)
    total = f"{len(events) - postponed} switches" + (f", {postponed} fail-backs postponed" if postponed else "")
    return Outcome(EXIT_OK, "\n".join(lines + [f"{total} since {args.since:%Y-%m-%d %H:%M} UTC"]), events)


def _errors(args: argparse.Namespace) -> Outcome:
    found = errors(_store(), args.since, limit=args.limit)
    if not found:
        return Outcome(EXIT_OK, f"no errors recorded since {args.since:%Y-%m-%d %H:%M} UTC", [])
    lines = [f"{e.at:%Y-%m-%d %H:%M:%S} UTC  [{e.source}] {e.subject}: {e.message}" for e in found]
    return Outcome(EXIT_OK, "\n".join(lines), found)


def _slow_queries(args: argparse.Namespace) -> Outcome:
    with DatabaseManager() as db:
        report = slow_queries(db, args.provider, limit=args.limit)
        if report.queries:  # the history behind `maintenance queries` (trends)
            record_query_snapshot(StateStore(db.config.state_dir), report)
    lines = [report.message]
    if report.queries:
        lines.append(f"{'mean ms':>10} {'max ms':>10} {'calls':>8} {'rows':>8}  query")
        lines += [f"{q.mean_ms:10.2f} {q.max_ms:10.2f} {q.calls:8d} {q.rows:8d}  {q.query[:160]}"
                  for q in report.queries]
    return Outcome(EXIT_OK, "\n".join(lines), report)

