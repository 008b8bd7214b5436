"""`agent-factory local ...` as operators run it: a real subprocess against real servers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

from agent_factory.state import StateStore


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent_factory.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_local_kill_then_queries_succeed_on_supabase_within_a_second(db, local):
    db.execute_query("SELECT 1")
    result = _cli("local", "--dir", str(local.base_dir), "kill", "neon")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("killed local provider neon (postmaster pid ")
    killed_at = time.monotonic()
    assert db.execute_query("SELECT current_setting('port')", fetch_mode="one") == (str(local.get("supabase").port),)
    assert time.monotonic() - killed_at < 1.0
    events = StateStore(db.config.state_dir).failovers()
    assert [(e.from_provider, e.to_provider) for e in events] == [("neon", "supabase")]

    status = _cli("--json", "local", "--dir", str(local.base_dir), "status")
    rows = {r["name"]: r for r in json.loads(status.stdout)["result"]}
    assert rows["neon"]["running"] is False and rows["supabase"]["running"] is True

    started = _cli("local", "--dir", str(local.base_dir), "start", "neon")
    assert started.returncode == 0 and local.pid("neon") is not None


def test_local_up_is_idempotent_and_writes_a_private_env_file(local, tmp_path, passwords):
    env_file = tmp_path / ".env"
    env_file.write_text("TELEGRAM_CHAT_ID=12345\n")
    result = _cli("local", "--dir", str(local.base_dir), "--env-file", str(env_file), "up", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[OK] neon: 127.0.0.1:" in result.stdout and "schema v3" in result.stdout
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    content = env_file.read_text()
    assert "TELEGRAM_CHAT_ID=12345" in content  # other settings are kept
    assert all(f"{n.upper()}_DB_URL=" in content for n in ("neon", "supabase", "railway"))
    assert not any(p in result.stdout + result.stderr for p in passwords)


def test_local_commands_refuse_unknown_providers(local):
    result = _cli("local", "--dir", str(local.base_dir), "kill", "mongo")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no local provider named 'mongo'; known: neon, supabase, railway"
    assert "Traceback" not in result.stderr
