#!/usr/bin/env python
"""Runbook: check the memory system's deployment (same as `agent-factory verify`).

    python scripts/ops/verify_memory_deployment.py [--json]

Exit 0 when the system can serve, 1 when it cannot, 2 on a configuration error.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from agent_factory.cli.runbook import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand(["verify"], sys.argv[1:]))
