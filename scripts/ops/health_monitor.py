#!/usr/bin/env python
"""Runbook: the health monitor, for cron every 5 minutes (same as `agent-factory monitor`).

    python scripts/ops/health_monitor.py [--once | --loop SECONDS] [--json]

Exit 0 when at least one provider serves, 1 when all are down, 2 on a configuration error.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from agent_factory.cli.runbook import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand(["monitor"], sys.argv[1:]))
