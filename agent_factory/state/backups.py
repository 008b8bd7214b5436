"""The backup catalog in the state store: every backup attempt and every restore.

A row per attempt: `status` is "ok" (the file was written and checked),
"failed" (nothing usable was left; `error` says why) or "pruned" (deleted by
retention, `deleted_at` set). `signed` says whether the manifest's signature
checked when the row was written (backups made here, signed manifests adopted);
only signed rows count as good backups. Paths are absolute. No credentials are stored:
hosts are `host:port/dbname` and errors are scrubbed before they get here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from .schema import user_version
from .store import StateStore, utcnow

_COLUMNS = ("id", "provider", "path", "format", "purpose", "status", "started_at", "finished_at", "duration_s",
            "size_bytes", "sha256", "host", "server_version", "pg_dump_version", "row_counts", "verified_at",
            "verify_depth", "verify_error", "error", "deleted_at", "signed")


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None

BackupState = Literal["ok", "failed", "pruned", "invalid"]
"""A catalog row's status ("invalid" only in listings: a file in a backup directory that is no usable backup)."""
RestoreState = Literal["ok", "mismatch", "failed"]
"""How a restore ended: row counts as in the manifest, not as in it, or rolled back."""


@dataclass(kw_only=True)
class BackupRecord:
    """One catalog row."""

    provider: str
    path: str
    format: str
    status: BackupState
    started_at: datetime
    purpose: str = "manual"
    finished_at: datetime | None = None
    duration_s: float | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    host: str | None = None
    server_version: str | None = None
    pg_dump_version: str | None = None
    row_counts: dict[str, int] = field(default_factory=dict)
    verified_at: datetime | None = None
    verify_depth: str | None = None
    verify_error: str | None = None
    error: str | None = None
    deleted_at: datetime | None = None
    signed: bool = False  # its manifest's signature checked when this row was written
    id: int | None = None

    @property
    def verified(self) -> bool:
        """Whether the last verification of this backup passed."""
        return self.verified_at is not None and self.verify_error is None

    @classmethod
    def _from_row(cls, row: tuple[Any, ...]) -> BackupRecord:
        v = dict(zip(_COLUMNS, row, strict=True))
        return cls(
            id=v["id"], provider=v["provider"], path=v["path"], format=v["format"], purpose=v["purpose"],
            status=v["status"], started_at=datetime.fromisoformat(v["started_at"]),
            finished_at=_dt(v["finished_at"]), duration_s=v["duration_s"], size_bytes=v["size_bytes"],
            sha256=v["sha256"], host=v["host"], server_version=v["server_version"],
            pg_dump_version=v["pg_dump_version"], row_counts=json.loads(v["row_counts"] or "{}"),
            verified_at=_dt(v["verified_at"]), verify_depth=v["verify_depth"], verify_error=v["verify_error"],
            error=v["error"], deleted_at=_dt(v["deleted_at"]), signed=bool(v.get("signed")),
        )


@dataclass(frozen=True, kw_only=True)
class RestoreRecord:
    """One restore, with its duration (the runbook's RTO)."""

    provider: str
    backup_path: str
    backup_provider: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    status: RestoreState
    pre_restore_backup: str | None
    error: str | None


