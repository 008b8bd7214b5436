"""Manifest reading as hostile input, and signatures, on real files (no database)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent_factory.errors import BackupVerificationError
from agent_factory.ops.manifest import SigningKeys, read_manifest_raw, signature_problem

from .signing import KEYS, write_signed_manifest

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def signed(tmp_path: Path) -> Path:
    path = tmp_path / "neon-2026-12-01T020000Z.dump"
    path.write_bytes(b"PGDMP" + bytes(100))
    write_signed_manifest(path, "neon", T0, row_counts={"public.t": 3})
    return path


def _rewrite(path: Path, **changes: object) -> None:
    mpath = path.with_name(path.name + ".manifest.json")
    raw = json.loads(mpath.read_text())
    raw.update(changes)
    mpath.write_text(json.dumps(raw))


@pytest.mark.parametrize("changes, message", [
    ({"started_at": "not-a-time"}, "field started_at is \"not-a-time\", not an ISO 8601 time"),
    ({"started_at": "2026-12-01T02:00:00"}, "field started_at"),  # no time zone
    ({"size_bytes": "8039646"}, "field size_bytes is \"8039646\", not a non-negative integer"),
    ({"size_bytes": True}, "field size_bytes"),
    ({"duration_s": float("nan")}, "field duration_s"),
    ({"row_counts": {"nodot": 1}}, "field row_counts"),
    ({"row_counts": {"public.t": -1}}, "field row_counts"),
    ({"row_counts": [1]}, "field row_counts"),
    ({"pg_dump_version": "sixteen"}, "field pg_dump_version"),
    ({"provider": {"x": 1}}, "field provider"),
    ({"format": "tar"}, "unknown format"),
])
def test_mistyped_fields_are_named(signed: Path, changes: dict[str, object], message: str) -> None:
    _rewrite(signed, **changes)
    with pytest.raises(BackupVerificationError, match="manifest .*" + message.replace("(", r"\(")) as caught:
        read_manifest_raw(signed)
    assert signed.name in str(caught.value) and "\n" not in str(caught.value)


def test_missing_field_non_object_and_nesting(signed: Path) -> None:
    mpath = signed.with_name(signed.name + ".manifest.json")
    raw = json.loads(mpath.read_text())
    del raw["sha256"]
    mpath.write_text(json.dumps(raw))
    with pytest.raises(BackupVerificationError, match="field sha256 is missing"):
        read_manifest_raw(signed)
    for text, message in (("[]", "JSON list, not an object"), ("7", "JSON int"), ("{", "unreadable"),
                          ("[" * 50_000 + "]" * 50_000, "nested too deeply"),
                          ('{"a": ' * 33 + "1" + "}" * 33, "nested too deeply")):
        mpath.write_text(text)
        with pytest.raises(BackupVerificationError, match=message):
            read_manifest_raw(signed)


def test_signature_covers_every_field_written(signed: Path) -> None:
    manifest, raw = read_manifest_raw(signed)
    assert signature_problem(manifest, KEYS, raw) is None
    for changes in ({"verify_depth": "deep"}, {"started_at": "2027-01-01T00:00:00+00:00"}, {"extra": 1}):
        write_signed_manifest(signed, "neon", T0, row_counts={"public.t": 3})
        _rewrite(signed, **changes)
        manifest, raw = read_manifest_raw(signed)
        assert signature_problem(manifest, KEYS, raw) == \
            "its signature does not match: the manifest was altered or forged"
    assert "not set here" in str(signature_problem(manifest, SigningKeys(), raw))
