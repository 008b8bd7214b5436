"""`agent-factory sync`: merge one provider into another, or converge them all (docs/CONTINUITY.md)."""

from __future__ import annotations

import argparse

from ..core import DatabaseManager
from ..ops.sync import SyncReport, sync
from ..replication import TableResult
from ..state.store import StateStore
from .output import EXIT_FAILED, EXIT_OK, Outcome, progress, to_jsonable


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "sync", help="merge the rows one provider changed into another (--from A --to B), or converge all (--all)",
        description="Copy every row changed on the source since the last sync into the target; the newer "
                    "version of a row (updated_at, then write_id) wins, deletions included. --all merges each "
                    "provider into the primary, then the primary into each. Exit 0 when every sync succeeded, "
                    "1 when one failed, 2 on a usage or configuration error.")
    parser.add_argument("--from", dest="source", metavar="A", help="source provider")
    parser.add_argument("--to", dest="target", metavar="B", help="target provider")
    parser.add_argument("--all", dest="all_providers", action="store_true", help="converge every provider")
    parser.add_argument("--dry-run", action="store_true", help="count what would be copied; write nothing")
    parser.add_argument("--full", action="store_true",
                        help="ignore the watermarks and compare every row (after a restore)")
    parser.add_argument("--wait", type=_seconds, default=0.0, metavar="SECONDS",
                        help="wait this long for another sync into the same target to end (default: report busy)")
    parser.set_defaults(handler=_sync)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("SECONDS must be 0 or more")
    return value


def _sync(args: argparse.Namespace) -> Outcome:
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
        report = sync(db, args.source, args.target, all_providers=args.all_providers, check=args.dry_run,
                      store=store, progress=table_done, wait_s=args.wait, full=args.full)
    data = {**to_jsonable(report), "ok": report.ok, "rows_copied": report.rows_copied,
            "conflicts_resolved": report.conflicts_resolved, "tombstones_applied": report.tombstones_applied,
            "max_lag_s": report.max_lag_s, "summary": report.summary()}
    return Outcome(EXIT_OK if report.ok else EXIT_FAILED, _text(report), data)


def _text(report: SyncReport) -> str:
    lines = [p.summary() for p in report.pairs]
    if report.hub is not None:
        lines.insert(0, f"converging through {report.hub}")
    lines.append(report.summary())
    return "\n".join(lines)
