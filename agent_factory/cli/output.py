"""The CLI's one output path: a readable text block, or JSON with `--json`."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class Outcome:
    """What a command hands back to `main`: exit code, text for people, data for `--json`."""

    code: int
    text: str
    data: Any = field(default=None)


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, paths, datetimes and enums into JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


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
