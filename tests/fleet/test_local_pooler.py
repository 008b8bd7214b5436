"""`agent-factory local up --pooler` and `local status/kill/start/down` with the pooler, as operators run them."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys

import psycopg

from agent_factory.local import LocalPooler

from .conftest import require


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent_factory.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_local_up_pooler_status_kill_start_down(local, tmp_path, passwords):
    require(shutil.which("pgbouncer") is not None or os.path.exists("/usr/sbin/pgbouncer"),
            "pgbouncer is not installed (apt-get install pgbouncer)")
    base, env_file = str(local.base_dir), tmp_path / ".env"
    pooler = LocalPooler(local)
    try:
        up = _cli("local", "--dir", base, "--env-file", str(env_file), "up", "--pooler", cwd=tmp_path)
        assert up.returncode == 0, up.stderr
        assert re.search(r"\[OK\] pgbouncer: 127\.0\.0\.1:\d+ transaction mode in front of neon", up.stdout)
        content = env_file.read_text()
        assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
        assert f"NEON_DB_URL={pooler.url()}" in content and f"NEON_DIRECT_URL={local.url('neon')}" in content
        assert "NEON_PREPARED_STATEMENTS=false" in content and "NEON_POOLER=transaction" in content
        auth = pooler.home / "userlist.txt"
        assert stat.S_IMODE(os.stat(auth).st_mode) == 0o600
        if os.geteuid() == 0:  # PgBouncer refuses root: it runs as the servers' user
            assert os.stat(f"/proc/{pooler.pid()}").st_uid != 0
        with psycopg.connect(pooler.url(), prepare_threshold=None) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("agent_factory",)

        rows = {r["name"]: r for r in json.loads(_cli("local", "--dir", base, "status", "--json").stdout)["result"]}
        assert rows["pgbouncer"]["running"] is True and rows["pgbouncer"]["pooler_for"] == "neon"
        killed = _cli("local", "--dir", base, "kill", "pgbouncer")
        assert killed.returncode == 0 and killed.stdout.startswith("killed local pgbouncer (pid ")
        assert pooler.pid() is None
        assert "[DOWN] pgbouncer" in _cli("local", "--dir", base, "status").stdout
        assert _cli("local", "--dir", base, "kill", "pgbouncer").returncode != 0  # not running: one line
        started = _cli("local", "--dir", base, "start", "pgbouncer")
        assert started.returncode == 0 and pooler.pid() is not None
        down = _cli("local", "--dir", base, "down")
        assert down.returncode == 0 and pooler.pid() is None
        for result in (up, killed, started, down):
            assert not any(p in result.stdout + result.stderr for p in passwords)
    finally:
        pooler.stop()
        shutil.rmtree(pooler.home, ignore_errors=True)
