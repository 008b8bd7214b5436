#!/usr/bin/env python
"""Runbook: restore a provider from a backup (same as `agent-factory restore`).

    python scripts/ops/restore_database.py --provider neon --backup backups/neon-2025-12-15T020000Z.dump
                                           [--dry-run] [--yes] [--json]

Without --provider the backup's own provider is the target. Without --yes it asks on a
terminal and refuses elsewhere. Exit 0 restored (or dry run passed), 1 failed, 2 usage error.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from agent_factory.cli.runbook import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand(["restore"], sys.argv[1:]))
