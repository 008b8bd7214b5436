"""The CLI's one output path: a readable text block, or JSON with `--json`."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from ..automation import to_jsonable

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "Outcome", "emit", "progress", "to_jsonable"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class Outcome:
    """What a command hands back to `main`: exit code, text for people, data for `--json`."""

    code: int
    text: str
    data: Any = field(default=None)


def emit(outcome: Outcome, as_json: bool) -> int:
    """Print the outcome and return its exit code."""
    if as_json:
        payload = {"ok": outcome.code == EXIT_OK, "exit_code": outcome.code, "result": to_jsonable(outcome.data)}
        if outcome.code != EXIT_OK and outcome.data is None:
            payload["error"] = outcome.text
        print(json.dumps(payload, indent=2, sort_keys=True))
    elif outcome.text:
        stream = sys.stdout if outcome.code == EXIT_OK or outcome.data is not None else sys.stderr
        print(outcome.text, file=stream)
    return outcome.code


def progress(message: str) -> None:
    """Report progress of long work on stderr (stdout stays for the result)."""
    print(message, file=sys.stderr, flush=True)
