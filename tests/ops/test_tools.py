"""Client tools get a minimal environment and SSL-capable builds; a direct URL serves the ops that need a session."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from agent_factory.config import load_config
from agent_factory.core import DatabaseManager
from agent_factory.local.binaries import find_installs, supports_ssl
from agent_factory.ops import pgtools
from agent_factory.ops.backup import backup, read_manifest

HOSTILE = {
    "PGSSLMODE": "require",  # the local servers have no TLS: pg_dump would fail
    "PGOPTIONS": "-c statement_timeout=1",
    "PGDATABASE": "no_such_database",
    "PGPASSWORD": "inherited-should-not-pass",
    "AWS_SECRET_ACCESS_KEY": "cloud-secret-should-not-pass",
    "DATABASE_URL": "postgresql://x:leak@elsewhere/db",
}


def env_tool() -> pgtools.Tool:
    path = shutil.which("env")
    assert path, "the env program is needed"
    return pgtools.Tool("env", Path(path), 0, "0")


def test_a_tool_sees_path_home_locale_and_its_passfile_only(db: DatabaseManager, monkeypatch: pytest.MonkeyPatch,
                                                            passwords: list[str]) -> None:
    for key, value in {**HOSTILE, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "HOME": "/home/op"}.items():
        monkeypatch.setenv(key, value)
    target = pgtools.target_for(db, "neon")
    seen = dict(line.split("=", 1) for line in pgtools.run_tool(env_tool(), [], target).splitlines() if "=" in line)
    assert set(seen) <= {"PATH", "HOME", "LANG", "LANGUAGE", "LD_LIBRARY_PATH", "PGPASSFILE"} | {
        k for k in seen if k.startswith("LC_")}
    assert seen["LC_ALL"] == "C.UTF-8" and seen["HOME"] == "/home/op" and seen["PATH"]
    assert seen["PGPASSFILE"].endswith("/pgpass") and not Path(seen["PGPASSFILE"]).exists()  # gone afterwards
    assert not any(p in "\n".join(f"{k}={v}" for k, v in seen.items()) for p in passwords)


def test_pg_dump_runs_despite_hostile_caller_variables(db: DatabaseManager, monkeypatch: pytest.MonkeyPatch) -> None:
    target = pgtools.target_for(db, "neon")
    with target.connect() as conn:
        num, _ = pgtools.server_version(conn)
    tool = pgtools.pick_tool("pg_dump", num // 10000)
    for key, value in HOSTILE.items():
        monkeypatch.setenv(key, value)
    out = pgtools.run_tool(tool, [f"--dbname={target.conninfo}", "--schema-only", "--table=settings"], target)
    assert "CREATE TABLE public.settings" in out


def test_ssl_support_is_detected_per_installation_and_required_when_asked() -> None:
    installs = [i for i in find_installs() if i.tool("pg_dump")]
    assert installs
    for install in installs:
        assert supports_ssl(install) in (True, False)
    if any(supports_ssl(i) for i in installs):
        tool = pgtools.pick_tool("pg_dump", None, ssl=True)
        assert supports_ssl(next(i for i in installs if i.tool("pg_dump") == tool.path))


def test_remote_targets_need_ssl_and_loopback_ones_do_not(db: DatabaseManager) -> None:
    assert not pgtools.target_for(db, "neon").needs_ssl
    for query, needed in (("", True), ("?sslmode=disable", False), ("?sslmode=prefer", True),
                          ("?sslmode=require", True)):
        remote = load_config(env={"NEON_DB_URL": f"postgresql://a:b@db.example.com/app{query}"}, env_file=None)
        assert pgtools.target_for(SimpleNamespace(config=remote), "neon").needs_ssl is needed


def test_backups_use_the_direct_url_when_one_is_set(env: dict[str, str], local: Any, tmp_path: Path) -> None:
    # neon's direct URL points at the supabase server here, so the dump shows which URL was used.
    config = load_config(env={**env, "NEON_DIRECT_URL": local.url("supabase")}, env_file=None)
    assert conninfo_to_dict(config.providers["neon"].url)["port"] == str(local.get("neon").port)
    with DatabaseManager(config) as db:
        [result] = backup(db, "neon", backup_dir=tmp_path)
        direct_port = str(local.get("supabase").port)
        assert result.host == f"127.0.0.1:{direct_port}/agent_factory"
        manifest = read_manifest(result.path)
        assert manifest.provider == "neon" and manifest.host == result.host
        with db.provider_connection("supabase") as conn:
            assert manifest.server_version == conn.execute("SHOW server_version").fetchone()[0].split()[0]
        assert db.execute_query("SELECT current_setting('port')", fetch_mode="one") == (str(local.get("neon").port),)
