#!/usr/bin/env python
"""Runbook: replace session_memories_memory_type_check with the canonical list.

    python scripts/ops/fix_schema_constraints.py [--dry-run] [--provider NAME] [--json]

Same as `agent-factory schema fix-constraints`: without --provider every
configured provider is fixed; rows that would violate the new constraint make
it refuse, changing nothing.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from agent_factory.cli.runbook import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand(["schema", "fix-constraints"], sys.argv[1:]))
