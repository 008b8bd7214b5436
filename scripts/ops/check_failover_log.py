#!/usr/bin/env python
"""Runbook: list the failovers and fail-backs of the last day (same as `agent-factory failovers`).

    python scripts/ops/check_failover_log.py [--since 24h|ISO-TIME] [--json]

Exit 0 (a report), 2 on a configuration error.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from agent_factory.cli.runbook import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand(["failovers"], sys.argv[1:]))
