"""Change a few variables of a dotenv file in place, keeping every other byte.

`with_values(text, updates)` returns the file's text with the value of each
updated variable replaced (its `export ` prefix and quoting kept; a repeated
assignment, which would override ours, is dropped; a missing one appended).
Comments, blank lines, order and line endings are kept byte for byte.
`write_private(path, text)` writes a file atomically with mode 0600: a
temporary file in the same directory, fsync, `os.replace`, fsync of the
directory, so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

__all__ = ["with_values", "write_private"]

_ASSIGNMENT = re.compile(r"^(?P<lead>\s*(?:export\s+)?)(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>\s*=\s*)(?P<value>.*?)"
                         r"(?P<end>\r?\n?)$", re.DOTALL)
_SAFE_UNQUOTED = re.compile(r"^[A-Za-z0-9_@%+=:,./?&~!-]*$")


def with_values(text: str, updates: Mapping[str, str]) -> str:
    """Return `text` (a dotenv file) with each variable of `updates` set to its new value.

    Raises `ValueError` for a value with a newline (a dotenv line cannot hold it).
    """
    for name, value in updates.items():
        if "\n" in value or "\r" in value:
            raise ValueError(f"the new value of {name} contains a line break")
    out: list[str] = []
    done: set[str] = set()
    lines = text.splitlines(keepends=True)
    for line in lines:
        match = _ASSIGNMENT.match(line)
        if match is None or match.group("key") not in updates:
            out.append(line)
            continue
        key = match.group("key")
        if key in done:
            continue  # a later assignment would override the new value
        done.add(key)
        out.append(match.group("lead") + key + match.group("eq") + _quoted(updates[key], match.group("value"))
                   + match.group("end"))
    missing = [key for key in updates if key not in done]
    if missing:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.extend(f"{key}={_quoted(updates[key], '')}\n" for key in missing)
    return "".join(out)


def _quoted(value: str, old: str) -> str:
    """Quote `value` as the old value was (double, single or none), or as it needs."""
    old = old.strip()
    if old[:1] == "'" and "'" not in value:
        return f"'{value}'"
    if old[:1] == '"' or not _SAFE_UNQUOTED.match(value):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return value


def write_private(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically, mode 0600 (same-directory temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
