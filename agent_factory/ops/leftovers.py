"""What a killed backup or restore leaves behind, named so the next run can find it and remove it.

A run that ends normally, or by SIGTERM/SIGINT, removes its own files. A run
ended by SIGKILL (or a power cut) cannot; its files carry its pid:

- passfile directories `<tmp>/agent-factory-pg-<pid>-<random>/` (mode 0700,
  holding the provider password in `pgpass`);
- partial files in the backup directory: `.<file>.partial-<pid>` (the dump and
  its manifest while being written) and `.<manifest>.tmp-<pid>`.

`sweep` removes those whose pid no longer runs on this host and that belong to
this user; the next backup and `backups prune` call it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

PASSFILE_PREFIX = "agent-factory-pg-"
_PASSFILE_DIR = re.compile(re.escape(PASSFILE_PREFIX) + r"(\d+)-[^/]+$")
_PARTIAL = re.compile(r"^\..+\.(?:partial|tmp)-(\d+)$")


def passfile_dir_prefix() -> str:
    """Return the prefix of this process's passfile directories (for `tempfile.mkdtemp`)."""
    return f"{PASSFILE_PREFIX}{os.getpid()}-"


def partial_path(path: Path, kind: str = "partial") -> Path:
    """Return the hidden name this process writes `path` under before renaming it into place."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


def sweep(*backup_dirs: str | Path, check: bool = False) -> list[str]:
    """Remove passfile directories and partial files (in `backup_dirs`) of processes that no longer run.

    Return one line per removal; with `check`, remove nothing and return what
    would be removed. Files of live processes, of other users, and names not
    made by agent-factory are left alone.
    """
    actions = []
    verb = "remove" if check else "removed"
    for path in _stale(Path(tempfile.gettempdir()), _PASSFILE_DIR, directories=True):
        if not check:
            shutil.rmtree(path, ignore_errors=True)
        actions.append(f"{verb} the passfile directory {path} of a killed run")
    for directory in dict.fromkeys(Path(d).resolve() for d in backup_dirs):
        for path in _stale(directory, _PARTIAL, directories=False):
            if not check:
                path.unlink(missing_ok=True)
            actions.append(f"{verb} the partial file {path} of a killed run")
    for action in actions:
        logger.info("%s", action)
    return actions


def _stale(directory: Path, pattern: re.Pattern[str], *, directories: bool) -> list[Path]:
    found = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return []
    for path in entries:
        match = pattern.match(path.name)
        if not match:
            continue
        try:
            info = path.lstat()
        except OSError:
            continue
        kind_ok = path.is_dir() and not path.is_symlink() if directories else path.is_file() and not path.is_symlink()
        if kind_ok and info.st_uid == os.getuid() and not _alive(int(match.group(1))):
            found.append(path)
    return sorted(found)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OverflowError:
        return False
    return True
