#!/usr/bin/env python
"""Runbook: list recent errors, failed provider checks and alert deliveries (same as `agent-factory errors`).

    python scripts/ops/check_recent_errors.py [--since 24h|ISO-TIME] [--limit N] [--json]

Exit 0 (a report), 2 on a configuration error.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from agent_factory.cli.runbook import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand(["errors"], sys.argv[1:]))
