"""The backups on hand: list them (with their trust) and verify one.

- `list_backups` reads the state store catalog, newest first per provider, with
  age, verified state, whether the file is still there and whether its
  manifest's signature checks now (`trust`). Given a directory it first adopts
  manifests found there that the catalog does not know (backups copied from
  another host, or made with another state dir): signed ones with their
  recorded verification, unsigned ones as unverified; a bad signature, a future
  `started_at`, a symbolic link or a malformed manifest is refused and listed
  as "invalid" (docs/BACKUPS.md).
- `verify_backup` checks, in order: the file exists and is a regular file, its
  manifest and signature (unsigned: only with `allow_unsigned`), size, archive
  HMAC, sha256, and that it is a readable archive (custom: `pg_restore --list`;
  plain: pg_dump's header and "dump complete" trailer, no psql meta-command).
  With `deep=True` it creates a scratch database `af_verify_<random>` on the
  backup's provider (or `target`) with the app role's CREATEDB, loads the backup
  into it in one transaction, compares every table's row count with the
  manifest and drops the database, whatever happens. A pass records
  `verified_at`/`verify_depth` in the manifest and the catalog; a failure is
  recorded in the catalog and raised as `BackupVerificationError`.
- Retention (`prune_backups`) lives in `prune`.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg import sql

from ..errors import BackupError, BackupVerificationError, UnsignedBackupError
from ..state.backups import BackupCatalog, BackupRecord
from ..state.store import StateStore, utcnow
from . import pgtools
from .backup import check_archive
from .manifest import (MANIFEST_SUFFIX, Manifest, SigningKeys, archive_problem, digests, key_id_of, manifest_path,
                       parse_time, read_manifest_raw, sha256_of, sign, signature_problem, write_manifest)
from .pgtools import Progress

if TYPE_CHECKING:
    from ..core import DatabaseManager

logger = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(minutes=5)  # how far in the future a started_at may be (clocks differ between hosts)


@dataclass
class BackupEntry:
    """One backup as listed: the catalog record, its age, whether the file exists and whether it is trusted.

    `trust`: "signed" (its manifest's signature checks), "unsigned", "untrusted"
    (a bad or unknown signature, or a manifest that no longer matches the catalog)
    or "invalid" (a manifest found in the directory that could not be read or was refused).
    """

    record: BackupRecord
    age_s: float
    exists: bool
    trust: str = "signed"
    problem: str | None = None

    @property
    def state(self) -> str:
        """One word: missing, invalid, untrusted, corrupt, unsigned, verified-deep, verified or unverified."""
        if self.trust == "invalid":
            return "invalid"
        if not self.exists:
            return "missing"
        if self.trust == "untrusted":
            return "untrusted"
        if self.record.verify_error:
            return "corrupt"
        if self.trust == "unsigned":
            return "unsigned"
        if self.record.verified:
            return "verified-deep" if self.record.verify_depth == "deep" else "verified"
        return "unverified"

    @property
    def trusted(self) -> bool:
        """Whether the backup may count: its file exists and its manifest's signature checks."""
        return self.exists and self.trust == "signed"


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


def adopt_directory(state: StateStore, backup_dir: str | Path, keys: SigningKeys | None = None, *,
                    now: datetime | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Add to the catalog the backups in `backup_dir` whose manifest it does not know.

    Returns (adopted files, refused files with the reason). A manifest whose
    signature checks is adopted with its recorded verification; an unsigned one
    as unverified and unsigned; a bad signature, a future `started_at`, a
    malformed manifest, a symbolic link or a manifest naming another file is refused.
    """
    catalog = BackupCatalog(state)
    keys = keys or SigningKeys()
    now = now or utcnow()
    directory = Path(backup_dir)
    if not directory.is_dir():
        return [], []
    known = {r.path for r in catalog.entries(statuses=("ok", "pruned"))}
    adopted, refused = [], []
    for mpath in sorted(directory.glob("*" + MANIFEST_SUFFIX)):
        data = mpath.with_name(mpath.name[: -len(MANIFEST_SUFFIX)])
        if mpath.name.startswith(".") or str(data.absolute()) in known:
            continue
        try:
            manifest, signed = _adoptable(data, keys, now)
        except BackupVerificationError as exc:
            logger.warning("not adopting %s: %s", data, exc)
            refused.append((data, str(exc)))
            continue
        catalog.record(_record_from_manifest(manifest, data, signed))
        adopted.append(data)
    return adopted, refused


def _adoptable(data: Path, keys: SigningKeys, now: datetime) -> tuple[Manifest, bool]:
    """Return a manifest found in a directory and whether it is signed; raise `BackupVerificationError` if refused."""
    if data.is_symlink() or manifest_path(data).is_symlink():
        raise BackupVerificationError(f"{data.name} or its manifest is a symbolic link")
    if not data.is_file():
        raise BackupVerificationError(f"{manifest_path(data).name} has no backup file {data.name} beside it")
    manifest, raw = read_manifest_raw(data)
    if manifest.file != data.name:
        raise BackupVerificationError(f"manifest {manifest_path(data).name} describes another file ({manifest.file!r})")
    _check_times(manifest, data, now)
    problem = signature_problem(manifest, keys, raw)
    if problem and manifest.signed:
        raise BackupVerificationError(f"manifest of {data.name}: {problem}")
    return manifest, problem is None


def _check_times(manifest: Manifest, data: Path, now: datetime) -> None:
    started = parse_time(manifest.started_at)
    if started > now + CLOCK_SKEW:
        raise BackupVerificationError(f"manifest of {data.name}: started_at {manifest.started_at} is in the future")


def _record_from_manifest(m: Manifest, data: Path, signed: bool) -> BackupRecord:
    """Return a catalog row for a manifest; an unsigned manifest's claims of verification are not taken."""
    verified_at = parse_time(m.verified_at) if signed and m.verified_at else None
    return BackupRecord(
        provider=m.provider, path=str(data.absolute()), format=m.format, status="ok",
        started_at=parse_time(m.started_at), purpose=m.purpose,
        finished_at=parse_time(m.finished_at), duration_s=m.duration_s, size_bytes=m.size_bytes,
        sha256=m.sha256, host=m.host, server_version=m.server_version, pg_dump_version=m.pg_dump_version,
        row_counts=m.row_counts, verified_at=verified_at, verify_depth=m.verify_depth if verified_at else None,
        signed=signed,
    )


def list_backups(
    state: StateStore,
    provider: str | None = None,
    backup_dir: str | Path | None = None,
    *,
    now: datetime | None = None,
    keys: SigningKeys | None = None,
) -> list[BackupEntry]:
    """Return the catalogued backups, per provider newest first, each with its trust; then refused manifests.

    Adopts `backup_dir`'s new manifests first; one that is refused is listed as
    "invalid" (with the reason in `problem`) and never enters the catalog.
    """
    keys = keys or SigningKeys()
    now = now or utcnow()
    refused: list[tuple[Path, str]] = []
    if backup_dir is not None:
        refused = adopt_directory(state, backup_dir, keys, now=now)[1]
    entries = []
    for record in BackupCatalog(state).entries(provider):
        exists = Path(record.path).is_file()
        trust, problem = _trust(record, keys) if exists else ("signed" if record.signed else "unsigned", None)
        entries.append(BackupEntry(record, (now - record.started_at).total_seconds(), exists, trust, problem))
    for data, reason in refused:
        record = BackupRecord(provider="?", path=str(data.absolute()), format="?", status="invalid", started_at=now)
        entries.append(BackupEntry(record, 0.0, data.is_file(), "invalid", reason))
    return entries


def _trust(record: BackupRecord, keys: SigningKeys) -> tuple[str, str | None]:
    """Check a catalogued backup's manifest as it is now: ("signed" | "unsigned" | "untrusted", problem)."""
    try:
        manifest, raw = read_manifest_raw(record.path)
    except BackupVerificationError as exc:
        return "untrusted", str(exc)
    if manifest.sha256 != record.sha256:
        return "untrusted", "its manifest no longer matches the catalogued backup (sha256 changed)"
    problem = signature_problem(manifest, keys, raw)
    if problem is None:
        return "signed", None
    return ("unsigned" if not manifest.signed else "untrusted"), problem


def verify_backup(
    db: DatabaseManager,
    path: str | Path,
    *,
    deep: bool = False,
    target: str | None = None,
    progress: Progress | None = None,
    allow_unsigned: bool = False,
) -> VerifyResult:
    """Verify a backup file (and with `deep`, restore it into a scratch database); record the pass.

    A signed backup's manifest is signed again with the current key (this is how
    a key rotation re-signs backups); an unsigned one (only with `allow_unsigned`)
    stays unsigned and its manifest untouched, the pass is recorded in the catalog only.
    Raises `BackupVerificationError` for a missing, directory, corrupt, truncated,
    unsigned, mis-signed or unknown-format file or a row count mismatch; `ConfigError`
    for an unknown target or no BACKUP_SIGNING_KEY; `ProviderUnavailableError`/`BackupError`
    when the deep check cannot run.
    """
    t0 = time.monotonic()
    say = progress or (lambda _msg: None)
    file = Path(path)
    catalog = BackupCatalog(db.state)
    keys = SigningKeys.from_config(db.config)
    with ExitStack() as stack:
        try:
            if deep:  # what is loaded into the scratch database is the copy that was checked
                checked, local = stack.enter_context(checked_copy(file, keys, workdir=Path(db.config.state_dir),
                                                                  allow_unsigned=allow_unsigned))
            else:
                checked, local = check_file(file, keys, allow_unsigned=allow_unsigned), file
            manifest = checked.manifest
            result = VerifyResult(file, manifest.provider, manifest.format, deep, utcnow(), checked.checks,
                                  dict(manifest.row_counts), manifest=manifest)
            if deep:
                say(f"{file.name}: restoring into a scratch database to compare row counts")
                result.scratch_database, left_out = _deep_check(db, local, manifest, target or manifest.provider,
                                                                say)
                result.checks.append(f"restored into scratch database {result.scratch_database} on "
                                     f"{target or manifest.provider}; row counts of "
                                     f"{len(manifest.row_counts) - len(left_out)} tables match the manifest; "
                                     "scratch database dropped")
                if left_out:
                    result.checks.append("not verified (the scratch database has no pgvector): "
                                         + ", ".join(f"{t} ({n} row(s))" for t, n in left_out.items()))
        except UnsignedBackupError:
            raise
        except BackupVerificationError as exc:
            catalog.mark_verify_failed(file, str(exc))
            logger.error("backup %s failed verification: %s", file, exc)
            raise
        result.verified_at = utcnow()
        result.duration_s = round(time.monotonic() - t0, 3)
        depth = "deep" if deep else "quick"
        if checked.signed:
            key = keys.require("verify")
            rotated = None if manifest.key_id == key_id_of(key) else digests(local, key)[1]  # a previous key's
            manifest = sign(replace(manifest, verified_at=result.verified_at.isoformat(), verify_depth=depth), key,
                            rotated)
            write_manifest(manifest, manifest_path(file))
        if catalog.get(file) is None:
            catalog.record(_record_from_manifest(manifest, file, checked.signed))
        catalog.mark_verified(file, result.verified_at, depth, checked.sha256, checked.signed)
        result.manifest = manifest
        return result


@contextmanager
def checked_copy(file: Path, keys: SigningKeys, *, workdir: Path,
                 allow_unsigned: bool = False) -> Iterator[tuple[CheckedFile, Path]]:
    """Copy a backup and its manifest into a private directory under `workdir`, check the copy, yield both.

    What is then loaded is the copy that was checked: the original can be
    swapped or rewritten by whoever can write the backup directory without
    effect. The copy is removed on exit. Raises what `check_file` raises.
    """
    _check_regular(file)
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Path(tempfile.mkdtemp(prefix=".checked-backup-", dir=workdir))  # mode 0700
    try:
        local = private / file.name
        shutil.copyfile(file, local)
        if manifest_path(file).is_file():
            shutil.copyfile(manifest_path(file), manifest_path(local))
        yield check_file(local, keys, allow_unsigned=allow_unsigned), local
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _check_regular(file: Path) -> None:
    if not file.exists():
        raise BackupVerificationError(f"backup file {file} does not exist")
    if file.is_dir():
        raise BackupVerificationError(f"{file} is a directory, not a backup file")
    if not file.is_file():
        raise BackupVerificationError(f"{file} is not a regular file")


@dataclass(frozen=True)
class CheckedFile:
    """A backup file that passed the quick checks: its manifest, what was checked, its sha256, whether signed."""

    manifest: Manifest
    checks: list[str]
    sha256: str
    signed: bool



def check_file(file: Path, keys: SigningKeys, *, allow_unsigned: bool = False,
               now: datetime | None = None) -> CheckedFile:
    """Run the quick checks (no database): file, manifest, signature, size, HMAC and sha256, archive.

    Raises `UnsignedBackupError` for an unsigned backup without `allow_unsigned`,
    `ConfigError` when a signed one must be checked and no key is set, and
    `BackupVerificationError` at the first other failure.
    """
    _check_regular(file)
    manifest, raw = read_manifest_raw(file)
    _check_times(manifest, file, now or utcnow())
    if manifest.signed:
        keys.require("checking a signed backup")
        problem = signature_problem(manifest, keys, raw)
        if problem:
            raise BackupVerificationError(f"manifest of {file.name}: {problem}")
    elif not allow_unsigned:
        raise UnsignedBackupError(
            f"{file.name} is unsigned (made before backups were signed, or not by agent-factory): refusing it; "
            "if you trust where it came from, pass --allow-unsigned (allow_unsigned) to verify it deep, "
            "then to restore it")
    checks = [f"manifest {manifest_path(file).name}: provider {manifest.provider}, format {manifest.format}, "
              + (f"signature checks (key id {manifest.key_id})" if manifest.signed else "UNSIGNED (allowed)")]
    size = file.stat().st_size
    if size != manifest.size_bytes:
        raise BackupVerificationError(
            f"{file.name} is {size} bytes but its manifest says {manifest.size_bytes}: truncated or altered"
        )
    checks.append(f"size {size} bytes matches")
    if manifest.signed:
        problem, digest = archive_problem(file, manifest, keys)
        if problem:
            raise BackupVerificationError(problem)
        checks.append("archive HMAC matches the signed manifest")
    else:
        digest = sha256_of(file)
    if digest != manifest.sha256:
        raise BackupVerificationError(f"{file.name} does not match its manifest's sha256: corrupt or altered")
    checks.append("sha256 matches")
    checks.append(check_archive(file, manifest.format, manifest.row_counts, pgtools.major_of(manifest.pg_dump_version)))
    return CheckedFile(manifest, checks, digest, manifest.signed)


def _deep_check(db: DatabaseManager, file: Path, manifest: Manifest, provider: str,
                say: Progress) -> tuple[str, dict[str, int]]:
    """Restore into a scratch database and compare row counts; return its name and the vector tables left out.

    The scratch database is made by the application role, which may not be allowed to
    create pgvector there: the archive's pgvector-only tables are then skipped and
    listed, not counted as a mismatch.
    """
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
            left_out = pgtools.vector_tables_left_out(manifest.row_counts, counts)
            diff = pgtools.count_mismatches(manifest.row_counts, counts)
            if diff:
                detail = ", ".join(f"{t}: manifest {a}, restored {b}" for t, (a, b) in sorted(diff.items()))
                raise BackupVerificationError(f"{file.name}: row counts differ after restore: {detail}")
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    logger.info("provider %s: deep verification of %s passed in scratch database %s", provider, file, scratch)
    return scratch, left_out


def newest_backup(state: StateStore, provider: str) -> BackupRecord | None:
    """Return a provider's newest signed, verified backup whose file still exists (restore defaults, monitors)."""
    for record in BackupCatalog(state).entries(provider):
        if record.signed and record.verified and os.path.isfile(record.path):
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
