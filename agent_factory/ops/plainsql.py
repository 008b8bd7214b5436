"""Refuse psql meta-commands in plain backups before psql sees them.

A plain backup is a script that psql replays, and psql runs every backslash
command in it: `\\! cmd` runs a shell command as the user running the restore
(root, from cron or Ansible). A manifest's checksum cannot stop this (whoever
edits the archive edits the manifest), so plain scripts are read as hostile:

- `check_script` / `guard_lines` lex the script the way psql does (quotes,
  E'' strings, "identifiers", $tag$ bodies, nested /* */ and -- comments,
  COPY ... FROM stdin data up to its `\\.` line) and raise
  `BackupVerificationError` naming the line of the first backslash outside a
  literal, comment or COPY data. Allowed: the `\\.` ending COPY data, and
  pg_dump's own `\\restrict KEY` / `\\unrestrict KEY` lines (CVE-2025-8714,
  pg_dump 15.14/16.10/17.6+), which are replaced by comments.
- Where psql and this lexer could disagree, the script is refused: a quote in a
  plain '' string preceded by an odd number of backslashes means something
  else under `standard_conforming_strings = off`; a COPY statement counts only
  when it is a whole line of its own starting a statement (pg_dump writes them so).
- The check runs twice: over the whole file before anything is loaded, and
  again on the very lines fed to psql (a file swapped in between is caught;
  the feeder kills psql before its input ends, so nothing is committed).
- A psql that knows `\\restrict` (15.14, 16.10, 17.6 and later) is also put in
  restricted mode with a random key first (`restrict_prefix`): a second lock
  that does not rely on this lexer.

Why not convert plain to custom? pg_restore cannot read a plain script and
only replaying it can rebuild it, which is what must not happen unchecked.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import BackupVerificationError

__all__ = ["check_script", "guard_lines", "restrict_prefix", "supports_restrict"]

_IDENT = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_$") | frozenset(range(0x80, 0x100))
_DOLLAR_TAG = re.compile(rb"\$([A-Za-z\x80-\xff_][A-Za-z\x80-\xff_0-9]*)?\$")
_RESTRICT = re.compile(rb"^\\(?:restrict|unrestrict) [A-Za-z0-9]{1,64}\s*$")
_COPY = re.compile(rb"^COPY [^\n]* FROM stdin;\s*$")
_COPY_END = (b"\\.\n", b"\\.\r\n", b"\\.")
_RESTRICT_SINCE = {15: 14, 16: 10, 17: 6}  # first minor of each major with \restrict; 18+ always


class _Lexer:
    """psql's view of a script, one line at a time: which state each line ends in."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lineno = 0
        self.state = "sql"  # sql, quote, equote, ident, dollar, comment, copy
        self.tag = b""
        self.depth = 0
        self.pending = False  # a statement has begun and not yet ended with ";"

    def refuse(self, why: str) -> BackupVerificationError:
        return BackupVerificationError(f"{self.name} line {self.lineno}: {why}; refusing to replay it with psql "
                                       "(a plain backup may hold only SQL and COPY data)")

    def feed(self, line: bytes) -> bytes:
        """Check one line; return it as psql may see it (pg_dump's \\restrict lines become comments)."""
        self.lineno += 1
        if self.state == "copy":
            if line in _COPY_END:
                self.state = "sql"
            return line
        if self.state == "sql" and not self.pending:
            if _RESTRICT.match(line):
                return b"-- " + line.split(b" ", 1)[0] + b" (pg_dump's key removed by agent-factory)\n"
            if _COPY.match(line):
                self._scan(line)
                if self.state == "sql" and not self.pending:
                    self.state = "copy"
                    return line
                raise self.refuse("a COPY ... FROM stdin line that is not one whole statement")
        self._scan(line)
        return line

    def _scan(self, line: bytes) -> None:  # one state machine reads best in one place
        i, n = 0, len(line)
        while i < n:
            c = line[i]
            if self.state == "sql":
                if c == 0x5C:  # backslash
                    command = line[i:i + 20].split()[0].decode("ascii", "replace")
                    raise self.refuse(f"psql meta-command {command}")
                if line.startswith(b"--", i):
                    return
                if line.startswith(b"/*", i):
                    self.state, self.depth = "comment", 1
                    i += 2
                    continue
                prev = line[i - 1] if i else 0x20
                if c == 0x27:  # '
                    self.state = "equote" if i and line[i - 1] in b"eE" and (i < 2 or line[i - 2] not in _IDENT) \
                        else "quote"
                elif c == 0x22:  # "
                    self.state = "ident"
                elif c == 0x24 and prev not in _IDENT:  # $
                    match = _DOLLAR_TAG.match(line, i)
                    if match:
                        self.state, self.tag = "dollar", match.group(0)
                        self.pending = True
                        i = match.end()
                        continue
                if c == 0x3B:  # ;
                    self.pending = False
                elif c not in b" \t\r\n":
                    self.pending = True
                i += 1
            elif self.state in ("quote", "equote"):
                if c == 0x5C and self.state == "equote":  # E'' strings: a backslash escapes the next byte
                    i += 2
                    continue
                if c == 0x27:
                    if self.state == "quote" and _odd_backslashes_before(line, i):
                        raise self.refuse("a quote after a backslash in a '' string (psql could read it "
                                          "either way, depending on standard_conforming_strings)")
                    if line.startswith(b"''", i):
                        i += 2
                        continue
                    self.state = "sql"
                i += 1
            elif self.state == "ident":
                if c == 0x22:
                    self.state = "sql"
                i += 1
            elif self.state == "dollar":
                end = line.find(self.tag, i)
                if end < 0:
                    return
                self.state = "sql"
                i = end + len(self.tag)
            else:  # comment
                if line.startswith(b"/*", i):
                    self.depth += 1
                    i += 2
                elif line.startswith(b"*/", i):
                    self.depth -= 1
                    i += 2
                    if not self.depth:
                        self.state = "sql"
                else:
                    i += 1

    def finish(self) -> None:
        if self.state == "copy":
            raise self.refuse("COPY data without its ending \\. line")


def _odd_backslashes_before(line: bytes, i: int) -> bool:
    n = 0
    while i - 1 - n >= 0 and line[i - 1 - n] == 0x5C:
        n += 1
    return n % 2 == 1


def guard_lines(lines: Iterable[bytes], name: str) -> Iterator[bytes]:
    """Yield a plain script's lines as psql may see them; raise `BackupVerificationError` at a meta-command."""
    lexer = _Lexer(name)
    for line in lines:
        yield lexer.feed(line)
    lexer.finish()


def check_script(path: Path) -> int:
    """Check a whole plain script without running it; return its line count.

    Raises `BackupVerificationError` naming the line of the first psql meta-command.
    """
    count = 0
    with open(path, "rb") as fh:
        for _line in guard_lines(fh, path.name):
            count += 1
    return count


def supports_restrict(version: str) -> bool:
    """Whether a psql of this version ("15.18") knows `\\restrict`."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:2]] + [0]
    major, minor = parts[0], parts[1]
    return major >= 18 or (major in _RESTRICT_SINCE and minor >= _RESTRICT_SINCE[major])


def restrict_prefix() -> bytes:
    """Return a first line that puts psql in restricted mode with a random key nobody else knows."""
    return b"\\restrict " + secrets.token_hex(16).encode() + b"\n"
