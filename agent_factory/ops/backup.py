"""Back up one provider, or all of them, with pg_dump and a manifest beside each file.

Decisions:

- Files: `<dir>/<provider>-<YYYY-MM-DD>T<HHMMSS>Z.dump` (custom format,
  compressed, read by `pg_restore`) or `.sql` (plain, `--clean --if-exists`,
  uncompressed so any `psql` can replay it and people can read it). A second
  backup within the same second gets `-2`, `-3`... Both formats use
  `--no-owner --no-privileges`, so they restore as any role that may create
  the objects, and `--no-comments` (the schema has none; an extension's comment,
  pgvector's, may only be set by the extension's owner, which would fail a
  restore by the application role into a database where the platform installed it), and
  `--no-publications --no-subscriptions` (streams belong to the servers: docs/CONTINUITY.md). Files and
  manifests are mode 0600, the directory 0700 when created.
- Atomicity: pg_dump writes to a hidden `.<name>.partial-<pid>` file created
  0600; after it succeeds the file is fsynced, hashed and checked (custom:
  `pg_restore --list`; plain: the "dump complete" trailer), the manifest is
  renamed into place, then the dump, then the directory is fsynced. A failed or
  interrupted backup removes its partial files: no file that looks complete is left.
  What a SIGKILLed run could not remove (its partial files and passfile
  directory, named with its pid) is removed by the next backup (see `leftovers`).
- Consistency: a REPEATABLE READ transaction exports its snapshot
  (`pg_export_snapshot()`), pg_dump runs with `--snapshot=`, and the per-table
  row counts of the manifest are counted in that same snapshot while pg_dump runs.
- pg_dump is the newest found whose major is >= the server's
  (`server_version_num`); none fits: `ToolNotFoundError` before anything is written.
- Manifest `<file>.manifest.json` (format and signature: `manifest`): provider,
  host (`host:port/dbname`, no credentials), database, server and pg_dump
  versions, format, size, sha256, start/end/duration, row counts, status,
  purpose, `verified_at`/`verify_depth`, and its HMAC signature. A fresh backup
  is recorded as verified at depth "quick" (its checksum and archive listing
  were checked from the finished file).
- Signing: no BACKUP_SIGNING_KEY, no backup (`ConfigError` before anything is
  written, dry runs included). Generating a key here would sign with a key that
  the restoring host does not have, and lose it with the host; `agent-factory
  local up` writes one into `.env`, and production keeps it in its secret store.
- Catalog: every attempt goes into the state store (`backups` table); a failure
  is recorded with status "failed" and its error, for the monitor to alert on.
- `backup()` for one provider raises on failure; with `all_providers=True` it
  goes on to the next provider and reports each failure in that provider's result.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psycopg

from ..core.sqlstate import describe
from ..errors import AgentFactoryError, BackupError, BackupVerificationError, ConfigError, ProviderUnavailableError
from ..state.backups import BackupCatalog, BackupRecord
from ..state.store import utcnow
from . import leftovers, pgtools, plainsql
from .locks import operation_lock
from .manifest import (MANIFEST_SUFFIX, MANIFEST_VERSION, Manifest, SigningKeys, digests, manifest_path, read_manifest,
                       sha256_of, sign, write_manifest)
from .pgtools import FORMATS, PgTarget, Progress

if TYPE_CHECKING:
    from ..core import DatabaseManager

__all__ = ["EXTENSIONS", "MANIFEST_SUFFIX", "MANIFEST_VERSION", "BackupResult", "Manifest", "backup",
           "backup_locked", "backup_provider", "check_archive", "manifest_path", "read_manifest", "sha256_of",
           "write_manifest"]

logger = logging.getLogger(__name__)

EXTENSIONS = {"custom": ".dump", "plain": ".sql"}
_PLAIN_HEADER = b"-- PostgreSQL database dump"
_PLAIN_TRAILER = b"-- PostgreSQL database dump complete"
_CUSTOM_MAGIC = b"PGDMP"

BackupOutcome = Literal["ok", "failed", "planned"]


@dataclass(kw_only=True)
class BackupResult:
    """The outcome (or, in check mode, the plan) of backing up one provider."""

    provider: str
    changed: bool
    status: BackupOutcome
    path: Path | None
    format: str
    actions: list[str] = field(default_factory=list)
    manifest_path: Path | None = None
    host: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    row_counts: dict[str, int] = field(default_factory=dict)
    server_version: str | None = None
    pg_dump_version: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the backup was made (or, in check mode, could be)."""
        return self.status in ("ok", "planned")


