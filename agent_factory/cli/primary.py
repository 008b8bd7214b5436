"""`agent-factory primary set NAME`: the runbook's procedure 2 (switching the primary provider)."""

from __future__ import annotations

import argparse

from ..ops.primary import switch_primary
from .output import EXIT_OK, Outcome


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("primary", help="switch the primary provider (DATABASE_PROVIDER in .env)")
    actions = parser.add_subparsers(dest="primary_command", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("set", help="health-check NAME, then make it the primary in the env file",
                           description="Run a forced health check of NAME, then rewrite DATABASE_PROVIDER in the "
                                       "env file (atomically, mode 0600). Restart applications afterwards.")
    p.add_argument("name", help="provider name, e.g. supabase")
    p.add_argument("--env-file", default=".env", help="dotenv file holding DATABASE_PROVIDER (default .env)")
    p.add_argument("--dry-run", action="store_true", help="check the provider, write nothing")
    p.add_argument("--skip-health-check", action="store_true",
                   help="switch even if NAME is down (e.g. to prepare for its return)")
    p.set_defaults(handler=_set)


def _set(args: argparse.Namespace) -> Outcome:
    result = switch_primary(args.env_file, args.name, check=args.dry_run, require_healthy=not args.skip_health_check)
    health = "" if result.healthy is None else " (healthy)"
    if not result.changed:
        text = f"[OK] {result.current} is already the primary{health}; {result.env_file} unchanged"
    elif result.check:
        text = f"[PLAN] would switch the primary from {result.previous} to {result.current}{health} in " \
               f"{result.env_file}; nothing was changed (dry run)"
    else:
        text = f"[OK] primary switched from {result.previous} to {result.current}{health} in {result.env_file}; " \
               "restart applications to use it"
    return Outcome(EXIT_OK, text, result)
