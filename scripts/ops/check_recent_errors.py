#!/usr/bin/env python
"""Runbook: list recent errors, failed provider checks and alert deliveries (same as `agent-factory errors`).

    python scripts/ops/check_recent_errors.py [--since 24h|ISO-TIME] [--limit N] [--json]

Exit 0 (a report), 2 on a configuration error.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from agent_factory.cli import main  # noqa: E402

GLOBAL_FLAGS = {"--json", "-v", "--verbose"}


def run(argv: list[str]) -> int:
    """Translate the runbook's arguments into `agent-factory errors` and run it."""
    flags = [a for a in argv if a in GLOBAL_FLAGS]
    rest = [a for a in argv if a not in GLOBAL_FLAGS]
    return main([*flags, "errors", *rest])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