def check_archive(path: Path, fmt: str, expected_tables: dict[str, int] | None = None,
                  pg_dump_major: int | None = None) -> str:
    """Check that a finished file is a readable archive of `fmt`; return a one-line description.

    Custom: the PGDMP header and `pg_restore --list`, with a data entry for every
    non-empty table of `expected_tables`. Plain: pg_dump's header, its
    "dump complete" trailer and no psql meta-command (`plainsql`). Raises `BackupVerificationError`.
    """
    with open(path, "rb") as fh:
        head = fh.read(4096)
        fh.seek(max(0, path.stat().st_size - 4096))
        tail = fh.read()
    if fmt == "plain":
        if _PLAIN_HEADER not in head:
            raise BackupVerificationError(f"{path.name} is not a plain pg_dump script (no pg_dump header)")
        if _PLAIN_TRAILER not in tail:
            raise BackupVerificationError(f"{path.name} is truncated: pg_dump's 'dump complete' trailer is missing")
        lines = plainsql.check_script(path)
        return f"plain script with pg_dump header and trailer, {lines} lines, no psql meta-commands"
    if not head.startswith(_CUSTOM_MAGIC):
        raise BackupVerificationError(f"{path.name} is not a pg_dump custom archive (unknown format)")
    tool = pgtools.pick_tool("pg_restore", pg_dump_major)
    try:
        listing = pgtools.run_tool(tool, ["--list", str(path)], label=path.name)
    except BackupError as exc:
        raise BackupVerificationError(f"{path.name} is unreadable by pg_restore: {exc}") from None
    data = {" ".join(ln.split()[5:7]) for ln in listing.splitlines() if " TABLE DATA " in ln}
    missing = [t for t, n in (expected_tables or {}).items() if n and " ".join(t.split(".", 1)) not in data]
    if missing:
        raise BackupVerificationError(f"{path.name} has no data for tables {', '.join(missing)}")
    entries = sum(1 for ln in listing.splitlines() if ln and not ln.startswith(";"))
    return f"custom archive, {entries} entries listed by pg_restore {tool.version}"


def backup(
    db: DatabaseManager,
    provider: str | None = None,
    *,
    all_providers: bool = False,
    fmt: str = "custom",
    backup_dir: str | Path = "backups",
    check: bool = False,
    progress: Progress | None = None,
) -> list[BackupResult]:
    """Back up `provider` (default: the primary), or every provider with `all_providers`.

    `check=True` connects and chooses pg_dump but writes nothing: the results
    list the planned actions. One provider: raises `ConfigError` (unknown name,
    bad format), `ToolNotFoundError`, `ProviderUnavailableError`,
    `OperationLockedError` or `BackupError`. All providers: each failure is in its result.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown backup format {fmt!r}; use one of: {', '.join(FORMATS)}")
    if all_providers and provider:
        raise ConfigError("give either a provider or all_providers, not both")
    if not all_providers:
        return [backup_provider(db, provider or db.primary_provider, fmt=fmt, backup_dir=backup_dir,
                                check=check, progress=progress)]
    results = []
    for name in db.providers:
        try:
            results.append(backup_provider(db, name, fmt=fmt, backup_dir=backup_dir, check=check,
                                           progress=progress))
        except AgentFactoryError as exc:
            logger.warning("provider %s: no backup made (%s); going on with the next provider", name, exc)
            results.append(BackupResult(provider=name, changed=False, status="failed", path=None, format=fmt,
                                        error=str(exc)))
    return results


def backup_provider(
    db: DatabaseManager,
    provider: str,
    *,
    fmt: str = "custom",
    backup_dir: str | Path = "backups",
    check: bool = False,
    purpose: str = "manual",
    progress: Progress | None = None,
) -> BackupResult:
    """Back up one provider under its backup/restore lock; see `backup` for what it raises."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown backup format {fmt!r}; use one of: {', '.join(FORMATS)}")
    SigningKeys.from_config(db.config).require("backup")
    target = pgtools.target_for(db, provider, "backup")
    with ExitStack() as stack:
        started = utcnow()
        try:
            stack.enter_context(operation_lock(target, db.config.state_dir, "backup"))
        except ProviderUnavailableError as exc:
            if not check:  # a provider down at backup time is a failed backup, for the monitor to see
                _record_failure(db, target, _free_name(Path(backup_dir), provider, started, fmt), fmt, started,
                                purpose, 0.0, str(exc))
            raise
        return backup_locked(db, target, fmt=fmt, backup_dir=Path(backup_dir), check=check, purpose=purpose,
                             progress=progress)


