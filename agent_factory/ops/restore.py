"""Restore a backup into a provider, verified before and after.

Order of work, each step stopping the restore before the target is touched:

1. the target provider is resolved (unknown name: `ConfigError`);
2. the file and its manifest are copied into a private directory under the
   state dir, and the copy is what is checked and loaded: a file swapped or
   rewritten after the check changes nothing (`checked_copy`). The copy is checked
   (`check_file`: exists, regular file, manifest and its
   signature, size, archive HMAC, sha256, readable archive, and for plain
   scripts no psql meta-command); a corrupt, truncated, mis-signed,
   unknown-format, missing or directory file raises `BackupVerificationError`.
   An unsigned backup needs `allow_unsigned=True` *and* a passed deep
   verification of this very file (same sha256) in the catalog
   (`UnsignedBackupError` otherwise);
3. a backup of another provider needs `yes=True` (`ConfirmationRequiredError`);
   the CLI asks on a terminal and refuses elsewhere;
4. the provider's backup/restore lock is taken (`OperationLockedError`);
5. the target is inspected: server version, current row counts, other
   sessions (applications should be stopped first, runbook step 1);
   dry run (`check=True`) stops here and returns the plan, having changed nothing;
6. a pre-restore backup of the target (custom format, purpose "pre-restore");
7. custom: `pg_restore --clean --if-exists --no-owner --no-privileges
   --single-transaction`; plain: `psql -v ON_ERROR_STOP=1 --single-transaction`
   (plain backups carry their own DROP ... IF EXISTS). Any error rolls back the
   whole load: the target is left as it was. Schemas and extensions the target
   already has are kept as they are (see `pgtools`); objects of the target that
   are not in the backup are left in place; a target without pgvector skips the
   archive's pgvector-only tables (a warning names them and their row counts);
8. row counts of every table in the manifest are compared, then the
   deployment check (`agent_factory.ops.verify.verify`) runs; the duration from
   start to end is the RTO. A row count mismatch gives status "mismatch" (`ok`
   false), with the pre-restore backup named for a rollback; a failing deployment
   check is reported (`verify_ok`, `verify_summary`) and warned about, since it
   may concern another provider.

Every real restore is recorded in the state store (`restores` table).
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import BackupError, BackupVerificationError, ConfirmationRequiredError, UnsignedBackupError
from ..state.backups import BackupCatalog, RestoreRecord, RestoreState
from ..state.store import utcnow
from ..vector import missing_message
from . import pgtools
from .backup import backup_locked
from .catalog import checked_copy
from .locks import operation_lock
from .manifest import SigningKeys
from .pgtools import Progress
from .verify import verify

if TYPE_CHECKING:
    from ..core import DatabaseManager

logger = logging.getLogger(__name__)

# A dry run shows the load's options as `pgtools.load_args` builds them, with these in place of the connection
# string and of the entry list written at run time.
PLAN_TARGET = "<target>"
PLAN_LIST = "<filtered entries>"

RestoreOutcome = Literal["planned", "ok", "mismatch"]


@dataclass(kw_only=True)
class RestoreResult:
    """The outcome (or, for a dry run, the plan) of one restore."""

    provider: str
    backup_path: Path
    backup_provider: str
    changed: bool
    status: RestoreOutcome
    host: str
    actions: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pre_restore_backup: Path | None = None
    row_counts_before: dict[str, int | None] = field(default_factory=dict)
    row_counts_after: dict[str, int | None] = field(default_factory=dict)
    expected_row_counts: dict[str, int] = field(default_factory=dict)
    mismatches: dict[str, list[int | None]] = field(default_factory=dict)
    verify_ok: bool | None = None
    verify_summary: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    restore_s: float | None = None
    duration_s: float | None = None  # the RTO: validation, pre-restore backup, restore and checks

    @property
    def ok(self) -> bool:
        """Whether the restore succeeded with matching row counts (or, for a dry run, could run)."""
        return self.status in ("ok", "planned")


def restore(
    db: DatabaseManager,
    provider: str | None,
    backup_file: str | Path,
    *,
    check: bool = False,
    yes: bool = False,
    backup_dir: str | Path = "backups",
    progress: Progress | None = None,
    allow_unsigned: bool = False,
) -> RestoreResult:
    """Restore `backup_file` into `provider` (default: the provider the backup was made from).

    Raises `ConfigError` (unknown provider, no BACKUP_SIGNING_KEY), `BackupVerificationError` (bad, unsigned
    or mis-signed file; see step 2),
    `ConfirmationRequiredError` (another provider's backup without `yes`),
    `OperationLockedError`, `ToolNotFoundError`, `ProviderUnavailableError`, or
    `BackupError` when the pre-restore backup or the load fails (the load is one
    transaction: the target is unchanged). A row count mismatch is returned, not raised.
    """
    with ExitStack() as stack:
        return _restore(db, provider, Path(backup_file), stack, check=check, yes=yes, backup_dir=backup_dir,
                        progress=progress, allow_unsigned=allow_unsigned)


def _restore(db: DatabaseManager, provider: str | None, file: Path, stack: ExitStack, *, check: bool, yes: bool,
             backup_dir: str | Path, progress: Progress | None, allow_unsigned: bool) -> RestoreResult:
    """Run `restore`; the private copy of the backup lives as long as `stack`."""
    t0 = time.monotonic()
    started = utcnow()
    say = progress or (lambda _msg: None)
    target = pgtools.target_for(db, provider, "restore") if provider else None
    catalog = BackupCatalog(db.state)
    try:
        checked, local = stack.enter_context(checked_copy(
            file, SigningKeys.from_config(db.config), workdir=Path(db.config.state_dir), allow_unsigned=allow_unsigned))
        if not checked.signed:
            _require_deep_verify(catalog, file, checked.sha256)
    except UnsignedBackupError as exc:
        raise UnsignedBackupError(f"refusing to restore: {exc}") from None
    except BackupVerificationError as exc:
        if not check:
            catalog.mark_verify_failed(file, str(exc))
        raise BackupVerificationError(f"refusing to restore: {exc}") from None
    manifest, checks = checked.manifest, checked.checks
    if target is None:
        target = pgtools.target_for(db, manifest.provider, "restore")
    name = target.provider
    result = RestoreResult(provider=name, backup_path=file, backup_provider=manifest.provider, changed=False,
                           status="planned", host=target.host, checks=checks,
                           expected_row_counts=dict(manifest.row_counts), started_at=started)
    if manifest.provider != name:
        warning = (f"{file.name} is a backup of provider {manifest.provider}, not {name}: "
                   f"{name}'s data will be replaced by {manifest.provider}'s")
        if not yes and not check:
            raise ConfirmationRequiredError(f"{warning}; confirm with --yes (yes=True)")
        result.warnings.append(warning)

    with operation_lock(target, db.config.state_dir, "restore"):
        with target.connect(purpose="restore") as conn:
            num, version = pgtools.server_version(conn)
            result.row_counts_before = pgtools.table_row_counts(conn, manifest.row_counts)
            others = conn.execute(
                "SELECT count(*), string_agg(DISTINCT coalesce(nullif(application_name, ''), '?'), ', ') "
                "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend' AND application_name NOT LIKE 'agent-factory % lock %'"
            ).fetchone()
        tool = pgtools.pick_tool("pg_restore" if manifest.format == "custom" else "psql",
                                 pgtools.major_of(manifest.pg_dump_version), ssl=target.needs_ssl)
        if manifest.server_version_num // 10000 > num // 10000:
            result.warnings.append(
                f"the backup comes from PostgreSQL {manifest.server_version}, newer than the target's {version}; "
                "if it uses newer features the restore fails and is rolled back")
        if others and others[0]:
            result.warnings.append(
                f"{others[0]} other session(s) are connected to {target.host} ({others[1]}); stop applications "
                "first: the restore waits for their locks")
        result.actions = [
            f"take a pre-restore backup of {name} into {backup_dir}",
            f"{tool.name} {tool.version} "
            + " ".join(pgtools.load_args(manifest.format, PLAN_TARGET, clean=True, use_list=PLAN_LIST))
            + f" {file.name} into {target.host} (PostgreSQL {version})",
            f"compare row counts of {len(manifest.row_counts)} tables with the manifest "
            f"({sum(manifest.row_counts.values())} rows)",
            "run the deployment check (agent-factory verify)",
        ]
        if check:
            result.duration_s = round(time.monotonic() - t0, 3)
            return result

        say(f"{name}: taking a pre-restore backup")
        pre = backup_locked(db, target, fmt="custom", backup_dir=Path(backup_dir), check=False,
                            purpose="pre-restore", progress=progress)
        result.pre_restore_backup = pre.path
        say(f"{name}: restoring {file.name} into {target.host}")
        t_restore = time.monotonic()
        try:
            result.skipped = pgtools.apply_archive(tool, local, manifest.format, target, clean=True, progress=say)
        except BackupError as exc:
            error = (f"provider {name}: restore of {file.name} failed and was rolled back, the target is unchanged "
                     f"(pre-restore backup: {pre.path}): {exc}")
            _record(catalog, result, "failed", t0, error)
            logger.error("%s", error)
            raise BackupError(error) from None
        result.restore_s = round(time.monotonic() - t_restore, 3)
        result.changed = True
        with target.connect(purpose="restore") as conn:
            result.row_counts_after = pgtools.table_row_counts(conn, manifest.row_counts)
    # A target without pgvector skipped the pgvector-only tables (pgtools): said, not a mismatch.
    left_out = pgtools.vector_tables_left_out(manifest.row_counts, result.row_counts_after)
    if left_out:
        result.warnings.append(f"{missing_message(name)}; not restored: "
                               + ", ".join(f"{t} ({n} row(s))" for t, n in left_out.items()))
    result.mismatches = pgtools.count_mismatches(manifest.row_counts, result.row_counts_after)
    result.status = "mismatch" if result.mismatches else "ok"
    say(f"{name}: running the deployment check")
    report = verify(db)
    result.verify_ok, result.verify_summary = report.ok, report.summary
    if not report.ok:
        result.warnings.append(f"deployment check after the restore: {report.summary}")
    _record(catalog, result, result.status, t0, None)
    logger.info("provider %s: restored %s in %.1f s (status %s)", name, file, result.duration_s or 0, result.status)
    return result


def _require_deep_verify(catalog: BackupCatalog, file: Path, sha256: str) -> None:
    """Raise `UnsignedBackupError` unless this very file (same sha256) passed a deep verification here."""
    record = catalog.get(file)
    if record is None or not record.verified or record.verify_depth != "deep" or record.sha256 != sha256:
        raise UnsignedBackupError(
            f"{file.name} is unsigned and has not passed a deep verification here as it is now; run "
            f"`agent-factory backups verify --deep --allow-unsigned {file}` first")


def _record(catalog: BackupCatalog, result: RestoreResult, status: RestoreState, t0: float, error: str | None) -> None:
    result.finished_at = utcnow()
    result.duration_s = round(time.monotonic() - t0, 3)
    catalog.record_restore(RestoreRecord(
        provider=result.provider, backup_path=str(result.backup_path.absolute()),
        backup_provider=result.backup_provider, started_at=result.started_at or result.finished_at,
        finished_at=result.finished_at, duration_s=result.duration_s, status=status,
        pre_restore_backup=str(result.pre_restore_backup) if result.pre_restore_backup else None, error=error,
    ))
