"""The backup catalog: list, prune (retention) and verify (quick and deep) on real backups."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from agent_factory.cli import main
from agent_factory.core import DatabaseManager
from agent_factory.errors import BackupVerificationError, ConfigError
from agent_factory.ops.backup import backup, manifest_path, sha256_of
from agent_factory.ops.catalog import list_backups, verify_backup
from agent_factory.ops.prune import prune_backups
from agent_factory.state.backups import BackupCatalog, BackupRecord
from agent_factory.state.store import StateStore, utcnow

from .signing import KEYS, resign, write_signed_manifest
from .test_backup import ATOMS, seed


def store(db: DatabaseManager) -> StateStore:
    return StateStore(db.config.state_dir)


def scratch_databases(db: DatabaseManager, provider: str) -> list[str]:
    with psycopg.connect(db.config.provider(provider).url) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'af_verify_%'")]


def test_list_is_newest_first_per_provider_with_state_and_age(db: DatabaseManager, tmp_path: Path) -> None:
    [old] = backup(db, "neon", backup_dir=tmp_path)
    [new] = backup(db, "neon", backup_dir=tmp_path)
    [sup] = backup(db, "supabase", backup_dir=tmp_path)
    entries = list_backups(store(db), keys=KEYS)
    assert [(e.record.provider, Path(e.record.path)) for e in entries] == [
        ("neon", new.path.absolute()), ("neon", old.path.absolute()), ("supabase", sup.path.absolute())]
    assert all(e.state == "verified" and e.exists and 0 <= e.age_s < 120 for e in entries)
    assert [e.record.provider for e in list_backups(store(db), "supabase", keys=KEYS)] == ["supabase"]

    old.path.unlink()
    data = bytearray(sup.path.read_bytes())
    data[100] ^= 0xFF
    sup.path.write_bytes(bytes(data))
    with pytest.raises(BackupVerificationError):
        verify_backup(db, sup.path)
    states = {Path(e.record.path).name: e.state for e in list_backups(store(db), keys=KEYS)}
    assert states == {new.path.name: "verified", old.path.name: "missing", sup.path.name: "corrupt"}


def test_list_adopts_backups_found_in_a_directory(db: DatabaseManager, make_db: Callable[..., DatabaseManager],
                                                  tmp_path: Path) -> None:
    [made] = backup(db, "railway", backup_dir=tmp_path / "b")
    other = StateStore(tmp_path / "another-state")
    assert list_backups(other, keys=KEYS) == []
    [entry] = list_backups(other, backup_dir=tmp_path / "b", keys=KEYS)
    assert entry.record.path == str(made.path.absolute()) and entry.record.provider == "railway"
    assert entry.state == "verified" and entry.record.sha256 == made.sha256
    assert len(list_backups(other, backup_dir=tmp_path / "b", keys=KEYS)) == 1  # adopted once


def _fake_backup(catalog: BackupCatalog, directory: Path, provider: str, days: float, verified: bool) -> Path:
    started = utcnow() - timedelta(days=days)
    path = directory / f"{provider}-{started:%Y-%m-%dT%H%M%SZ}.dump"
    path.write_bytes(b"PGDMP")
    write_signed_manifest(path, provider, started)
    catalog.record(BackupRecord(provider=provider, path=str(path.absolute()), format="custom", status="ok",
                                started_at=started, finished_at=started,
                                sha256=sha256_of(path), signed=True, verified_at=started if verified else None,
                                verify_depth="quick" if verified else None))
    return path


def test_prune_keeps_by_count_or_age_and_always_the_newest_verified(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state")
    catalog = BackupCatalog(state)
    d0, d1, d3, d10, d40 = (_fake_backup(catalog, tmp_path, "neon", days, verified=days == 10)
                            for days in (0, 1, 3, 10, 40))
    s50, s60, s70 = (_fake_backup(catalog, tmp_path, "supabase", days, verified=True) for days in (50, 60, 70))

    plan = prune_backups(state, keep=2, max_age_days=7, check=True, backup_dir=tmp_path, keys=KEYS)
    assert not plan.changed and set(plan.deleted) == {d40, s70}
    assert set(plan.kept) == {d0, d1, d3, d10, s50, s60}  # 2 newest, younger than 7 d, newest verified
    assert all(p.exists() for p in (d40, s70))

    done = prune_backups(state, keep=2, max_age_days=7, backup_dir=tmp_path, keys=KEYS)
    assert done.changed and set(done.deleted) == {d40, s70}
    assert not d40.exists() and not manifest_path(d40).exists() and not s70.exists()
    assert {Path(e.record.path) for e in list_backups(state, keys=KEYS)} == {d0, d1, d3, d10, s50, s60}

    # The harshest retention still leaves each provider its newest verified backup.
    prune_backups(state, keep=0, max_age_days=0, backup_dir=tmp_path, keys=KEYS)
    assert {Path(e.record.path) for e in list_backups(state, keys=KEYS)} == {d10, s50}
    assert [r.status for r in catalog.entries("neon", statuses=("pruned",))] == ["pruned"] * 4

    with pytest.raises(ConfigError, match="needs a retention"):
        prune_backups(state)


def test_deep_verify_restores_into_a_scratch_database_and_records_it(db: DatabaseManager, tmp_path: Path) -> None:
    seed(db)
    [made] = backup(db, "neon", backup_dir=tmp_path)
    result = verify_backup(db, made.path, deep=True)
    assert result.deep and result.scratch_database and result.scratch_database.startswith("af_verify_")
    assert result.row_counts["public.knowledge_atoms"] == ATOMS
    assert any("row counts of" in c for c in result.checks)
    assert scratch_databases(db, "neon") == []
    manifest = json.loads(manifest_path(made.path).read_text())
    assert manifest["verify_depth"] == "deep" and manifest["verified_at"] == result.verified_at.isoformat()
    [entry] = list_backups(store(db), keys=KEYS)
    assert entry.state == "verified-deep" and entry.record.verified_at == result.verified_at


def test_deep_verify_catches_rows_missing_from_the_archive(db: DatabaseManager, tmp_path: Path) -> None:
    seed(db, atoms=50, sessions=3)
    [made] = backup(db, "neon", backup_dir=tmp_path)
    mpath = manifest_path(made.path)
    raw = json.loads(mpath.read_text())
    raw["row_counts"]["public.knowledge_atoms"] = 51  # the manifest promises a row the archive lacks
    mpath.write_text(json.dumps(raw))
    resign(made.path)  # by someone holding the key: only the deep check can see it
    verify_backup(db, made.path)  # the quick check cannot see it
    with pytest.raises(BackupVerificationError, match=r"public.knowledge_atoms: manifest 51, restored 50"):
        verify_backup(db, made.path, deep=True)
    assert scratch_databases(db, "neon") == []
    assert list_backups(store(db), keys=KEYS)[0].state == "corrupt"


def test_deep_verify_of_a_plain_backup_on_another_provider(db: DatabaseManager, tmp_path: Path) -> None:
    seed(db, "supabase", atoms=20, sessions=2)  # supabase carries the pg_stat_statements extension
    [made] = backup(db, "supabase", fmt="plain", backup_dir=tmp_path)
    result = verify_backup(db, made.path, deep=True, target="railway")
    assert result.format == "plain" and "on railway" in result.checks[-1]
    assert scratch_databases(db, "railway") == []


def test_cli_list_verify_prune(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    assert main(["backups", "list"]) == 0
    assert "no backups" in capsys.readouterr().out
    assert main(["backup"]) == 0
    assert main(["backup", "--provider", "neon", "--format", "plain"]) == 0
    capsys.readouterr()
    assert main(["--json", "backups", "list", "--provider", "neon"]) == 0
    rows = json.loads(capsys.readouterr().out)["result"]
    assert [r["format"] for r in rows] == ["plain", "custom"] and rows[0]["state"] == "verified"
    assert main(["backups", "verify", rows[1]["path"]]) == 0
    assert "sha256 matches" in capsys.readouterr().out
    assert main(["backups", "verify", "nope.dump"]) == 2
    assert main(["backups", "prune"]) == 2
    assert main(["backups", "prune", "--keep", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete 1 backup(s), kept 1" in out and rows[1]["path"] in out
    assert Path(rows[1]["path"]).exists()
    assert main(["backups", "prune", "--keep", "1"]) == 0
    assert not Path(rows[1]["path"]).exists() and Path(rows[0]["path"]).exists()
