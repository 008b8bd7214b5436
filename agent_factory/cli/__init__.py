"""The `agent-factory` command: one subcommand module per group, one output function.

Exit codes: 0 ok, 1 a check or operation failed, 2 usage or configuration error.
Expected errors print one readable line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ..errors import AgentFactoryError, ConfigError
from .output import EXIT_FAILED, EXIT_USAGE, Outcome, emit

# Each module defines `register(subparsers)` and sets `handler=` on its parsers.
COMMAND_MODULES = ["local", "verify", "schema", "backup", "monitor", "primary"]


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser."""
    parser = argparse.ArgumentParser(prog="agent-factory", description="Operate the Agent Factory memory system.")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        outcome: Outcome = args.handler(args)
    except ConfigError as exc:
        outcome = Outcome(EXIT_USAGE, f"configuration error: {exc}")
    except AgentFactoryError as exc:
        outcome = Outcome(EXIT_FAILED, f"error: {exc}")
    except KeyboardInterrupt:
        outcome = Outcome(EXIT_FAILED, "interrupted")
    return emit(outcome, args.json)


if __name__ == "__main__":
    sys.exit(main())
