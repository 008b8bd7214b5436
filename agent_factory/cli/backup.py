"""`agent-factory backup`, `backups list|verify|prune` and `restore`: the runbook's sections 5 and 6.

Backup, verify and restore stop cleanly on SIGTERM and SIGINT (`signals.stoppable`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import load_config
from ..core import DatabaseManager
from ..ops.backup import BackupResult, backup
from ..ops.catalog import age_text, list_backups, verify_backup
from ..ops.manifest import SigningKeys
from ..ops.prune import prune_backups
from ..ops.restore import RestoreResult, restore
from ..state.store import StateStore
from .output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Outcome, progress
from .signals import stoppable


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("backup", help="back up a provider (default the primary) with pg_dump",
                       description="Back up one provider (default: the primary) or all of them with pg_dump, "
                                   "writing <dir>/<provider>-<UTC time>.dump (0600) and a manifest beside it.")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--provider", help="provider to back up, e.g. neon (default: the primary)")
    who.add_argument("--all-providers", action="store_true", help="back up every configured provider")
    p.add_argument("--format", choices=("custom", "plain"), default="custom",
                   help="custom: compressed pg_restore archive (.dump, default); plain: SQL script (.sql)")
    p.add_argument("--dir", default="backups", help="backup directory (default backups)")
    p.add_argument("--dry-run", action="store_true", help="check the provider and pg_dump, write nothing")
    p.set_defaults(handler=stoppable(_backup))

    group = sub.add_parser("backups", help="list, verify or prune backups")
    actions = group.add_subparsers(dest="backups_command", metavar="ACTION")
    actions.required = True
    ls = actions.add_parser("list", help="the backup catalog, newest first per provider")
    ls.add_argument("--provider", help="only this provider")
    ls.add_argument("--dir", default="backups", help="also adopt manifests found here (default backups)")
    ls.set_defaults(handler=_list)
    vf = actions.add_parser("verify", help="check a backup's checksum and archive (--deep: restore it to a scratch db)")
    vf.add_argument("file", help="backup file (.dump or .sql)")
    vf.add_argument("--deep", action="store_true",
                    help="restore into a scratch database and compare row counts with the manifest")
    vf.add_argument("--target", help="provider for the scratch database (default: the backup's provider)")
    vf.add_argument("--allow-unsigned", action="store_true",
                    help="accept a backup made before backups were signed (a deep pass lets restore use it)")
    vf.set_defaults(handler=stoppable(_verify))
    pr = actions.add_parser("prune", help="delete backups outside the retention (never a provider's newest verified)",
                            description="Keep a backup when it is among the N newest of its provider, or younger "
                                        "than D days, or its provider's newest verified backup; delete the rest.")
    pr.add_argument("--keep", type=_non_negative_int, help="keep the N newest backups of each provider")
    pr.add_argument("--max-age-days", type=_non_negative_float, help="keep backups younger than D days")
    pr.add_argument("--provider", help="only this provider")
    pr.add_argument("--dir", default="backups", help="also consider manifests found here (default backups)")
    pr.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    pr.set_defaults(handler=_prune)

    rs = sub.add_parser("restore", help="restore a backup into a provider (pre-restore backup first)",
                        description="Verify the backup, back up the target, restore in one transaction and "
                                    "compare row counts. Asks for confirmation on a terminal unless --yes.")
    rs.add_argument("--provider", help="target provider (default: the provider the backup was made from)")
    rs.add_argument("--backup", required=True, help="backup file (.dump or .sql)")
    rs.add_argument("--dry-run", action="store_true", help="validate everything and print the plan; change nothing")
    rs.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rs.add_argument("--dir", default="backups", help="where the pre-restore backup goes (default backups)")
    rs.add_argument("--allow-unsigned", action="store_true",
                    help="accept an unsigned backup that passed `backups verify --deep --allow-unsigned` here")
    rs.set_defaults(handler=stoppable(_restore))


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _size(n: int | None) -> str:
    return f"{(n or 0) / 1e6:.1f} MB" if (n or 0) >= 100_000 else f"{(n or 0) / 1e3:.1f} kB"


def _backup_line(r: BackupResult) -> str:
    if r.status == "failed":
        return f"[FAIL] {r.provider}: {r.error}"
    if r.status == "planned":
        return f"[PLAN] {r.provider}: " + "\n  ".join(r.actions)
    rows = sum(r.row_counts.values())
    return (f"[OK] {r.provider}: {r.path} ({_size(r.size_bytes)}, {rows} rows in {len(r.row_counts)} tables, "
            f"{r.duration_s:.1f} s)")


def _backup(args: argparse.Namespace) -> Outcome:
    with DatabaseManager() as db:
        results = backup(db, args.provider, all_providers=args.all_providers, fmt=args.format,
                         backup_dir=args.dir, check=args.dry_run, progress=progress)
    code = EXIT_OK if all(r.ok for r in results) else EXIT_FAILED
    return Outcome(code, "\n".join(_backup_line(r) for r in results), results)


def _list(args: argparse.Namespace) -> Outcome:
    config = load_config()
    entries = list_backups(StateStore(config.state_dir), args.provider, args.dir, keys=SigningKeys.from_config(config))
    if not entries:
        return Outcome(EXIT_OK, "no backups in the catalog", [])
    lines = []
    for e in entries:
        r = e.record
        tag = f" ({r.purpose})" if r.purpose != "manual" else ""
        if e.trust == "invalid":
            lines.append(f"{'?':<10} {'':<20} {'':>7}      {e.state:<13} {'':>9}  {r.path}: {e.problem}")
            continue
        why = f" ({e.problem})" if e.problem and e.trust != "signed" else ""
        lines.append(f"{r.provider:<10} {r.started_at:%Y-%m-%d %H:%M:%S}Z {age_text(e.age_s):>7} ago  "
                     f"{e.state:<13} {_size(r.size_bytes):>9}  {r.path}{tag}{why}")
    data = [{"age_s": round(e.age_s, 1), "state": e.state, "exists": e.exists, "trust": e.trust,
             "problem": e.problem, **vars(e.record)} for e in entries]
    return Outcome(EXIT_OK, "\n".join(lines), data)


def _verify(args: argparse.Namespace) -> Outcome:
    bad = _bad_file(args.file)
    if bad:
        return Outcome(EXIT_USAGE, bad)
    with DatabaseManager() as db:
        result = verify_backup(db, args.file, deep=args.deep, target=args.target, progress=progress,
                               allow_unsigned=args.allow_unsigned)
    text = f"[OK] {result.path} ({'deep' if result.deep else 'quick'} verification, {result.duration_s:.1f} s)\n  " \
        + "\n  ".join(result.checks)
    return Outcome(EXIT_OK, text, result)


def _prune(args: argparse.Namespace) -> Outcome:
    if args.keep is None and args.max_age_days is None:
        return Outcome(EXIT_USAGE, "backups prune needs --keep N and/or --max-age-days D")
    config = load_config()
    result = prune_backups(StateStore(config.state_dir), keep=args.keep, max_age_days=args.max_age_days,
                           provider=args.provider, backup_dir=args.dir, check=args.dry_run,
                           keys=SigningKeys.from_config(config))
    verb = "would delete" if args.dry_run else "deleted"
    lines = [f"{verb} {len(result.deleted)} backup(s), kept {len(result.kept)}"]
    lines += [("[PLAN] " if args.dry_run else "[OK] ") + a for a in result.actions]
    lines += [f"[SKIP] {u}" for u in result.untouched]
    return Outcome(EXIT_OK, "\n".join(lines), result)


def _restore(args: argparse.Namespace) -> Outcome:
    bad = _bad_file(args.backup)
    if bad:
        return Outcome(EXIT_USAGE, bad)
    with DatabaseManager() as db:
        yes = args.yes
        if not yes and not args.dry_run:
            plan = restore(db, args.provider, args.backup, check=True, yes=True, backup_dir=args.dir,
                           allow_unsigned=args.allow_unsigned)
            if not sys.stdin.isatty():
                return Outcome(EXIT_USAGE, f"refusing to restore into provider {plan.provider} without --yes "
                                           "(not on a terminal to ask); run with --dry-run to see the plan")
            print(_restore_text(plan), file=sys.stderr)  # noqa: T201 - the plan, before the question
            answer = input(f"This replaces the data of provider {plan.provider}. Type its name to go on: ")
            if answer.strip() != plan.provider:
                return Outcome(EXIT_FAILED, "restore cancelled; nothing was changed")
            yes = True
        result = restore(db, args.provider, args.backup, check=args.dry_run, yes=yes, backup_dir=args.dir,
                         progress=progress, allow_unsigned=args.allow_unsigned)
    return Outcome(EXIT_OK if result.ok else EXIT_FAILED, _restore_text(result), result)


def _restore_text(r: RestoreResult) -> str:
    head = {"planned": "[PLAN]", "ok": "[OK]", "mismatch": "[FAIL]"}[r.status]
    lines = [f"{head} restore {r.backup_path.name} (a backup of {r.backup_provider}) into {r.provider} ({r.host})"]
    lines += [f"  [WARN] {w}" for w in r.warnings if not w.startswith("deployment check")]
    if r.status == "planned":
        lines += [f"  checked: {c}" for c in r.checks]
        lines += [f"  would: {a}" for a in r.actions]
        now = sum(v or 0 for v in r.row_counts_before.values())
        lines.append(f"  now {now} rows in those tables; after the restore {sum(r.expected_row_counts.values())}")
        lines.append("  nothing was changed (dry run)")
        return "\n".join(lines)
    lines.append(f"  pre-restore backup: {r.pre_restore_backup}")
    if r.mismatches:
        lines += [f"  row count mismatch {t}: expected {a}, found {b}" for t, (a, b) in sorted(r.mismatches.items())]
        lines.append(f"  to roll back: agent-factory restore --provider {r.provider} --backup {r.pre_restore_backup}")
    else:
        lines.append(f"  row counts of {len(r.expected_row_counts)} tables match the manifest "
                     f"({sum(r.expected_row_counts.values())} rows)")
    if r.skipped:
        lines.append(f"  kept the target's own: {', '.join(r.skipped)}")
    if r.verify_summary:
        lines.append(f"  [{'OK' if r.verify_ok else 'FAIL'}] deployment check: {r.verify_summary}")
    lines.append(f"  RTO {r.duration_s:.1f} s (restore itself {r.restore_s or 0:.1f} s)")
    return "\n".join(lines)


def _bad_file(name: str) -> str | None:
    path = Path(name)
    if not path.exists():
        return f"no such backup file: {name}"
    if path.is_dir():
        return f"{name} is a directory; give a backup file (.dump or .sql)"
    return None
