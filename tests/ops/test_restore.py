"""Restores on the real local providers: round trips, refusals before touching the target, dry run, locks."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent_factory.cli import main
from agent_factory.core import DatabaseManager
from agent_factory.errors import (
    BackupVerificationError,
    ConfigError,
    ConfirmationRequiredError,
    OperationLockedError,
)
from agent_factory.ops import pgtools
from agent_factory.ops.backup import backup, manifest_path, sha256_of
from agent_factory.ops.catalog import verify_backup
from agent_factory.ops.locks import operation_lock
from agent_factory.ops.restore import restore
from agent_factory.schema import EXPECTED_TABLES
from agent_factory.state.backups import BackupCatalog
from agent_factory.state.store import StateStore, utcnow

from .signing import write_signed_manifest
from .test_backup import ATOMS, SESSION_ROWS, checksums, seed


def wipe(db: DatabaseManager, provider: str = "neon") -> None:
    with db.provider_connection(provider) as conn:
        conn.execute("TRUNCATE " + ", ".join(EXPECTED_TABLES) + " CASCADE")
        conn.commit()


def add_atom(db: DatabaseManager, provider: str = "neon") -> None:
    with db.provider_connection(provider) as conn:
        conn.execute("INSERT INTO knowledge_atoms (id, atom_id, atom_type, title, content) "
                     "VALUES (gen_random_uuid(), 'added-after-backup', 'fault', 'Added', 'after the backup')")
        conn.commit()


def test_round_trip_restores_every_row(db: DatabaseManager, tmp_path: Path) -> None:
    seed(db)
    before = checksums(db)
    assert before["knowledge_atoms"][0] == ATOMS and before["session_memories"][0] == SESSION_ROWS
    [made] = backup(db, "neon", backup_dir=tmp_path)
    wipe(db)
    assert checksums(db)["knowledge_atoms"][0] == 0

    result = restore(db, "neon", made.path, backup_dir=tmp_path)

    assert result.status == "ok" and result.ok and result.changed and result.mismatches == {}
    assert checksums(db) == before
    assert result.row_counts_after["public.knowledge_atoms"] == ATOMS
    assert result.row_counts_before["public.knowledge_atoms"] == 0
    assert result.duration_s and result.restore_s and result.duration_s >= result.restore_s
    assert result.verify_ok and "can serve" in (result.verify_summary or "")
    pre = result.pre_restore_backup
    assert pre and pre.is_file() and json.loads(manifest_path(pre).read_text())["purpose"] == "pre-restore"
    assert json.loads(manifest_path(pre).read_text())["row_counts"]["public.knowledge_atoms"] == 0
    [record] = BackupCatalog(StateStore(db.config.state_dir)).restores("neon")
    assert record.status == "ok" and record.pre_restore_backup == str(pre) and record.duration_s


def test_plain_backup_of_another_provider_restores_with_yes(db: DatabaseManager, tmp_path: Path) -> None:
    seed(db, "neon")
    expected = checksums(db, "neon")
    [made] = backup(db, "neon", fmt="plain", backup_dir=tmp_path)  # PostgreSQL 16 ...
    seed(db, "supabase", atoms=3, sessions=1)
    untouched = checksums(db, "supabase")

    with pytest.raises(ConfirmationRequiredError, match="backup of provider neon, not supabase"):
        restore(db, "supabase", made.path, backup_dir=tmp_path)
    assert checksums(db, "supabase") == untouched

    result = restore(db, "supabase", made.path, yes=True, backup_dir=tmp_path)  # ... into 15
    assert result.status == "ok", result.mismatches
    assert any("backup of provider neon" in w for w in result.warnings)
    assert checksums(db, "supabase") == expected


def corrupt(path: Path, how: str, into: Path) -> Path:
    """Copy a backup and its manifest, then damage the copy."""
    bad = into / f"{how}-{path.name}"
    shutil.copy(path, bad)
    shutil.copy(manifest_path(path), manifest_path(bad))
    data = bytearray(bad.read_bytes())
    if how == "truncated":
        bad.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0x01
        bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize("how", ["truncated", "altered"])
def test_damaged_backup_is_refused_before_touching_the_target(db: DatabaseManager, tmp_path: Path, how: str) -> None:
    seed(db, atoms=200, sessions=5)
    [made] = backup(db, "neon", backup_dir=tmp_path / "b")
    add_atom(db)
    before = checksums(db)
    bad = corrupt(made.path, how, tmp_path)
    files_before = sorted(os.listdir(tmp_path / "b"))

    with pytest.raises(BackupVerificationError, match="truncated or altered" if how == "truncated" else "HMAC"):
        verify_backup(db, bad)
    with pytest.raises(BackupVerificationError, match="refusing to restore"):
        restore(db, "neon", bad, backup_dir=tmp_path / "b")

    assert checksums(db) == before
    assert sorted(os.listdir(tmp_path / "b")) == files_before  # not even a pre-restore backup was taken
    assert BackupCatalog(StateStore(db.config.state_dir)).restores() == []


def test_unknown_format_and_files_without_manifest_are_refused(db: DatabaseManager, tmp_path: Path) -> None:
    before = checksums(db)
    garbage = tmp_path / "neon-2025-12-15T020000Z.dump"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(BackupVerificationError, match="no manifest"):
        restore(db, "neon", garbage, backup_dir=tmp_path)
    # A manifest that matches the bytes does not make them an archive.
    manifest_path(garbage).write_text(json.dumps({
        "provider": "neon", "host": "h", "database": "d", "format": "custom", "file": garbage.name,
        "size_bytes": 4096, "sha256": sha256_of(garbage), "server_version": "16.2", "server_version_num": 160002,
        "pg_dump_version": "16.2", "started_at": "2025-12-15T02:00:00+00:00",
        "finished_at": "2025-12-15T02:00:01+00:00", "duration_s": 1.0, "row_counts": {},
    }))
    with pytest.raises(BackupVerificationError, match="is unsigned"):
        restore(db, "neon", garbage, backup_dir=tmp_path)
    # Nor does a signed one.
    write_signed_manifest(garbage, "neon", utcnow())
    with pytest.raises(BackupVerificationError, match="unknown format"):
        restore(db, "neon", garbage, backup_dir=tmp_path)
    assert checksums(db) == before


def test_dry_run_validates_and_changes_nothing(db: DatabaseManager, tmp_path: Path) -> None:
    seed(db, atoms=300, sessions=10)
    [made] = backup(db, "neon", backup_dir=tmp_path)
    add_atom(db)
    before = checksums(db)
    files_before = sorted(os.listdir(tmp_path))

    plan = restore(db, "neon", made.path, check=True, backup_dir=tmp_path)

    assert plan.status == "planned" and not plan.changed and plan.pre_restore_backup is None
    assert any("pre-restore backup" in a for a in plan.actions)
    assert any("--clean --if-exists" in a and "--single-transaction" in a for a in plan.actions)
    assert plan.row_counts_before["public.knowledge_atoms"] == 301 and plan.expected_row_counts[
        "public.knowledge_atoms"] == 300
    assert any("sha256 matches" in c for c in plan.checks)
    assert checksums(db) == before
    assert sorted(os.listdir(tmp_path)) == files_before
    assert BackupCatalog(StateStore(db.config.state_dir)).restores() == []


@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_the_dry_run_shows_the_options_the_restore_runs(db: DatabaseManager, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    seed(db, atoms=20, sessions=2)
    [made] = backup(db, "neon", fmt=fmt, backup_dir=tmp_path)
    plan = restore(db, "neon", made.path, check=True, backup_dir=tmp_path)
    [shown] = [a for a in plan.actions if "--single-transaction" in a]
    ran: list[list[str]] = []
    real = pgtools.run_tool

    def spy(tool: pgtools.Tool, args: list[str], *rest: Any, **kw: Any) -> str:
        ran.append([tool.name, *args])
        return real(tool, args, *rest, **kw)

    monkeypatch.setattr(pgtools, "run_tool", spy)
    restore(db, "neon", made.path, backup_dir=tmp_path)
    [load] = [argv for argv in ran if "--single-transaction" in argv]
    target = pgtools.target_for(db, "neon")
    shown_argv = [a.replace(f"--dbname={target.conninfo}", "--dbname=<target>") for a in load]
    shown_argv = [a if not a.startswith("--use-list=") else "--use-list=<filtered entries>" for a in shown_argv]
    if fmt == "custom":
        assert Path(shown_argv[-1]).name == made.path.name  # the checked private copy
        shown_argv = shown_argv[:-1]
    assert shown.startswith(shown_argv[0] + " ") and " ".join(shown_argv[1:]) in shown


def test_bad_input_is_refused(db: DatabaseManager, tmp_path: Path) -> None:
    [made] = backup(db, "neon", backup_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        restore(db, "nope", made.path)
    with pytest.raises(BackupVerificationError, match="does not exist"):
        restore(db, "neon", tmp_path / "missing.dump")
    with pytest.raises(BackupVerificationError, match="is a directory"):
        restore(db, "neon", tmp_path)


def test_cli_bad_input_and_confirmation(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        make_db: Callable[..., DatabaseManager],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    [made] = backup(make_db(), "neon", backup_dir=tmp_path)
    capsys.readouterr()
    assert main(["restore", "--provider", "nope", "--backup", str(made.path), "--yes"]) == 2
    assert main(["restore", "--provider", "neon", "--backup", "missing.dump", "--yes"]) == 2
    assert main(["restore", "--provider", "neon", "--backup", str(tmp_path), "--yes"]) == 2
    assert main(["backups", "verify", str(tmp_path)]) == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    assert main(["restore", "--provider", "supabase", "--backup", str(made.path)]) == 2
    err = capsys.readouterr().err
    assert "unknown provider 'nope'" in err and "no such backup file" in err and "is a directory" in err
    assert "without --yes" in err and "Traceback" not in err

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("railway\n"))  # the wrong name: cancelled
    assert main(["restore", "--provider", "supabase", "--backup", str(made.path)]) == 1
    assert "restore cancelled" in capsys.readouterr().err
    assert BackupCatalog(StateStore(env["AGENT_FACTORY_STATE_DIR"])).restores() == []


def test_a_second_backup_or_restore_on_the_same_provider_is_refused(
        db: DatabaseManager, make_db: Callable[..., DatabaseManager], tmp_path: Path) -> None:
    [made] = backup(db, "neon", backup_dir=tmp_path)
    state_dir = str(db.config.state_dir)
    # Another process on this host runs a restore of neon.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\n"
         "from agent_factory.config import load_config\n"
         "from agent_factory.core import DatabaseManager\n"
         "from agent_factory.ops import pgtools\n"
         "from agent_factory.ops.locks import operation_lock\n"
         "db = DatabaseManager(load_config(env_file=None))\n"
         "with operation_lock(pgtools.target_for(db, 'neon'), db.config.state_dir, 'restore'):\n"
         "    print('locked', flush=True)\n"
         "    sys.stdin.readline()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, **_env_of(db), "AGENT_FACTORY_STATE_DIR": state_dir},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(OperationLockedError, match=r"provider neon: a restore \(pid \d+"):
            backup(db, "neon", backup_dir=tmp_path)
        with pytest.raises(OperationLockedError, match="provider neon"):
            restore(db, "neon", made.path, backup_dir=tmp_path)
        # Another host (another state dir) is refused by the database's advisory lock.
        elsewhere = make_db(AGENT_FACTORY_STATE_DIR=str(tmp_path / "other-host"))
        with pytest.raises(OperationLockedError, match=r"holds the database lock .*agent-factory restore lock"):
            backup(elsewhere, "neon", backup_dir=tmp_path / "other")
        [ok] = backup(db, "supabase", backup_dir=tmp_path)  # other providers are free
        assert ok.status == "ok"
    finally:
        holder.communicate("\n", timeout=30)  # releases the lock and closes the pipes
    [again] = backup(db, "neon", backup_dir=tmp_path)  # released
    assert again.status == "ok"


def test_a_lock_held_in_this_process_refuses_a_concurrent_restore(db: DatabaseManager, tmp_path: Path) -> None:
    [made] = backup(db, "railway", backup_dir=tmp_path)
    with operation_lock(pgtools.target_for(db, "railway"), db.config.state_dir, "backup"):
        with pytest.raises(OperationLockedError, match="a backup"):
            restore(db, "railway", made.path, backup_dir=tmp_path)
    with psycopg.connect(db.config.provider("railway").url) as conn:  # the advisory lock was released
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0] == 0


def _env_of(db: DatabaseManager) -> dict[str, str]:
    env = {f"{name.upper()}_DB_URL": p.url for name, p in db.config.providers.items()}
    env["DATABASE_PROVIDER"] = db.config.primary
    env["DATABASE_FAILOVER_ORDER"] = ",".join(db.config.failover_order)
    return env


@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_backup_with_vectors_restores_into_a_provider_without_pgvector(db: DatabaseManager, tmp_path: Path,
                                                                        fmt: str) -> None:
    from agent_factory.integrations.langgraph import AgentFactoryStore
    from tests.integrations.embedder import HashingEmbeddings

    store = AgentFactoryStore(db, index={"dims": 16, "embed": HashingEmbeddings(16), "fields": ["text"]})
    store.put(("docs",), "a", {"text": "python tutorial"})
    [made] = backup(db, "neon", fmt=fmt, backup_dir=tmp_path)  # neon: PostgreSQL 16 with pgvector
    result = restore(db, "supabase", made.path, yes=True, backup_dir=tmp_path)  # supabase: 15, none
    assert result.status == "ok", result.mismatches
    assert any("pgvector missing on supabase" in w and "langgraph_store_vectors (1 row(s))" in w
               for w in result.warnings), result.warnings
    with db.provider_connection("supabase") as conn:
        assert conn.execute("SELECT key FROM langgraph_store").fetchall() == [("a",)]
        assert conn.execute("SELECT to_regclass('langgraph_store_vectors')").fetchone() == (None,)
        conn.rollback()
