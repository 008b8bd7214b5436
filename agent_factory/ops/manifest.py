"""The manifest beside each backup: its format, hostile-input-safe reading, and its HMAC signature.

Backups live where others can write (a shared volume, a synced bucket), so a
manifest is read as untrusted input and trusted only when its signature checks:

- Signature: HMAC-SHA256 keyed by `BACKUP_SIGNING_KEY` (never stored with the
  backups). `archive_hmac` is the HMAC of the archive's bytes; `signature` the
  HMAC of the manifest's own fields (every field but `signature`, as canonical
  JSON: sorted keys, no spaces, ASCII). `key_id` names the key without revealing
  it (the first 16 hex digits of an HMAC of a fixed label), so a manifest signed
  with a previous key (`BACKUP_SIGNING_KEY_PREVIOUS`, comma separated) still
  checks during a rotation (docs/BACKUPS.md).
- Reading: the JSON must be one object (not a list, not nested past 32 levels)
  and every known field must have its type (a size is an int, not "8039646";
  times are ISO 8601 with a time zone). Anything else raises
  `BackupVerificationError` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import BackupVerificationError, ConfigError
from . import leftovers
from .pgtools import FORMATS

__all__ = ["MANIFEST_SUFFIX", "MANIFEST_VERSION", "Manifest", "SigningKeys", "archive_problem", "digests",
           "key_id_of", "manifest_path", "parse_time", "read_manifest", "read_manifest_raw", "sha256_of", "sign",
           "signature_problem", "write_manifest", "write_private"]

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 2
MAX_MANIFEST_BYTES = 1 << 20
_MAX_DEPTH = 32
_ARCHIVE_LABEL = b"agent-factory archive v1\n"
_MANIFEST_LABEL = b"agent-factory manifest v1\n"
_KEY_ID_LABEL = b"agent-factory backup signing key id"
MIN_KEY_CHARS = 32


@dataclass
class Manifest:
    """What is known of one backup file; stored as JSON beside it."""

    provider: str
    host: str
    database: str
    format: str
    file: str
    size_bytes: int
    sha256: str
    server_version: str
    server_version_num: int
    pg_dump_version: str
    started_at: str
    finished_at: str
    duration_s: float
    row_counts: dict[str, int]
    status: str = "complete"
    purpose: str = "manual"
    encoding: str = "UTF8"
    compression: str = "gzip"
    verified_at: str | None = None
    verify_depth: str | None = None
    tool: str = "agent-factory"
    manifest_version: int = MANIFEST_VERSION
    archive_hmac: str | None = None
    key_id: str | None = None
    signature: str | None = None

    @property
    def signed(self) -> bool:
        """Whether the manifest carries a signature (not whether it checks: see `signature_problem`)."""
        return self.signature is not None


@dataclass(frozen=True)
class SigningKeys:
    """The key that signs new manifests and the previous ones still accepted; never shown."""

    current: bytes | None = field(default=None, repr=False)
    previous: tuple[bytes, ...] = field(default=(), repr=False)

    @classmethod
    def from_config(cls, config: Any) -> SigningKeys:
        """Return the keys of a `Config` (BACKUP_SIGNING_KEY, BACKUP_SIGNING_KEY_PREVIOUS)."""
        current = getattr(config, "backup_signing_key", None)
        previous = getattr(config, "backup_signing_previous", ())
        return cls(current.encode() if current else None, tuple(p.encode() for p in previous))

    def require(self, doing: str) -> bytes:
        """Return the current key; raise `ConfigError` naming BACKUP_SIGNING_KEY when none is set."""
        if not self.current:
            raise ConfigError(f"BACKUP_SIGNING_KEY is not set: {doing} needs it to sign or check backups; "
                              "run `agent-factory local up` or set it in .env (see docs/BACKUPS.md)")
        return self.current

    def by_id(self, key_id: str | None) -> bytes | None:
        """Return the configured key with this id, or None."""
        for key in (self.current, *self.previous):
            if key and key_id == key_id_of(key):
                return key
        return None


def key_id_of(key: bytes) -> str:
    """Return a key's public id: 16 hex digits that reveal nothing of it."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def manifest_path(backup_file: str | Path) -> Path:
    """Return the manifest path of a backup file."""
    p = Path(backup_file)
    return p.with_name(p.name + MANIFEST_SUFFIX)


def digests(path: Path, key: bytes | None = None) -> tuple[str, str | None]:
    """Return the hex sha256 of a file and, given a key, its archive HMAC; one read in 1 MiB blocks."""
    digest = hashlib.sha256()
    mac = hmac.new(key, _ARCHIVE_LABEL, hashlib.sha256) if key else None
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            if mac is not None:
                mac.update(block)
    return digest.hexdigest(), mac.hexdigest() if mac is not None else None


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB blocks."""
    return digests(path)[0]


def _canonical(raw: Mapping[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in raw.items() if k != "signature"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True).encode()


def sign(manifest: Manifest, key: bytes, archive_hmac: str | None = None) -> Manifest:
    """Set `key_id` (and `archive_hmac` when given) and sign the manifest's fields with `key`; return it."""
    if archive_hmac is not None:
        manifest.archive_hmac = archive_hmac
    manifest.key_id = key_id_of(key)
    manifest.signature = hmac.new(key, _MANIFEST_LABEL + _canonical(asdict(manifest)), hashlib.sha256).hexdigest()
    return manifest


