#!/usr/bin/env python
"""Runbook: back up the database (same as `agent-factory backup`).

    python scripts/ops/backup_database.py [--provider NAME | --all-providers] [--format custom|plain]
                                          [--dir backups] [--dry-run] [--json]

Exit 0 when every backup was written, 1 when one failed, 2 on a usage or configuration error.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from agent_factory.cli.runbook import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand(["backup"], sys.argv[1:]))
