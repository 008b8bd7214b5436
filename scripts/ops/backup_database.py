#!/usr/bin/env python
"""Runbook: back up the database (same as `agent-factory backup`).

    python scripts/ops/backup_database.py [--provider NAME | --all-providers] [--format custom|plain]
                                          [--dir backups] [--dry-run] [--json]

Exit 0 when every backup was written, 1 when one failed, 2 on a usage or configuration error.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from agent_factory.cli import main  # noqa: E402

GLOBAL_FLAGS = {"--json", "-v", "--verbose"}


def run(argv: list[str]) -> int:
    """Translate the runbook's arguments into `agent-factory backup` and run it."""
    flags = [a for a in argv if a in GLOBAL_FLAGS]
    rest = [a for a in argv if a not in GLOBAL_FLAGS]
    return main([*flags, "backup", *rest])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
