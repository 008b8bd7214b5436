#!/usr/bin/env python
"""Runbook: show the slowest statements from pg_stat_statements (same as `agent-factory slow-queries`).

    python scripts/ops/analyze_slow_queries.py [--provider NAME] [--limit N] [--json]

Exit 0 (a report; says clearly when pg_stat_statements is not available), 1 when the provider is down.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from agent_factory.cli import main  # noqa: E402

GLOBAL_FLAGS = {"--json", "-v", "--verbose"}


def run(argv: list[str]) -> int:
    """Translate the runbook's arguments into `agent-factory slow-queries` and run it."""
    flags = [a for a in argv if a in GLOBAL_FLAGS]
    rest = [a for a in argv if a not in GLOBAL_FLAGS]
    return main([*flags, "slow-queries", *rest])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