def backup_locked(
    db: DatabaseManager,
    target: PgTarget,
    *,
    fmt: str,
    backup_dir: Path,
    check: bool,
    purpose: str,
    progress: Progress | None,
) -> BackupResult:
    """Back up `target`; the caller holds its operation lock (restore uses this for its pre-restore backup)."""
    catalog = BackupCatalog(db.state)
    key = SigningKeys.from_config(db.config).require("backup")
    say = progress or (lambda _msg: None)
    started = utcnow()
    t0 = time.monotonic()
    path = _free_name(backup_dir, target.provider, started, fmt)
    result = BackupResult(provider=target.provider, changed=False, status="planned", path=path, format=fmt,
                          host=target.host, started_at=started, manifest_path=manifest_path(path))
    try:
        swept = leftovers.sweep(backup_dir, check=check)
        with target.connect(autocommit=True, purpose="backup") as conn:
            num, version = pgtools.server_version(conn)
            tool = pgtools.pick_tool("pg_dump", num // 10000, ssl=target.needs_ssl)
            result.server_version, result.pg_dump_version = version, tool.version
            args = _dump_args(target, fmt)
            shown = " ".join(a for a in args if not a.startswith("--dbname="))
            result.actions = [
                f"pg_dump {tool.version} {shown} --snapshot=<exported> --file={path.name} "
                f"(server {target.host}, PostgreSQL {version})",
                "count rows of every table in the same snapshot",
                f"write {path} and {manifest_path(path).name} (mode 0600), signed with BACKUP_SIGNING_KEY",
                "record the backup in the state store catalog",
                *swept,
            ]
            if check:
                return result
            say(f"{target.provider}: backing up {target.host} with pg_dump {tool.version} to {path}")
            _dump(conn, tool, target, fmt, args, path, result, purpose, say, key)
    except BaseException as exc:
        if check or not isinstance(exc, (AgentFactoryError, psycopg.Error, KeyboardInterrupt)):
            raise
        interrupted = isinstance(exc, KeyboardInterrupt)
        if interrupted:
            error = f"interrupted ({exc or 'SIGINT'}); partial files removed"
        else:
            error = str(exc) if isinstance(exc, AgentFactoryError) else describe(exc, target.password)
        _record_failure(db, target, path, fmt, started, purpose, time.monotonic() - t0, error,
                        level=logging.INFO if interrupted else logging.ERROR)  # the caller reports an interruption
        if isinstance(exc, psycopg.Error):
            raise BackupError(f"provider {target.provider}: backup failed: {error}") from None
        raise
    result.duration_s = round(time.monotonic() - t0, 3)
    catalog.record(BackupRecord(
        provider=target.provider, path=str(path.absolute()), format=fmt, status="ok", started_at=started,
        purpose=purpose, finished_at=result.finished_at,
        duration_s=result.duration_s, size_bytes=result.size_bytes, sha256=result.sha256, host=target.host,
        server_version=result.server_version, pg_dump_version=result.pg_dump_version, row_counts=result.row_counts,
        verified_at=result.finished_at, verify_depth="quick", signed=True,
    ))
    logger.info("provider %s: backup written to %s (%d bytes, %.1f s)", target.provider, path,
                result.size_bytes or 0, result.duration_s)
    return result


def _record_failure(db: DatabaseManager, target: PgTarget, path: Path, fmt: str, started: datetime, purpose: str,
                    duration: float, error: str, level: int = logging.ERROR) -> None:
    BackupCatalog(db.state).record(BackupRecord(
        provider=target.provider, path=str(path.absolute()), format=fmt, status="failed", started_at=started,
        purpose=purpose, finished_at=utcnow(),
        duration_s=round(duration, 3), host=target.host, error=error[:1000]))
    logger.log(level, "provider %s: backup failed: %s", target.provider, error)


def _dump_args(target: PgTarget, fmt: str) -> list[str]:
    # Streams' publications and subscriptions belong to the servers, not the data: never in a backup.
    args = [f"--dbname={target.conninfo}", "--no-owner", "--no-privileges", "--no-comments", "--no-publications",
            "--no-subscriptions", "--lock-wait-timeout=60000"]
    return args + (["--format=custom", "--compress=6"] if fmt == "custom" else ["--format=plain", "--clean",
                                                                               "--if-exists"])


def _dump(conn: psycopg.Connection[Any], tool: pgtools.Tool, target: PgTarget, fmt: str, args: list[str],
          path: Path, result: BackupResult, purpose: str, say: Progress, key: bytes) -> None:
    """Run pg_dump in an exported snapshot, count rows in it, then put the file and manifest in place."""
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    if created:
        path.parent.chmod(0o700)
    tmp = leftovers.partial_path(path)
    tmp_manifest = leftovers.partial_path(manifest_path(path))
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        conn.execute("SET idle_in_transaction_session_timeout = 0")
        conn.autocommit = False
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot_row = conn.execute("SELECT pg_export_snapshot(), pg_encoding_to_char(encoding) "
                                    "FROM pg_database WHERE datname = current_database()").fetchone()
        assert snapshot_row is not None
        snapshot, encoding = snapshot_row
        counts: dict[str, int | None] = {}

        def count_rows() -> None:
            say(f"{target.provider}: counting rows in the dump's snapshot")
            counts.update(pgtools.table_row_counts(conn))

        pgtools.run_tool(tool, [*args, f"--snapshot={snapshot}", f"--file={tmp}"], target, watch=tmp,
                         progress=say, label=f"provider {target.provider}", during=count_rows)
        conn.rollback()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        finished = utcnow()
        result.row_counts = {k: v for k, v in counts.items() if v is not None}
        result.size_bytes = tmp.stat().st_size
        result.sha256, archive_hmac = digests(tmp, key)
        check_archive(tmp, fmt, result.row_counts, tool.major)
        result.finished_at = finished
        started = result.started_at or finished
        manifest = Manifest(
            provider=target.provider, host=target.host, database=target.dbname, format=fmt, file=path.name,
            size_bytes=result.size_bytes, sha256=result.sha256, server_version=result.server_version or "",
            server_version_num=conn.info.server_version, pg_dump_version=tool.version,
            started_at=started.isoformat(), finished_at=finished.isoformat(),
            duration_s=round((finished - started).total_seconds(), 3), row_counts=result.row_counts,
            purpose=purpose, encoding=str(encoding), compression="gzip" if fmt == "custom" else "none",
            verified_at=finished.isoformat(), verify_depth="quick",
        )
        write_manifest(sign(manifest, key, archive_hmac), tmp_manifest)
        os.replace(tmp_manifest, manifest_path(path))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        tmp_manifest.unlink(missing_ok=True)
        if not path.exists():
            manifest_path(path).unlink(missing_ok=True)
        raise
    result.changed = True
    result.status = "ok"


def _free_name(backup_dir: Path, provider: str, at: datetime, fmt: str) -> Path:
    stem = f"{provider}-{at:%Y-%m-%dT%H%M%SZ}"
    ext = EXTENSIONS[fmt]
    path = backup_dir / f"{stem}{ext}"
    n = 2
    while path.exists() or manifest_path(path).exists():
        path = backup_dir / f"{stem}-{n}{ext}"
        n += 1
    return path


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
