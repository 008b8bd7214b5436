#!/usr/bin/env python
"""Runbook: replace session_memories_memory_type_check with the canonical list.

    python scripts/ops/fix_schema_constraints.py [--dry-run] [--provider NAME] [--json]

Same as `agent-factory schema fix-constraints`: without --provider every
configured provider is fixed; rows that would violate the new constraint make
it refuse, changing nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from agent_factory.cli import main  # noqa: E402

GLOBAL_FLAGS = {"--json", "-v", "--verbose"}


def run(argv: list[str]) -> int:
    """Translate the runbook's arguments into `agent-factory schema fix-constraints` and run it."""
    flags = [a for a in argv if a in GLOBAL_FLAGS]
    rest = [a for a in argv if a not in GLOBAL_FLAGS]
    return main([*flags, "schema", "fix-constraints", *rest])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
