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
from typing import Any, NoReturn

from ..errors import AgentFactoryError, ConfigError
from .output import EXIT_FAILED, EXIT_USAGE, Outcome, emit
from .signals import Interrupted

# Each module defines `register(subparsers)` and sets `handler=` on its parsers.
COMMAND_MODULES = ["local", "verify", "schema", "backup", "monitor", "sync", "status_page", "primary", "credentials",
                   "maintenance", "stream"]


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose every command and subcommand accepts the output options.

    `--json` and `-v` are defined here once; argparse builds subcommand parsers
    with the parent's class, so `agent-factory --json failovers` and
    `agent-factory failovers --json` both work. Their default is set once, on the
    top parser: a subcommand that is not given the option leaves the value alone.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON")
        self.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                          help="log progress to stderr")

    json_requested = False  # set by `main` from its argv: a usage error is reported as JSON too

    def error(self, message: str) -> NoReturn:
        """Report one line naming the command and the problem (no usage block), and exit 2."""
        emit(Outcome(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)"), CommandParser.json_requested)
        self.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser."""
    parser = CommandParser(prog="agent-factory", description="Operate the Agent Factory memory system.")
    parser.set_defaults(json=False, verbose=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = build_parser()
    CommandParser.json_requested = "--json" in (sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        outcome: Outcome = args.handler(args)
    except ConfigError as exc:
        outcome = Outcome(EXIT_USAGE, f"configuration error: {exc}")
    except AgentFactoryError as exc:
        outcome = Outcome(EXIT_FAILED, f"error: {exc}")
    except Interrupted as exc:
        outcome = Outcome(EXIT_FAILED, f"interrupted by {exc.signal_name}: the running tool was stopped and its "
                                       "temporary files removed")
    except KeyboardInterrupt:
        outcome = Outcome(EXIT_FAILED, "interrupted")
    return emit(outcome, args.json)


if __name__ == "__main__":
    sys.exit(main())
