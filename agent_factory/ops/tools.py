"""Run PostgreSQL client tools (pg_dump, pg_restore, psql) without leaking the password or the caller's environment.

- The password reaches the child through a temporary passfile (`PGPASSFILE`,
  mode 0600 in a 0700 directory named with our pid, removed afterwards); never
  through argv. Tool output is scrubbed before it reaches a message.
- The child gets a minimal environment: PATH, HOME (libpq finds its
  `~/.postgresql` certificates there), the locale, the loader path and
  `PGPASSFILE`; nothing else of the caller's (no `PGPASSWORD`, `PGSSLMODE`,
  `PGOPTIONS`, cloud credentials...): the connection string carries every setting.
- On Linux the child is killed when the thread that started it dies
  (`PR_SET_PDEATHSIG`), so a killed backup leaves no orphaned pg_dump; an
  exception (including KeyboardInterrupt, or SIGTERM turned into one) kills it at once.
- Tools are chosen with `pick_tool(name, min_major, ssl=...)`: the newest of at
  least the needed major, built with SSL support when the connection uses TLS.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BackupError
from ..local.binaries import find_tool
from ..redact import scrub
from .leftovers import passfile_dir_prefix

if TYPE_CHECKING:
    from .target import PgTarget

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
_PROGRESS_EVERY = 5.0  # seconds between progress reports of a running tool
_CHILD_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "LD_LIBRARY_PATH")  # plus LC_*; see the module docstring


@dataclass(frozen=True)
class Tool:
    """One PostgreSQL client program and its version."""

    name: str
    path: Path
    major: int
    version: str


def pick_tool(name: str, min_major: int | None, *, ssl: bool = False) -> Tool:
    """Return the newest `name` whose major version is >= `min_major` (and, with `ssl`, built with SSL support).

    Raises `ToolNotFoundError` saying what was found and how to install a fitting one.
    """
    path, _install = find_tool(name, min_major=min_major, ssl=ssl)
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, env=_base_env())
    match = _VERSION.search(out.stdout)
    if not match:
        raise BackupError(f"could not read the version of {path}")
    version = f"{match.group(1)}.{match.group(2) or 0}"
    return Tool(name, path, int(match.group(1)), version)


def major_of(version: str) -> int:
    """Return the major number of a version string such as "16.2"."""
    return int(str(version).split(".")[0])


def _base_env() -> dict[str, str]:
    """Return the caller's PATH, HOME, locale and loader path: all a client tool gets of our environment."""
    return {k: v for k, v in os.environ.items() if k in _CHILD_ENV or k.startswith("LC_")}


@contextmanager
def _child_env(password: str | None) -> Iterator[dict[str, str]]:
    """Yield a minimal environment for a client tool, with the password in a private passfile."""
    env = _base_env()
    if password is None:
        if os.environ.get("PGPASSFILE"):
            env["PGPASSFILE"] = os.environ["PGPASSFILE"]  # the URL has no password: libpq looks it up as ours would
        yield env
        return
    home = tempfile.mkdtemp(prefix=passfile_dir_prefix())  # mode 0700
    try:
        passfile = Path(home) / "pgpass"
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"*:*:*:*:{escaped}\n")
        env["PGPASSFILE"] = str(passfile)
        yield env
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run_tool(
    tool: Tool,
    args: list[str],
    target: PgTarget | None = None,
    *,
    stdin: Iterable[bytes] | None = None,
    watch: Path | None = None,
    progress: Progress | None = None,
    label: str = "",
    during: Callable[[], object] | None = None,
) -> str:
    """Run a client tool to completion and return its stdout.

    `target` supplies the password (through a passfile); `watch` names a file
    whose size is reported through `progress` while the tool runs; `during` is
    called once the tool has started, before waiting for it (the tool is killed
    if it raises). Raises `BackupError` with the tool's scrubbed error output
    when it exits non-zero.
    """
    argv = [str(tool.path), *args]
    secret = target.password if target else None
    logger.debug("running %s %s", tool.name, " ".join(scrub(a, secret or "") for a in args))
    with _child_env(secret) as env, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=out, stderr=err, env=env, preexec_fn=_die_with_parent())
        try:
            if stdin is not None:
                _feed(proc, stdin)
            if during is not None:
                during()
            _wait(proc, tool, watch, progress, label)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        lines = [ln for ln in scrub(stderr, secret or "").splitlines() if ln.strip()]
        detail = " | ".join(lines[-6:]) or f"exit status {proc.returncode}"
        raise BackupError(f"{label + ': ' if label else ''}{tool.name} failed: {detail}"[:1500])
    return stdout


_PR_SET_PDEATHSIG = 1


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> Callable[[], None] | None:
    """Return a pre-exec hook that has the kernel SIGKILL the child when this thread dies (Linux), else None.

    The hook also covers the race where we died between fork and the prctl call.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = _libc().prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _feed(proc: subprocess.Popen[bytes], chunks: Iterable[bytes]) -> None:
    assert proc.stdin is not None
    try:
        for chunk in chunks:
            proc.stdin.write(chunk)
    except BrokenPipeError:
        pass  # the tool stopped early (ON_ERROR_STOP); its exit status says why
    except BaseException:
        proc.kill()  # before its input ends: psql --single-transaction would COMMIT at end of input
        proc.wait()
        raise
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass


def _wait(proc: subprocess.Popen[bytes], tool: Tool, watch: Path | None, progress: Progress | None,
          label: str) -> None:
    start = time.monotonic()
    last = start
    while True:
        try:
            proc.wait(timeout=0.5)
            return
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if progress is not None and now - last >= _PROGRESS_EVERY:
            last = now
            size = f", {watch.stat().st_size / 1e6:.1f} MB written" if watch and watch.exists() else ""
            progress(f"{label}: {tool.name} running for {now - start:.0f} s{size}")
