"""The backups on hand: list them, verify one, prune by retention.

- `list_backups` reads the state store catalog, newest first per provider, with
  age, verified state and whether the file is still there. Given a directory it
  first adopts manifests found there that the catalog does not know (backups
  copied from another host, or made with another state dir).
- `verify_backup` checks, in order: the file exists and is a regular file, its
  manifest, size, sha256, and that it is a readable archive (custom:
  `pg_restore --list`; plain: pg_dump's header and "dump complete" trailer).
  With `deep=True` it creates a scratch database `af_verify_<random>` on the
  backup's provider (or `target`) with the app role's CREATEDB, loads the backup
  into it in one transaction, compares every table's row count with the
  manifest and drops the database, whatever happens. A pass records
  `verified_at`/`verify_depth` in the manifest and the catalog; a failure is
  recorded in the catalog and raised as `BackupVerificationError`.
- `prune_backups` keeps a backup when it is among the `keep` newest of its
  provider, or younger than `max_age_days`, or its provider's newest verified
  backup (always kept); every other one is deleted with its manifest. Check mode
  reports what would go and deletes nothing. Prune also removes what killed
  backups left (`leftovers.sweep`): partial files and passfile directories of dead processes.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg import sql

from ..errors import BackupError, BackupVerificationError, ConfigError
from ..state.backups import BackupCatalog, BackupRecord
from ..state.store import StateStore, utcnow
from . import leftovers, pgtools
from .backup import Manifest, check_archive, manifest_path, read_manifest, sha256_of, write_manifest
from .pgtools import Progress

logger = logging.getLogger(__name__)


@dataclass
class BackupEntry:
    """One catalogued backup as listed: the record plus its age and whether the file exists."""

    record: BackupRecord
    age_s: float
    exists: bool

    @property
    def state(self) -> str:
        """One word for people: missing, corrupt, verified-deep, verified or unverified."""
        if not self.exists:
            return "missing"
        if self.record.verify_error:
            return "corrupt"
        if self.record.verified:
            return "verified-deep" if self.record.verify_depth == "deep" else "verified"
        return "unverified"


@dataclass
class VerifyResult:
    """The outcome of a passed verification."""

    path: Path
    provider: str
    format: str
    deep: bool
    verified_at: datetime
    checks: list[str] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    scratch_database: str | None = None
    duration_s: float = 0.0
    manifest: Manifest | None = field(default=None, repr=False)


@dataclass
class PruneResult:
    """What retention deleted (or, in check mode, would delete) and what it kept."""

    changed: bool
    deleted: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)


def _catalog(db_or_state: Any) -> BackupCatalog:
    if isinstance(db_or_state, StateStore):
        return BackupCatalog(db_or_state)
    return BackupCatalog(StateStore(db_or_state.config.state_dir))


def adopt_directory(state: StateStore, backup_dir: str | Path) -> list[Path]:
    """Add to the catalog the backups in `backup_dir` whose manifest it does not know; return them."""
    catalog = BackupCatalog(state)
    directory = Path(backup_dir)
    if not directory.is_dir():
        return []
    known = {r.path for r in catalog.entries(statuses=("ok", "pruned"))}
    adopted = []
    for mpath in sorted(directory.glob("*" + ".manifest.json")):
        data = mpath.with_name(mpath.name[: -len(".manifest.json")])
        if mpath.name.startswith(".") or str(data.absolute()) in known or not data.is_file():
            continue
        try:
            m = read_manifest(data)
        except BackupVerificationError as exc:
            logger.warning("not adopting %s: %s", data, exc)
            continue
        catalog.record(_record_from_manifest(m, data))
        adopted.append(data)
    return adopted


def _record_from_manifest(m: Manifest, data: Path) -> BackupRecord:
    return BackupRecord(
        m.provider, str(data.absolute()), m.format, "ok", datetime.fromisoformat(m.started_at), purpose=m.purpose,
        finished_at=datetime.fromisoformat(m.finished_at), duration_s=m.duration_s, size_bytes=m.size_bytes,
        sha256=m.sha256, host=m.host, server_version=m.server_version, pg_dump_version=m.pg_dump_version,
        row_counts=m.row_counts, verified_at=datetime.fromisoformat(m.verified_at) if m.verified_at else None,
        verify_depth=m.verify_depth,
    )


def list_backups(
    state: StateStore,
    provider: str | None = None,
    backup_dir: str | Path | None = None,
    *,
    now: datetime | None = None,
) -> list[BackupEntry]:
    """Return the catalogued backups, per provider newest first (adopting `backup_dir`'s manifests first)."""
    if backup_dir is not None:
        adopt_directory(state, backup_dir)
    now = now or utcnow()
    return [BackupEntry(r, (now - r.started_at).total_seconds(), Path(r.path).is_file())
            for r in BackupCatalog(state).entries(provider)]


def prune_backups(
    state: StateStore,
    *,
    keep: int | None = None,
    max_age_days: float | None = None,
    provider: str | None = None,
    backup_dir: str | Path | None = None,
    check: bool = False,
    now: datetime | None = None,
) -> PruneResult:
    """Delete the backups retention no longer keeps (see the module docstring for the rule).

    Raises `ConfigError` when neither `keep` nor `max_age_days` is given or either is negative.
    A file that cannot be deleted raises `BackupError` after the others were handled.
    """
    if keep is None and max_age_days is None:
        raise ConfigError("prune needs a retention: keep N newest and/or max age in days")
    if (keep is not None and keep < 0) or (max_age_days is not None and max_age_days < 0):
        raise ConfigError("keep and max_age_days must not be negative")
    entries = list_backups(state, provider, backup_dir, now=now)
    catalog = BackupCatalog(state)
    result = PruneResult(changed=False)
    by_provider: dict[str, list[BackupEntry]] = {}
    for entry in entries:
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
    directories = [*([Path(backup_dir)] if backup_dir else []), *(Path(e.record.path).parent for e in entries)]
    swept = leftovers.sweep(*directories, check=check)
    result.actions += swept
    result.changed = result.changed or bool(swept and not check)
    if failures:
        raise BackupError("could not delete: " + "; ".join(failures))
    return result


def verify_backup(
    db: Any,
    path: str | Path,
    *,
    deep: bool = False,
    target: str | None = None,
    progress: Progress | None = None,
) -> VerifyResult:
    """Verify a backup file (and with `deep`, restore it into a scratch database); record the pass.

    Raises `BackupVerificationError` for a missing, directory, corrupt, truncated
    or unknown-format file or a row count mismatch; `ConfigError` for an unknown
    target; `ProviderUnavailableError`/`BackupError` when the deep check cannot run.
    """
    t0 = time.monotonic()
    say = progress or (lambda _msg: None)
    file = Path(path)
    catalog = _catalog(db)
    try:
        manifest, checks = check_file(file)
        result = VerifyResult(file, manifest.provider, manifest.format, deep, utcnow(), checks,
                              dict(manifest.row_counts), manifest=manifest)
        if deep:
            say(f"{file.name}: restoring into a scratch database to compare row counts")
            result.scratch_database = _deep_check(db, file, manifest, target or manifest.provider, say)
            result.checks.append(f"restored into scratch database {result.scratch_database} on "
                                 f"{target or manifest.provider}; row counts of {len(manifest.row_counts)} "
                                 "tables match the manifest; scratch database dropped")
    except BackupVerificationError as exc:
        catalog.mark_verify_failed(file, str(exc))
        logger.error("backup %s failed verification: %s", file, exc)
        raise
    result.verified_at = utcnow()
    result.duration_s = round(time.monotonic() - t0, 3)
    depth = "deep" if deep else "quick"
    manifest = replace(manifest, verified_at=result.verified_at.isoformat(), verify_depth=depth)
    write_manifest(manifest, manifest_path(file))
    if catalog.get(file) is None:
        catalog.record(_record_from_manifest(manifest, file))
    catalog.mark_verified(file, result.verified_at, depth)
    result.manifest = manifest
    return result


def check_file(file: Path) -> tuple[Manifest, list[str]]:
    """Run the quick checks (no database); return the manifest and what was checked.

    Raises `BackupVerificationError` at the first failure.
    """
    if not file.exists():
        raise BackupVerificationError(f"backup file {file} does not exist")
    if file.is_dir():
        raise BackupVerificationError(f"{file} is a directory, not a backup file")
    if not file.is_file():
        raise BackupVerificationError(f"{file} is not a regular file")
    manifest = read_manifest(file)
    checks = [f"manifest {manifest_path(file).name}: provider {manifest.provider}, format {manifest.format}"]
    size = file.stat().st_size
    if size != manifest.size_bytes:
        raise BackupVerificationError(
            f"{file.name} is {size} bytes but its manifest says {manifest.size_bytes}: truncated or altered"
        )
    checks.append(f"size {size} bytes matches")
    digest = sha256_of(file)
    if digest != manifest.sha256:
        raise BackupVerificationError(f"{file.name} does not match its manifest's sha256: corrupt or altered")
    checks.append("sha256 matches")
    checks.append(check_archive(file, manifest.format, manifest.row_counts, pgtools.major_of(manifest.pg_dump_version)))
    return manifest, checks


def _deep_check(db: Any, file: Path, manifest: Manifest, provider: str, say: Progress) -> str:
    base = pgtools.target_for(db, provider, "deep verify")
    scratch = f"af_verify_{secrets.token_hex(4)}"
    tool_name = "pg_restore" if manifest.format == "custom" else "psql"
    tool = pgtools.pick_tool(tool_name, pgtools.major_of(manifest.pg_dump_version), ssl=base.needs_ssl)
    with base.connect(purpose="verify") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(scratch)))
        try:
            target = base.with_dbname(scratch)
            try:
                pgtools.apply_archive(tool, file, manifest.format, target, clean=False, progress=say)
            except BackupError as exc:
                raise BackupVerificationError(f"{file.name} could not be restored into a scratch database: {exc}"
                                              ) from None
            with target.connect(purpose="verify") as conn:
                counts = pgtools.table_row_counts(conn, manifest.row_counts)
            diff = {t: (n, counts.get(t)) for t, n in manifest.row_counts.items() if counts.get(t) != n}
            if diff:
                detail = ", ".join(f"{t}: manifest {a}, restored {b}" for t, (a, b) in sorted(diff.items()))
                raise BackupVerificationError(f"{file.name}: row counts differ after restore: {detail}")
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    logger.info("provider %s: deep verification of %s passed in scratch database %s", provider, file, scratch)
    return scratch


def newest_backup(state: StateStore, provider: str) -> BackupRecord | None:
    """Return a provider's newest verified backup whose file still exists (for restore defaults and monitors)."""
    for record in BackupCatalog(state).entries(provider):
        if record.verified and os.path.isfile(record.path):
            return record
    return None


def age_text(seconds: float) -> str:
    """Return an age such as "3 min", "5 h" or "2 d"."""
    delta = timedelta(seconds=max(seconds, 0))
    if delta < timedelta(hours=1):
        return f"{int(delta.total_seconds() // 60)} min"
    if delta < timedelta(days=2):
        return f"{int(delta.total_seconds() // 3600)} h"
    return f"{delta.days} d"
