"""`agent-factory verify`: the runbook's deployment check (exit 0 when the system can serve)."""

from __future__ import annotations

import argparse

from ..ops.verify import verify
from .output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Outcome


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "verify",
        help="check imports, providers' health, a storage round trip, knowledge atoms and schema drift",
        description="Run the runbook's deployment checks. Exit 0 when the system can serve (at least one "
                    "provider healthy and the storage round trip passed), 1 otherwise, 2 on a configuration error.",
    )
    parser.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> Outcome:
    report = verify()
    if report.config_error is not None:
        code = EXIT_USAGE
    else:
        code = EXIT_OK if report.ok else EXIT_FAILED
    return Outcome(code, report.text(), report)