class BackupCatalog:
    """Read and write the `backups` and `restores` tables of one state store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def record(self, rec: BackupRecord) -> int:
        """Insert one backup attempt and return its id."""
        values = [getattr(rec, c) for c in _COLUMNS[1:]]
        values = [json.dumps(v, sort_keys=True) if isinstance(v, dict)
                  else v.isoformat() if isinstance(v, datetime) else int(v) if isinstance(v, bool) else v
                  for v in values]
        with self.store.connect() as conn:
            cur = conn.execute(
                f"INSERT INTO backups ({', '.join(_COLUMNS[1:])}) VALUES ({', '.join('?' * (len(_COLUMNS) - 1))})",
                values,
            )
            return int(cur.lastrowid or 0)

    def get(self, path: str | Path) -> BackupRecord | None:
        """Return the live (ok) entry of a backup file, or None."""
        with self.store.connect() as conn:
            row = conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM backups WHERE path = ? AND status = 'ok' ORDER BY id DESC LIMIT 1",
                (str(Path(path).absolute()),),
            ).fetchone()
        return BackupRecord._from_row(row) if row else None

    def entries(self, provider: str | None = None, statuses: tuple[str, ...] = ("ok",)) -> list[BackupRecord]:
        """Return entries with the given statuses, per provider newest first."""
        with self.store.connect() as conn:
            return backup_rows(conn, provider, statuses)

    def last_attempt(self, provider: str) -> BackupRecord | None:
        """Return the newest attempt (ok or failed) for a provider: what a monitor alerts on."""
        found = self.entries(provider, statuses=("ok", "failed", "pruned"))
        return found[0] if found else None

    def newest_verified(self, provider: str) -> BackupRecord | None:
        """Return the newest signed, verified backup of a provider that has not been pruned."""
        return next((r for r in self.entries(provider) if r.signed and r.verified), None)

    def mark_verified(self, path: str | Path, at: datetime, depth: str, sha256: str, signed: bool) -> None:
        """Record a passed verification of the file with this sha256, and whether its signature checked."""
        with self.store.connect() as conn:
            conn.execute(
                "UPDATE backups SET verified_at = ?, verify_depth = ?, verify_error = NULL, sha256 = ?, signed = ? "
                "WHERE path = ? AND status = 'ok'",
                (at.isoformat(), depth, sha256, int(signed), str(Path(path).absolute())),
            )

    def mark_verify_failed(self, path: str | Path, error: str) -> None:
        """Record a failed verification (the backup no longer counts as verified, nor as signed)."""
        with self.store.connect() as conn:
            conn.execute(
                "UPDATE backups SET verify_error = ?, signed = 0 WHERE path = ? AND status = 'ok'",
                (error[:1000], str(Path(path).absolute())),
            )

    def mark_pruned(self, path: str | Path) -> None:
        """Record that retention deleted a backup."""
        with self.store.connect() as conn:
            conn.execute(
                "UPDATE backups SET status = 'pruned', deleted_at = ? WHERE path = ? AND status = 'ok'",
                (utcnow().isoformat(), str(Path(path).absolute())),
            )

    def record_restore(self, rec: RestoreRecord) -> None:
        """Append one restore."""
        with self.store.connect() as conn:
            conn.execute(
                "INSERT INTO restores (provider, backup_path, backup_provider, started_at, finished_at, duration_s, "
                "status, pre_restore_backup, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.provider, rec.backup_path, rec.backup_provider, rec.started_at.isoformat(),
                 rec.finished_at.isoformat() if rec.finished_at else None, rec.duration_s, rec.status,
                 rec.pre_restore_backup, rec.error),
            )

    def restores(self, provider: str | None = None) -> list[RestoreRecord]:
        """Return restores, newest first."""
        query = f"SELECT {_RESTORE_COLUMNS} FROM restores"
        args: tuple[str, ...] = ()
        if provider is not None:
            query += " WHERE provider = ?"
            args = (provider,)
        with self.store.connect() as conn:
            rows = conn.execute(query + " ORDER BY id DESC", args).fetchall()
        return [_restore(r) for r in rows]


_RESTORE_COLUMNS = ("provider, backup_path, backup_provider, started_at, finished_at, duration_s, status, "
                    "pre_restore_backup, error")


def _restore(r: tuple[Any, ...]) -> RestoreRecord:
    return RestoreRecord(provider=r[0], backup_path=r[1], backup_provider=r[2],
                         started_at=datetime.fromisoformat(r[3]),
                         finished_at=_dt(r[4]), duration_s=r[5], status=r[6], pre_restore_backup=r[7], error=r[8])


def backup_rows(conn: sqlite3.Connection, provider: str | None = None,
                statuses: tuple[str, ...] = ("ok",)) -> list[BackupRecord]:
    """Return catalog rows with the given statuses on an open connection, per provider newest first."""
    columns = ", ".join(_COLUMNS if user_version(conn) >= 4 else [*_COLUMNS[:-1], "0 AS signed"])
    query = f"SELECT {columns} FROM backups WHERE status IN ({', '.join('?' * len(statuses))})"
    args: list[Any] = list(statuses)
    if provider is not None:
        query += " AND provider = ?"
        args.append(provider)
    rows = conn.execute(query + " ORDER BY provider, started_at DESC, id DESC", args).fetchall()
    return [BackupRecord._from_row(r) for r in rows]


def latest_restore(conn: sqlite3.Connection) -> RestoreRecord | None:
    """Return the newest restore on an open connection, or None."""
    row = conn.execute(f"SELECT {_RESTORE_COLUMNS} FROM restores ORDER BY id DESC LIMIT 1").fetchone()
    return _restore(row) if row else None


def newest_good_backup(records: Iterable[BackupRecord], now: datetime | None = None) -> BackupRecord | None:
    """Return the newest backup that counts for the RPO: signed, verified, live (not pruned/failed), not `pre-restore`.

    "Newest" is by `started_at`, the time the data was taken: verifying an old
    backup again does not make it fresh. Given `now`, a backup that claims to
    start later than `now` (plus 5 minutes of clock skew) never counts.
    """
    latest = now + timedelta(minutes=5) if now is not None else None
    good = [r for r in records if r.status == "ok" and r.signed and r.verified and r.purpose != "pre-restore"
            and (latest is None or r.started_at <= latest)]
    return max(good, key=lambda r: (r.started_at, r.id or 0), default=None)


def backup_age(records: Iterable[BackupRecord], now: datetime) -> timedelta | None:
    """Return now − `started_at` of `newest_good_backup(records)`, or None when no backup counts.

    The one definition of backup age: the monitor's backup rule and the status page's RPO both use it.
    """
    newest = newest_good_backup(records, now)
    return now - newest.started_at if newest is not None else None
