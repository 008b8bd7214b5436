"""Find PostgreSQL installations on this machine, never assuming a path.

Candidates, in order: `PG_BIN_DIR`, the directories of `postgres`/`pg_dump` on
PATH, `pg_config --bindir`, Debian's `/usr/lib/postgresql/*/bin`, and the
binaries bundled by the `pgserver` package from PyPI.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolNotFoundError

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, order=True)
class PgInstall:
    """One directory of PostgreSQL binaries and its major version."""

    major: int
    bindir: Path
    version: str

    def tool(self, name: str) -> Path | None:
        """Return the path of `name` in this installation, or None."""
        path = self.bindir / name
        return path if path.is_file() and os.access(path, os.X_OK) else None

    @property
    def has_server(self) -> bool:
        """Whether this installation can run a server (initdb, pg_ctl, postgres)."""
        return all(self.tool(n) for n in ("initdb", "pg_ctl", "postgres"))


def _candidate_dirs() -> list[Path]:
    dirs: list[Path] = []
    if os.environ.get("PG_BIN_DIR"):
        dirs.append(Path(os.environ["PG_BIN_DIR"]))
    for name in ("postgres", "pg_ctl", "pg_dump"):
        found = shutil.which(name)
        if found:
            dirs.append(Path(found).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                dirs.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    dirs.extend(Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin")))
    dirs.extend(Path(p) for p in sorted(glob.glob("/usr/local/pgsql*/bin")))
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "pginstall" / "bin")
    return dirs


def _version_of(bindir: Path) -> tuple[int, str] | None:
    for name in ("pg_dump", "postgres", "psql"):
        exe = bindir / name
        if not exe.is_file():
            continue
        try:
            out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        match = _VERSION.search(out.stdout)
        if match:
            return int(match.group(1)), out.stdout.split(")")[-1].strip()
    return None


@functools.lru_cache(maxsize=1)
def _cached_installs(key: str) -> tuple[PgInstall, ...]:
    seen: dict[Path, PgInstall] = {}
    for bindir in _candidate_dirs():
        try:
            real = bindir.resolve()
        except OSError:
            continue
        if real in seen or not real.is_dir():
            continue
        found = _version_of(real)
        if found:
            seen[real] = PgInstall(major=found[0], bindir=real, version=found[1])
    return tuple(sorted(seen.values(), key=lambda i: (-i.major, str(i.bindir))))


def find_installs() -> list[PgInstall]:
    """Return every PostgreSQL installation found, newest major first."""
    return list(_cached_installs(os.environ.get("PG_BIN_DIR", "") + "|" + os.environ.get("PATH", "")))


def server_installs() -> list[PgInstall]:
    """Return installations able to run a server, one per major version, newest first."""
    by_major: dict[int, PgInstall] = {}
    for install in find_installs():
        if install.has_server and install.major not in by_major:
            by_major[install.major] = install
    return list(by_major.values())


def find_tool(name: str, min_major: int | None = None, *, ssl: bool = False) -> tuple[Path, PgInstall]:
    """Return the newest `name` (e.g. pg_dump) whose major version is >= `min_major`.

    With `ssl`, only a client built with SSL support qualifies (one without it
    refuses `sslmode=require` and would talk to `prefer` servers in plain text).
    Raises `ToolNotFoundError` saying what was found and how to install a fitting one.
    """
    found = [i for i in find_installs() if i.tool(name)]
    fitting = [i for i in found if min_major is None or i.major >= min_major]
    if ssl:
        without = [i for i in fitting if not supports_ssl(i)]
        fitting = [i for i in fitting if i not in without]
    if fitting:
        install = fitting[0]
        return install.tool(name), install  # type: ignore[return-value]
    have = ", ".join(f"{i.major} at {i.bindir}" for i in found) or "none"
    need = f" of major version {min_major} or newer" if min_major else ""
    if ssl and without:
        raise ToolNotFoundError(
            f"no {name}{need} with SSL support found, and the provider's connection needs SSL (built without "
            f"it: {', '.join(str(i.bindir) for i in without)}); install your OS's PostgreSQL client tools "
            "(e.g. postgresql-client) and set PG_BIN_DIR to their bin directory"
        )
    raise ToolNotFoundError(
        f"no {name}{need} found (found: {have}); install PostgreSQL client tools "
        f"(e.g. `pip install pgserver` or your OS package) or set PG_BIN_DIR to their bin directory"
    )


@functools.lru_cache(maxsize=32)
def supports_ssl(install: PgInstall) -> bool:
    """Return whether an installation's client programs (one libpq) were built with SSL support.

    libpq checks `sslmode` before connecting, so pointing pg_dump or psql at a
    socket directory that does not exist tells at once, without any network.
    """
    conninfo = "--dbname=host=/nonexistent-agent-factory-dir sslmode=require dbname=x user=x connect_timeout=2"
    if install.tool("pg_dump"):
        argv = [str(install.tool("pg_dump")), conninfo, "--schema-only"]
    elif install.tool("psql"):
        argv = [str(install.tool("psql")), "-X", conninfo, "-c", ""]
    else:
        return False
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                             env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError):
        return False
    return "SSL support is not compiled in" not in out.stderr
