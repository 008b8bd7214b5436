"""Backups on the real local providers with the real pg_dump: files, manifests, catalog, failures, secrecy."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent_factory.cli import main
from agent_factory.core import DatabaseManager
from agent_factory.errors import BackupError, ConfigError, ToolNotFoundError
from agent_factory.local import binaries
from agent_factory.ops.backup import backup, manifest_path, read_manifest, sha256_of
from agent_factory.state.backups import BackupCatalog
from agent_factory.state.store import StateStore
from agent_factory.vector import OPTIONAL_COLUMNS

ATOMS = 1965
SESSION_ROWS = 40
TABLES = ("knowledge_atoms", "session_memories", "settings", "research_staging", "video_scripts", "upload_jobs",
          "agent_messages", "schema_migrations")


def seed(db: DatabaseManager, provider: str = "neon", atoms: int = ATOMS, sessions: int = SESSION_ROWS) -> None:
    """Insert knowledge atoms and session memories straight with SQL."""
    with db.provider_connection(provider) as conn:
        conn.execute(
            "INSERT INTO knowledge_atoms (id, atom_id, atom_type, title, summary, content) "
            "SELECT gen_random_uuid(), 'atom-' || g, (ARRAY['concept', 'procedure', 'pattern'])[1 + g %% 3], "
            "'Title ' || g, 'Summary of atom ' || g, repeat('content ', 12) || g FROM generate_series(1, %s) g",
            (atoms,),
        )
        conn.execute(
            "INSERT INTO session_memories (id, session_id, user_id, memory_type, message_index, content) "
            "SELECT gen_random_uuid(), 'session-' || (g %% 8), 'user-1', 'message_user', g, "
            "jsonb_build_object('text', 'hello ' || g) FROM generate_series(1, %s) g",
            (sessions,),
        )
        conn.commit()


def checksums(db: DatabaseManager, provider: str = "neon") -> dict[str, tuple[int, str]]:
    """Row count and md5 of every row (ordered) of each table, pgvector-only columns left out."""
    with db.provider_connection(provider) as conn:
        out = {table: checksum(conn, table) for table in TABLES}
        conn.rollback()
    return out


def checksum(conn: psycopg.Connection, table: str) -> tuple[int, str]:
    """Row count and md5 of every row (ordered) of one table, pgvector-only columns left out."""
    cols = [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", (table,)) if r[0] not in OPTIONAL_COLUMNS.get(table, ())]
    value = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(sql.Identifier("t", c) for c in cols))
    row = conn.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg({v}, '|' ORDER BY {v}), '')) FROM {} t")
                       .format(sql.Identifier(table), v=value)).fetchone()
    return row[0], row[1]


def catalog_of(db: DatabaseManager) -> BackupCatalog:
    return BackupCatalog(StateStore(db.config.state_dir))


def test_backup_writes_private_dump_manifest_and_catalog_entry(db: DatabaseManager, tmp_path: Path) -> None:
    seed(db)
    [result] = backup(db, backup_dir=tmp_path / "b")

    assert result.changed and result.status == "ok" and result.provider == "neon"
    assert re.fullmatch(r"neon-\d{4}-\d{2}-\d{2}T\d{6}Z\.dump", result.path.name)
    mpath = manifest_path(result.path)
    assert sorted(os.listdir(tmp_path / "b")) == sorted([result.path.name, mpath.name])  # no partial files
    for path in (result.path, mpath):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert result.path.read_bytes().startswith(b"PGDMP")

    raw = json.loads(mpath.read_text())
    assert raw["provider"] == "neon" and raw["format"] == "custom" and raw["status"] == "complete"
    assert raw["host"] == db.config.provider("neon").host
    assert raw["size_bytes"] == result.path.stat().st_size
    assert raw["sha256"] == sha256_of(result.path)
    assert raw["server_version"].startswith("16") and raw["server_version_num"] // 10000 == 16
    assert int(raw["pg_dump_version"].split(".")[0]) >= 16
    assert raw["row_counts"]["public.knowledge_atoms"] == ATOMS
    assert raw["row_counts"]["public.session_memories"] == SESSION_ROWS
    assert raw["row_counts"]["public.schema_migrations"] >= 1
    assert raw["started_at"] <= raw["finished_at"] and raw["duration_s"] >= 0
    assert raw["verified_at"] and raw["verify_depth"] == "quick"

    [entry] = catalog_of(db).entries("neon")
    assert entry.path == str(result.path.absolute()) and entry.status == "ok" and entry.verified
    assert entry.row_counts["public.knowledge_atoms"] == ATOMS and entry.sha256 == raw["sha256"]


def test_plain_format_is_a_complete_sql_script(db: DatabaseManager, tmp_path: Path) -> None:
    seed(db, atoms=10, sessions=2)
    [result] = backup(db, "supabase", fmt="plain", backup_dir=tmp_path)
    assert result.path.suffix == ".sql" and stat.S_IMODE(result.path.stat().st_mode) == 0o600
    text = result.path.read_text()
    assert "-- PostgreSQL database dump" in text and "-- PostgreSQL database dump complete" in text
    assert "DROP TABLE IF EXISTS public.knowledge_atoms" in text  # --clean --if-exists: replayable over a db
    assert read_manifest(result.path).server_version.startswith("15")


def test_check_mode_plans_and_writes_nothing(db: DatabaseManager, tmp_path: Path) -> None:
    [result] = backup(db, "railway", backup_dir=tmp_path / "b", check=True)
    assert not result.changed and result.status == "planned"
    assert any(a.startswith("pg_dump") and "--no-owner --no-privileges" in a for a in result.actions)
    assert not (tmp_path / "b").exists()
    assert catalog_of(db).entries() == []


def test_all_providers_goes_on_past_a_dead_one(db: DatabaseManager, local: Any, tmp_path: Path) -> None:
    local.kill("railway")
    results = backup(db, all_providers=True, backup_dir=tmp_path)
    by_name = {r.provider: r for r in results}
    assert [r.provider for r in results] == ["neon", "supabase", "railway"]
    assert by_name["neon"].ok and by_name["supabase"].ok
    assert by_name["railway"].status == "failed" and "railway" in (by_name["railway"].error or "")
    assert not any(name.startswith(("railway", ".")) for name in os.listdir(tmp_path))
    assert catalog_of(db).last_attempt("railway").status == "failed"  # type: ignore[union-attr]


def test_failed_pg_dump_leaves_no_file_that_looks_complete(db: DatabaseManager, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_dump").write_text(
        "#!/bin/sh\n"
        'case "$1" in --version) echo "pg_dump (PostgreSQL) 99.0"; exit 0;; esac\n'
        'for a in "$@"; do case "$a" in --file=*) f="${a#--file=}";; esac; done\n'
        "printf 'PGDMP half an archive' > \"$f\"\n"
        "echo 'pg_dump: error: connection to server lost' >&2\n"
        "exit 1\n"
    )
    (fake / "pg_dump").chmod(0o755)
    monkeypatch.setenv("PG_BIN_DIR", str(fake))
    out = tmp_path / "b"
    with pytest.raises(BackupError, match="pg_dump failed: pg_dump: error: connection to server lost"):
        backup(db, "neon", backup_dir=out)
    assert list(out.iterdir()) == []
    assert catalog_of(db).last_attempt("neon").status == "failed"  # type: ignore[union-attr]
    assert catalog_of(db).newest_verified("neon") is None


def test_pg_dump_older_than_the_server_is_refused(db: DatabaseManager, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    installs = [i for i in binaries.find_installs() if i.major < 16]
    if not installs:
        pytest.skip("no PostgreSQL client older than 16 installed")
    monkeypatch.setattr(binaries, "find_installs", lambda: installs)
    with pytest.raises(ToolNotFoundError, match="no pg_dump of major version 16 or newer"):
        backup(db, "neon", backup_dir=tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_unknown_provider_or_format_is_a_configuration_error(db: DatabaseManager, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        backup(db, "nope", backup_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown backup format"):
        backup(db, fmt="tar", backup_dir=tmp_path)
    with pytest.raises(ConfigError):
        backup(db, "neon", all_providers=True, backup_dir=tmp_path)


def test_password_reaches_tools_only_through_a_passfile(db: DatabaseManager, tmp_path: Path, passwords: list[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[str], dict[str, str]]] = []
    real = subprocess.Popen

    def recording(argv: list[str], *args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        env = kwargs.get("env") or {}
        passfile = env.get("PGPASSFILE")
        calls.append((list(argv), dict(env, _passfile_text=Path(passfile).read_text() if passfile else "")))
        return real(argv, *args, **kwargs)

    monkeypatch.setenv("PGPASSWORD", "inherited-should-not-pass")
    monkeypatch.setattr(subprocess, "Popen", recording)
    from agent_factory.ops.catalog import verify_backup
    from agent_factory.ops.restore import restore

    [made] = backup(db, "neon", fmt="plain", backup_dir=tmp_path)
    verify_backup(db, made.path, deep=True)
    restore(db, "neon", made.path, backup_dir=tmp_path)
    tools = {Path(argv[0]).name for argv, _ in calls}
    assert {"pg_dump", "psql"} <= tools
    for argv, env in calls:
        for secret in passwords:
            assert not any(secret in arg for arg in argv)
        assert "PGPASSWORD" not in env
        if any(a.startswith("--dbname=") for a in argv):
            assert env["PGPASSFILE"] and env["_passfile_text"].startswith("*:*:*:*:")
            assert not Path(env["PGPASSFILE"]).exists()  # removed after the run


def test_password_never_printed_logged_or_stored(env: dict[str, str], passwords: list[str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    assert main(["-v", "backup", "--all-providers"]) == 0
    [dump] = sorted(Path("backups").glob("neon-*.dump"))
    assert main(["backups", "list"]) == 0
    assert main(["backups", "verify", str(dump), "--deep"]) == 0
    assert main(["--json", "restore", "--backup", str(dump), "--dry-run"]) == 0
    assert main(["restore", "--provider", "neon", "--backup", str(dump), "--yes"]) == 0
    # A failure path too: a wrong password must not be echoed either.
    wrong = "wrong-Secret-4242"
    params = conninfo_to_dict(env["NEON_DB_URL"])
    params["password"] = wrong
    monkeypatch.setenv("NEON_DB_URL", make_conninfo(**params))
    assert main(["backup", "--provider", "neon"]) == 1

    out, err = capfd.readouterr()
    assert "[OK] neon" in out and "error:" in err
    blobs = [out, err, caplog.text]
    blobs += [p.read_text() for p in Path("backups").glob("*.manifest.json")]
    blobs += [p.read_bytes().decode("latin-1") for p in Path(env["AGENT_FACTORY_STATE_DIR"]).rglob("*") if p.is_file()]
    for secret in [*passwords, wrong]:
        for blob in blobs:
            assert secret not in blob


def test_backup_is_restorable_by_plain_pg_restore(db: DatabaseManager, local: Any, tmp_path: Path) -> None:
    seed(db)
    [made] = backup(db, "neon", backup_dir=tmp_path)
    expected = checksums(db, "neon")
    fresh = "af_test_plain_restore"
    admin = local.admin_url("neon")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {fresh}")
        conn.execute(f"CREATE DATABASE {fresh} OWNER agent")
    with psycopg.connect(make_conninfo(admin, dbname=fresh), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")  # as on any provider: its admin enables pgvector
    try:
        pg_restore, _ = binaries.find_tool("pg_restore", min_major=16)
        params = conninfo_to_dict(local.url("neon"))
        password = params.pop("password")
        params["dbname"] = fresh
        # --no-comments: the extension's comment belongs to its owner (the admin), not to this role
        run = subprocess.run([str(pg_restore), "--no-comments", "--dbname", make_conninfo(**params), str(made.path)],
                             env={**os.environ, "PGPASSWORD": password}, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        url = make_conninfo(**params, password=password)
        with psycopg.connect(url) as conn:
            for table in TABLES:
                assert checksum(conn, table) == expected[table], table
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {fresh} WITH (FORCE)")


def test_backup_and_restore_record_in_the_managers_state_store(env, tmp_path: Path) -> None:
    from agent_factory.ops.restore import restore
    from tests.conftest import make_config

    mine = StateStore(tmp_path / "injected")
    config = make_config(env)
    with DatabaseManager(config, state=mine) as db:
        assert db.state is mine
        [made] = backup(db, "neon", backup_dir=tmp_path / "b")
        restore(db, "neon", made.path, backup_dir=tmp_path / "b")
    recorded = {r.path: r.purpose for r in BackupCatalog(mine).entries()}
    assert recorded[str(made.path.absolute())] == "manual" and "pre-restore" in recorded.values()
    assert [r.status for r in BackupCatalog(mine).restores()] == ["ok"]
    default = BackupCatalog(StateStore(config.state_dir))
    assert str(made.path.absolute()) not in [r.path for r in default.entries()] and default.restores() == []
