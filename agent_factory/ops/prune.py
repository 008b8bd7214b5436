"""Retention: delete the backups no longer kept, and never anything else.

`prune_backups` ranks only signed backups inside the backup directory: it
keeps one when it is among the `keep` newest of its provider, or younger than
`max_age_days`, or its provider's newest verified backup (always kept); every
other one is deleted with its manifest. Unsigned, untrusted, invalid entries
and files outside the directory are never touched (`untouched`). Check mode
reports what would go and deletes nothing. Prune also removes what killed
backups left (`leftovers.sweep`): partial files and passfile directories of dead processes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..errors import BackupError, ConfigError
from ..state.backups import BackupCatalog
from ..state.store import StateStore
from . import leftovers
from .catalog import BackupEntry, list_backups
from .manifest import SigningKeys, manifest_path

__all__ = ["PruneResult", "inside", "prune_backups"]

logger = logging.getLogger(__name__)


@dataclass
class PruneResult:
    """What retention deleted (or, in check mode, would delete) and what it kept."""

    changed: bool
    deleted: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)  # entries prune never deletes, and why


def prune_backups(
    state: StateStore,
    *,
    keep: int | None = None,
    max_age_days: float | None = None,
    provider: str | None = None,
    backup_dir: str | Path | None = None,
    check: bool = False,
    now: datetime | None = None,
    keys: SigningKeys | None = None,
) -> PruneResult:
    """Delete the backups retention no longer keeps (see the module docstring for the rule).

    Only signed backups whose file lies inside `backup_dir` (no symbolic link,
    no `..`) are ranked and deleted; every other entry is left alone and named in
    `untouched`. Raises `ConfigError` when neither `keep` nor `max_age_days` is
    given, either is negative, or `backup_dir` is missing. A file that cannot be
    deleted raises `BackupError` after the others were handled.
    """
    if keep is None and max_age_days is None:
        raise ConfigError("prune needs a retention: keep N newest and/or max age in days")
    if (keep is not None and keep < 0) or (max_age_days is not None and max_age_days < 0):
        raise ConfigError("keep and max_age_days must not be negative")
    if backup_dir is None:
        raise ConfigError("prune needs the backup directory: it deletes nothing outside it")
    directory = Path(backup_dir)
    entries = list_backups(state, provider, directory, now=now, keys=keys)
    catalog = BackupCatalog(state)
    result = PruneResult(changed=False)
    by_provider: dict[str, list[BackupEntry]] = {}
    for entry in entries:
        why_not = _untouchable(entry, directory)
        if why_not:
            result.untouched.append(f"{entry.record.path}: {why_not}")
            continue
        by_provider.setdefault(entry.record.provider, []).append(entry)
    failures = []
    for name, items in by_provider.items():
        newest_verified = next((e for e in items if e.exists and e.record.verified), None)
        for index, entry in enumerate(items):
            path = Path(entry.record.path)
            keep_it = (
                entry is newest_verified
                or (keep is not None and index < keep)
                or (max_age_days is not None and entry.age_s < max_age_days * 86400)
            )
            if keep_it:
                result.kept.append(path)
                continue
            why = f"{entry.age_s / 86400:.1f} days old, #{index + 1} of provider {name}"
            result.actions.append(f"delete {path} ({why})")
            result.deleted.append(path)
            if check:
                continue
            try:
                path.unlink(missing_ok=True)
                manifest_path(path).unlink(missing_ok=True)
            except OSError as exc:
                failures.append(f"{path}: {exc.strerror}")
                continue
            catalog.mark_pruned(path)
            result.changed = True
            logger.info("provider %s: pruned backup %s (%s)", name, path, why)
    swept = leftovers.sweep(directory, check=check)
    result.actions += swept
    result.changed = result.changed or bool(swept and not check)
    if failures:
        raise BackupError("could not delete: " + "; ".join(failures))
    return result


def _untouchable(entry: BackupEntry, directory: Path) -> str | None:
    """Return why prune must not touch an entry (outside the directory, untrusted), or None."""
    path = Path(entry.record.path)
    if not inside(path, directory):
        return f"outside the backup directory {directory}"
    if entry.trust == "invalid":
        return f"invalid ({entry.problem})"
    if entry.exists and entry.trust != "signed":
        return f"{entry.trust} ({entry.problem}); prune deletes only signed backups"
    return None


def inside(path: Path, directory: Path) -> bool:
    """Whether `path` and its manifest lie inside `directory`: no `..`, no symbolic link, resolved."""
    if ".." in path.parts or path.is_symlink() or manifest_path(path).is_symlink():
        return False
    try:
        return path.resolve().is_relative_to(directory.resolve()) and path.resolve() != directory.resolve()
    except (OSError, RuntimeError):
        return False
