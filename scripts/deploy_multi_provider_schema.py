#!/usr/bin/env python
"""Runbook: deploy the schema provider by provider, and verify it.

    python scripts/deploy_multi_provider_schema.py --provider neon --dry-run
    python scripts/deploy_multi_provider_schema.py --provider neon
    python scripts/deploy_multi_provider_schema.py --all
    python scripts/deploy_multi_provider_schema.py --verify

Same as `agent-factory schema deploy (--provider NAME | --all) [--dry-run]` and
`agent-factory schema verify` (exit 1 on drift).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from agent_factory.cli.runbook import run_subcommand


def run(argv: list[str]) -> int:
    """Translate the runbook's arguments into `agent-factory schema ...` and run it."""
    parser = argparse.ArgumentParser(prog="deploy_multi_provider_schema.py", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--provider", metavar="NAME", help="deploy pending migrations to this provider")
    action.add_argument("--all", action="store_true", help="deploy to every configured provider")
    action.add_argument("--verify", action="store_true", help="compare every provider with the expected schema")
    parser.add_argument("--dry-run", action="store_true", help="list what would be applied, change nothing")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    args = parser.parse_args(argv)
    flags = [f for f, on in (("--json", args.json), ("--verbose", args.verbose)) if on]
    if args.verify:
        if args.dry_run:
            parser.error("--verify only reads; --dry-run does not apply to it")
        return run_subcommand(["schema", "verify"], flags)
    target = ["--all"] if args.all else ["--provider", args.provider]
    return run_subcommand(["schema", "deploy", *target, *(["--dry-run"] if args.dry_run else [])], flags)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
