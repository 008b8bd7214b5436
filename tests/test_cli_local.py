"""`agent-factory local ...` as operators run it: a real subprocess against real servers."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

from agent_factory.local import cluster as local_cluster
from agent_factory.schema import load_migrations
from tests.conftest import wait_for_failovers


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent_factory.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_local_kill_then_queries_succeed_on_supabase(db, local):
    db.execute_query("SELECT 1")
    result = _cli("local", "--dir", str(local.base_dir), "kill", "neon")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("killed local provider neon (postmaster pid ")
    assert db.execute_query("SELECT current_setting('port')", fetch_mode="one") == (str(local.get("supabase").port),)
    events = wait_for_failovers(db, 1)
    assert [(e.from_provider, e.to_provider) for e in events] == [("neon", "supabase")]

    status = _cli("local", "--dir", str(local.base_dir), "status", "--json")
    rows = {r["name"]: r for r in json.loads(status.stdout)["result"]}
    assert rows["neon"]["running"] is False and rows["supabase"]["running"] is True

    started = _cli("local", "--dir", str(local.base_dir), "start", "neon")
    assert started.returncode == 0 and local.pid("neon") is not None


def test_local_up_is_idempotent_and_writes_a_private_env_file(local, tmp_path, passwords):
    env_file = tmp_path / ".env"
    env_file.write_text("TELEGRAM_CHAT_ID=12345\n")
    result = _cli("local", "--dir", str(local.base_dir), "--env-file", str(env_file), "up", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    target = load_migrations()[-1].version
    assert "[OK] neon: 127.0.0.1:" in result.stdout and f"schema v{target}" in result.stdout
    # pgserver's PostgreSQL 16 (neon, railway) bundles pgvector; Debian's 15 (supabase) has none.
    assert re.search(r"^\[OK\] neon: .*, pgvector$", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^\[OK\] supabase: .*, no pgvector \(text search only\)$", result.stdout, re.MULTILINE)
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    content = env_file.read_text()
    assert "TELEGRAM_CHAT_ID=12345" in content  # other settings are kept
    for name in ("neon", "supabase", "railway"):  # URLs as .env.example shows them
        assert re.search(rf"^{name.upper()}_DB_URL=postgresql://agent:[^@\s]+@127\.0\.0\.1:\d+/agent_factory$",
                         content, re.MULTILINE), content.replace(local.password(name), "***")
    assert not any(p in result.stdout + result.stderr for p in passwords)


def test_local_commands_refuse_unknown_providers(local):
    result = _cli("local", "--dir", str(local.base_dir), "kill", "mongo")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no local provider named 'mongo'; known: neon, supabase, railway"
    assert "Traceback" not in result.stderr


def test_everything_under_the_local_dir_is_private(local):
    (local.base_dir / "providers.json").chmod(0o644)  # as an older version left it: `up` tightens it
    local.up()
    service = local_cluster._service_user()
    base = local.base_dir.stat()
    if service is None:
        assert stat.S_IMODE(base.st_mode) == 0o700
    else:  # the servers' user may pass through to its data; nobody else may
        assert (stat.S_IMODE(base.st_mode), base.st_gid) == (0o710, service.pw_gid)
    loose = []
    for path in local.base_dir.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077 and not path.is_symlink():
            loose.append(f"{path.relative_to(local.base_dir)} {mode:o}")
    assert loose == []
    for name in local.providers():
        log = local.base_dir / name / "server.log"
        assert log.stat().st_size > 0, "the server writes its log"
        if service is not None:
            assert log.stat().st_uid == service.pw_uid and (local.base_dir / name / "data").stat().st_uid == \
                service.pw_uid
