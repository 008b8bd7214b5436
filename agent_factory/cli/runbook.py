"""Run `agent-factory` subcommands for the runbook scripts in `scripts/`."""

from __future__ import annotations

from . import main

GLOBAL_FLAGS = frozenset({"--json", "-v", "--verbose"})


def run_subcommand(words: list[str], argv: list[str]) -> int:
    """Run `agent-factory WORDS... ARGV...` and return its exit code.

    The runbook forms put global flags after the subcommand
    (`health_monitor.py --once --json`), where argparse would refuse them, so
    the flags in `argv` (`--json`, `-v`, `--verbose`) are moved before `words`.
    Errors are handled as `main` handles them: one readable line and a
    non-zero exit code (2 for a usage or configuration error).
    """
    flags = [a for a in argv if a in GLOBAL_FLAGS]
    rest = [a for a in argv if a not in GLOBAL_FLAGS]
    return main([*flags, *words, *rest])
