#!/usr/bin/env python
"""Runbook: show the slowest statements from pg_stat_statements (same as `agent-factory slow-queries`).

    python scripts/ops/analyze_slow_queries.py [--provider NAME] [--limit N] [--json]

Exit 0 (a report; says clearly when pg_stat_statements is not available), 1 when the provider is down.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from agent_factory.cli.runbook import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand(["slow-queries"], sys.argv[1:]))