def signature_problem(manifest: Manifest, keys: SigningKeys, raw: Mapping[str, Any] | None = None) -> str | None:
    """Return why a manifest's signature does not check (unsigned, unknown key, mismatch), or None when it does.

    `raw` is the JSON as read (the signature covers every field written, known or not).
    """
    if manifest.signature is None:
        return "unsigned (made before backups were signed, or not by agent-factory)"
    if not (keys.current or keys.previous):
        return "signed, but BACKUP_SIGNING_KEY is not set here to check it"
    key = keys.by_id(manifest.key_id)
    if key is None:
        return f"signed with a key that is not configured here (key id {manifest.key_id})"
    body = _canonical(raw if raw is not None else asdict(manifest))
    expected = hmac.new(key, _MANIFEST_LABEL + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(manifest.signature)):
        return "its signature does not match: the manifest was altered or forged"
    if not manifest.archive_hmac:
        return "signed, but without an archive HMAC"
    return None


def archive_problem(path: Path, manifest: Manifest, keys: SigningKeys) -> tuple[str | None, str]:
    """Check the archive's HMAC against a signed manifest; return (problem or None, sha256 of the file)."""
    key = keys.by_id(manifest.key_id)
    sha, mac = digests(path, key)
    if key is None or mac is None or not hmac.compare_digest(mac, str(manifest.archive_hmac)):
        return f"{path.name} does not match its signed manifest's HMAC: the archive was altered", sha
    return None, sha


def read_manifest(backup_file: str | Path) -> Manifest:
    """Load the manifest beside a backup file; raise `BackupVerificationError` when absent or malformed."""
    return read_manifest_raw(backup_file)[0]


def read_manifest_raw(backup_file: str | Path) -> tuple[Manifest, dict[str, Any]]:
    """Load and type-check a manifest; return it with the JSON object as read.

    Raises `BackupVerificationError` naming the file and the field for a missing,
    oversized, non-object, too deeply nested or mistyped manifest.
    """
    path = manifest_path(backup_file)
    if not path.is_file():
        raise BackupVerificationError(
            f"{backup_file} has no manifest ({path.name}); without its checksum it cannot be trusted"
        )
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise BackupVerificationError(f"manifest {path} is larger than {MAX_MANIFEST_BYTES} bytes")
        raw = json.loads(path.read_bytes())
    except RecursionError:
        raise BackupVerificationError(f"manifest {path} is nested too deeply to be a manifest") from None
    except (ValueError, OSError) as exc:
        raise BackupVerificationError(f"manifest {path} is unreadable: {exc}") from None
    if not isinstance(raw, dict):
        raise BackupVerificationError(f"manifest {path} is a JSON {type(raw).__name__}, not an object")
    if _depth(raw) > _MAX_DEPTH:
        raise BackupVerificationError(f"manifest {path} is nested too deeply to be a manifest")
    values = {}
    for f in fields(Manifest):
        if f.name not in raw:
            if f.default is not MISSING or f.default_factory is not MISSING:
                continue
            raise BackupVerificationError(f"manifest {path}: field {f.name} is missing")
        values[f.name] = _typed(path, f.name, raw[f.name])
    manifest = Manifest(**values)
    if manifest.format not in FORMATS:
        raise BackupVerificationError(f"manifest {path} names an unknown format {manifest.format!r}")
    return manifest, raw


def _depth(value: Any, level: int = 0) -> int:
    if level > _MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


_STR = ("provider", "host", "database", "format", "file", "sha256", "server_version", "pg_dump_version",
        "status", "purpose", "encoding", "compression", "tool")
_OPT_STR = ("verify_depth", "archive_hmac", "key_id", "signature")
_TIMES = ("started_at", "finished_at")
_VERSION = re.compile(r"^\d{1,4}(\.\d{1,4}){0,2}$")


def _typed(path: Path, name: str, value: Any) -> Any:
    """Return `value` when it has field `name`'s type; raise `BackupVerificationError` naming both otherwise."""
    def bad(what: str) -> BackupVerificationError:
        shown = json.dumps(value)[:60]
        return BackupVerificationError(f"manifest {path}: field {name} is {shown}, not {what}")

    if name in _STR or name in _TIMES:
        if not isinstance(value, str):
            raise bad("a string")
        if name in _TIMES:
            parse_time(value, lambda: bad("an ISO 8601 time with a time zone"))
        if name == "pg_dump_version" and not _VERSION.match(value):
            raise bad("a version such as 16.2")
        return value
    if name in _OPT_STR or name == "verified_at":
        if value is not None and not isinstance(value, str):
            raise bad("a string")
        if name == "verified_at" and value is not None:
            parse_time(value, lambda: bad("an ISO 8601 time with a time zone"))
        return value
    if name in ("size_bytes", "server_version_num", "manifest_version"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad("a non-negative integer")
        return value
    if name == "duration_s":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1e9:
            raise bad("a duration in seconds")
        return float(value)
    if name == "row_counts":
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and "." in k and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in value.items()):
            raise bad('an object of "schema.table" names to non-negative integers')
        return value
    raise bad("a known field")  # pragma: no cover - every field is listed above


def parse_time(text: str, error: Any = None) -> datetime:
    """Parse an ISO 8601 time with a time zone; raise `error()` (default `BackupVerificationError`) otherwise."""
    try:
        parsed = datetime.fromisoformat(text)
    except (ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise error() if error else BackupVerificationError(f"{text!r} is not an ISO 8601 time with a time zone")
    return parsed


def write_manifest(manifest: Manifest, path: Path) -> None:
    """Write a manifest atomically (temp file, fsync, rename), mode 0600."""
    tmp = leftovers.partial_path(path, "tmp")
    write_private(tmp, json.dumps(asdict(manifest), indent=2, sort_keys=True).encode() + b"\n")
    os.replace(tmp, path)


def write_private(path: Path, data: bytes) -> None:
    """Create or replace `path` with `data`, mode 0600, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
