"""Sign manifests in tests with the tests' real key (tests/conftest.py SIGNING_KEY), as a key holder would."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from agent_factory.ops.manifest import Manifest, SigningKeys, digests, manifest_path, sign, write_manifest

from ..conftest import SIGNING_KEY

KEYS = SigningKeys(SIGNING_KEY.encode())


def resign(backup_file: Path, key: bytes = SIGNING_KEY.encode()) -> None:
    """Sign a backup's (edited) manifest and archive again with `key`, keeping every field as written."""
    raw = json.loads(manifest_path(backup_file).read_text())
    sha, mac = digests(backup_file, key)
    raw.update(size_bytes=backup_file.stat().st_size, sha256=sha)
    raw.pop("signature", None)
    write_manifest(sign(Manifest(**raw), key, mac), manifest_path(backup_file))


def write_signed_manifest(path: Path, provider: str, started: datetime, key: bytes = SIGNING_KEY.encode(),
                          **fields: object) -> Manifest:
    """Write a signed manifest for an existing file (a fake backup), with `fields` over plausible values."""
    sha, mac = digests(path, key)
    values: dict[str, object] = dict(
        provider=provider, host="127.0.0.1:5432/postgres", database="postgres", format="custom", file=path.name,
        size_bytes=path.stat().st_size, sha256=sha, server_version="16.2", server_version_num=160002,
        pg_dump_version="16.2", started_at=started.isoformat(), finished_at=started.isoformat(), duration_s=1.0,
        row_counts={})
    values.update(fields)
    manifest = sign(Manifest(**values), key, mac)  # type: ignore[arg-type]
    write_manifest(manifest, manifest_path(path))
    return manifest
