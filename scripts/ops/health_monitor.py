#!/usr/bin/env python
"""Runbook: the health monitor, for cron every 5 minutes (same as `agent-factory monitor`).

    python scripts/ops/health_monitor.py [--once | --loop SECONDS] [--json]

Exit 0 when at least one provider serves, 1 when all are down, 2 on a configuration error.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from agent_factory.cli import main  # noqa: E402

GLOBAL_FLAGS = {"--json", "-v", "--verbose"}


def run(argv: list[str]) -> int:
    """Translate the runbook's arguments into `agent-factory monitor` and run it."""
    flags = [a for a in argv if a in GLOBAL_FLAGS]
    rest = [a for a in argv if a not in GLOBAL_FLAGS]
    return main([*flags, "monitor", *rest])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
