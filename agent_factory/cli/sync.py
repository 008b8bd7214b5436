"""`agent-factory sync`: merge one provider into another, or converge them all (docs/CONTINUITY.md)."""

from __future__ import annotations

import argparse

from ..core import DatabaseManager
from ..errors import ConfigError
from ..ops.follow import FOLLOW_INTERVAL_S, fallback_backups, follow
from ..ops.sync import SyncReport, sync
from ..replication import SyncResult, TableResult
from ..state.store import StateStore
from .argtypes import count, positive_seconds, seconds
from .output import EXIT_FAILED, EXIT_OK, Outcome, emit, progress, to_jsonable
from .signals import stop_requested


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "sync", help="merge the rows one provider changed into another (--from A --to B), or converge all (--all)",
        description="Copy every row changed on the source since the last sync into the target; the newer "
                    "version of a row (updated_at, then write_id) wins, deletions included. --all merges each "
                    "provider into the primary, then the primary into each. Exit 0 when every sync succeeded, "
                    "1 when one failed, 2 on a usage or configuration error. --follow keeps backups warm: "
                    "it syncs the primary into the backups that cannot stream (or those named with --to, or "
                    "every backup with --all) every --interval seconds until SIGTERM or SIGINT.")
    parser.add_argument("--from", dest="source", metavar="A", help="source provider")
    parser.add_argument("--to", dest="target", metavar="B", action="append",
                        help="target provider (with --follow: repeat it to follow several backups)")
    parser.add_argument("--all", dest="all_providers", action="store_true",
                        help="converge every provider (with --follow: follow every backup)")
    parser.add_argument("--follow", action="store_true",
                        help="loop: sync the primary into backups every --interval seconds until stopped")
    parser.add_argument("--interval", type=positive_seconds, default=FOLLOW_INTERVAL_S, metavar="SECONDS",
                        help=f"with --follow: seconds between rounds (default {FOLLOW_INTERVAL_S:g})")
    parser.add_argument("--rounds", type=count, metavar="N", help="with --follow: stop after N rounds")
    parser.add_argument("--dry-run", action="store_true", help="count what would be copied; write nothing")
    parser.add_argument("--full", action="store_true",
                        help="ignore the watermarks and compare every row (after a restore)")
    parser.add_argument("--wait", type=seconds, default=0.0, metavar="SECONDS",
                        help="wait this long for another sync into the same target to end (default: report busy)")
    parser.set_defaults(handler=_sync)


def _sync(args: argparse.Namespace) -> Outcome:
    if args.follow:
        return _follow(args)
    if args.rounds is not None:
        raise ConfigError("--rounds goes with --follow")
    if args.target is not None and len(args.target) > 1:
        raise ConfigError("a sync has one --to (several only with --follow)")
    target = None if args.target is None else args.target[0]

    def table_done(source: str, target: str, table: TableResult) -> None:
        if args.json:
            return
        verb = "would copy" if args.dry_run else "copied"
        line = (f"{source} -> {target}  {table.table:<17} {table.rows_read:>8} read {table.rows_copied:>8} {verb} "
                f"{table.conflicts_resolved:>6} conflicts {table.tombstones_applied:>6} tombstones")
        if table.deferred:
            line += f" {table.deferred} deferred"
        progress(line)

    with DatabaseManager() as db:
        store = None if args.dry_run else StateStore(db.config.state_dir)
        report = sync(db, args.source, target, all_providers=args.all_providers, check=args.dry_run,
                      store=store, progress=table_done, wait_s=args.wait, full=args.full)
    data = {**to_jsonable(report), "ok": report.ok, "rows_copied": report.rows_copied,
            "conflicts_resolved": report.conflicts_resolved, "tombstones_applied": report.tombstones_applied,
            "max_lag_s": report.max_lag_s, "summary": report.summary()}
    return Outcome(EXIT_OK if report.ok else EXIT_FAILED, _text(report), data)


def _follow(args: argparse.Namespace) -> Outcome:
    if args.source is not None or args.dry_run or args.full:
        raise ConfigError("--follow copies the primary into backups: it takes --to or --all, not --from, "
                          "--dry-run or --full")
    if args.all_providers and args.target:
        raise ConfigError("give --to or --all with --follow, not both")

    def round_done(results: list[SyncResult]) -> None:
        if args.json:
            emit(Outcome(EXIT_OK if results and all(r.ok for r in results) else EXIT_FAILED, "",
                         {"round": [{**to_jsonable(r), "summary": r.summary()} for r in results]}), True)
        else:
            progress("\n".join(r.summary() for r in results) if results else "primary does not answer: no sync")

    with DatabaseManager() as db:
        if args.all_providers:
            backups = [n for n in db.providers if n != db.primary_provider]
        elif args.target:
            backups = args.target
        else:
            backups = fallback_backups(db)
            if not backups:
                return Outcome(EXIT_OK, "every backup streams from the primary: nothing to follow (name one with "
                                        "--to, or use --all, to follow it anyway)", {"backups": [], "rounds": 0})
        store = StateStore(db.config.state_dir)
        with stop_requested() as stop:
            report = follow(db, store, backups, interval_s=args.interval, stop=stop, rounds=args.rounds,
                            on_round=round_done)
    data = {"backups": report.backups, "rounds": report.rounds, "rows_copied": report.rows_copied,
            "failed_syncs": report.failed_syncs, "ok": report.ok, "summary": report.summary()}
    return Outcome(EXIT_OK if report.ok else EXIT_FAILED, report.summary(), data)


def _text(report: SyncReport) -> str:
    lines = [p.summary() for p in report.pairs]
    if report.hub is not None:
        lines.insert(0, f"converging through {report.hub}")
    lines.append(report.summary())
    return "\n".join(lines)
