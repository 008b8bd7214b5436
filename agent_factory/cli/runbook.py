"""Run `agent-factory` subcommands for the runbook scripts in `scripts/`."""

from __future__ import annotations

from . import main


def run_subcommand(words: list[str], argv: list[str]) -> int:
    """Run `agent-factory WORDS... ARGV...` and return its exit code.

    The runbook forms put the output options after the subcommand
    (`health_monitor.py --once --json`), which every command accepts.
    Errors are handled as `main` handles them: one readable line and a
    non-zero exit code (2 for a usage or configuration error).
    """
    return main([*words, *argv])
