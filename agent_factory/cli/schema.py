"""`agent-factory schema deploy | verify | fix-constraints`: the runbook's schema procedures."""

from __future__ import annotations

import argparse

from ..core import DatabaseManager
from ..ops.schema_ops import (
    CANONICAL_MEMORY_TYPES,
    ConstraintFixResult,
    DeployResult,
    DriftReport,
    deploy,
    fix_constraints,
    schema_verify,
)
from .output import EXIT_FAILED, EXIT_OK, Outcome


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("schema", help="deploy migrations, detect drift, fix the memory_type constraint")
    schema = parser.add_subparsers(dest="schema_command", metavar="ACTION")
    schema.required = True

    p = schema.add_parser("deploy", help="apply pending migrations to one provider or all",
                          description="Apply the pending migrations, one transaction each. An unreachable "
                                      "provider is reported and the others deployed; a failed migration "
                                      "stops the run. Exit 1 when any targeted provider was not deployed.")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--provider", metavar="NAME", help="deploy to this provider only")
    target.add_argument("--all", action="store_true",
                        help="deploy to every configured provider: the backups first, the primary last")
    p.add_argument("--dry-run", action="store_true", help="list the pending migrations, change nothing")
    p.set_defaults(handler=_deploy)

    p = schema.add_parser("verify", help="compare every provider with the expected schema (exit 1 on drift)",
                          description="Compare tables, columns, types, constraints, indexes and the migration "
                                      "version of every reachable provider with the schema the shipped "
                                      "migrations produce. Read-only. Exit 1 on drift or when no provider "
                                      "could be read.")
    p.set_defaults(handler=_verify)

    p = schema.add_parser(
        "fix-constraints",
        help="replace session_memories_memory_type_check with the canonical list",
        description="Replace session_memories_memory_type_check with the canonical list ("
                    + ", ".join(CANONICAL_MEMORY_TYPES) + ") on one provider, or on every configured "
                    "provider when --provider is not given. Refuses, changing nothing, when existing rows "
                    "would violate it; never deletes rows. Already canonical providers are left alone.",
    )
    p.add_argument("--provider", metavar="NAME", help="fix this provider only (default: every provider)")
    p.add_argument("--dry-run", action="store_true", help="show the current constraint and the plan, change nothing")
    p.set_defaults(handler=_fix)


def _deploy(args: argparse.Namespace) -> Outcome:
    with DatabaseManager() as db:
        result = deploy(db, provider=args.provider, all_providers=args.all, check=args.dry_run)
    return Outcome(EXIT_OK if result.ok else EXIT_FAILED, render_deploy(result), result)


def _verify(args: argparse.Namespace) -> Outcome:
    with DatabaseManager() as db:
        report = schema_verify(db)
        names = list(db.providers)
    return Outcome(EXIT_OK if report.ok else EXIT_FAILED, render_drift(report, names), report)


def _fix(args: argparse.Namespace) -> Outcome:
    with DatabaseManager() as db:
        result = fix_constraints(db, provider=args.provider, check=args.dry_run)
    return Outcome(EXIT_OK if result.ok else EXIT_FAILED, render_fix(result), result)


def render_deploy(result: DeployResult) -> str:
    """Return one line per provider and the summary."""
    lines = []
    for e in result.providers:
        if e.status == "applied":
            lines.append(f"[OK] {e.provider}: applied {', '.join(e.applied)} (now v{e.target_version})")
        elif e.status == "up_to_date":
            lines.append(f"[OK] {e.provider}: up to date (v{e.current_version})")
        elif e.status == "would_apply":
            lines.append(f"[PLAN] {e.provider}: would apply {', '.join(e.pending)} "
                         f"(v{e.current_version} -> v{e.target_version})")
        elif e.status == "unreachable":
            lines.append(f"[DOWN] {e.provider}: {e.error}")
        elif e.status == "skipped":
            lines.append(f"[SKIP] {e.provider}: {e.error}")
        else:
            lines.append(f"[FAIL] {e.provider}: {e.error}")
    return "\n".join([*lines, result.summary])


def render_drift(report: DriftReport, providers: list[str]) -> str:
    """Return the reference, one line per provider and per difference, and the summary."""
    lines = [f"Expected schema: v{report.target_version} from {report.reference or 'nothing (no provider readable)'}"]
    for name in providers:
        if name in report.unreachable:
            lines.append(f"[DOWN] {name}: not compared ({report.unreachable[name]})")
        elif name in report.versions:
            mine = [d for d in report.differences if d.startswith(f"{name}:")]
            if mine:
                lines.extend(f"[FAIL] {d}" for d in mine)
            else:
                lines.append(f"[OK] {name}: matches schema v{report.target_version}")
    lines.extend(f"[INFO] {note}" for note in report.notes)
    return "\n".join([*lines, report.summary])


def render_fix(result: ConstraintFixResult) -> str:
    """Return each provider's current constraint and plan, and the summary."""
    lines = []
    for p in result.providers:
        current = "; ".join(f"{n}: {d}" for n, d in p.current.items()) or "no memory_type constraint"
        if p.status == "canonical":
            lines.append(f"[OK] {p.provider}: already canonical")
        elif p.status in ("would_replace", "replaced"):
            tag, verb = ("PLAN", "would run") if p.status == "would_replace" else ("OK", "ran")
            lines.append(f"[{tag}] {p.provider}: current {current}")
            lines.extend(f"    {verb}: {s}" for s in p.statements)
        elif p.status == "blocked":
            counts = ", ".join(f"{n} row(s) with memory_type {t!r}" for t, n in p.violations.items())
            lines.append(f"[FAIL] {p.provider}: current {current}; blocked by {counts}")
        elif p.status == "unreachable":
            lines.append(f"[DOWN] {p.provider}: {p.error}")
        else:
            lines.append(f"[FAIL] {p.provider}: {p.error}")
    return "\n".join([*lines, result.summary])
