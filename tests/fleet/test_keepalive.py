"""DATABASE_DEAD_PEER_TIMEOUT reaches every connection the project opens and every client tool's conninfo."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent_factory.config import load_config
from agent_factory.core import DatabaseManager
from agent_factory.errors import ConfigError
from agent_factory.keepalive import dead_peer_params
from agent_factory.ops import pgtools
from agent_factory.ops.backup import backup
from agent_factory.ops.catalog import verify_backup
from agent_factory.ops.restore import restore
from tests.conftest import make_config

EXPECTED = {"keepalives": "1", "keepalives_idle": "1", "keepalives_interval": "1", "keepalives_count": "2",
            "tcp_user_timeout": "3000"}  # DATABASE_DEAD_PEER_TIMEOUT=3


def _carries(params: dict[str, str]) -> bool:
    return all(params.get(k) == v for k, v in EXPECTED.items())


@pytest.mark.parametrize("seconds", [2, 3, 5, 10, 61, 600])
def test_the_settings_add_up_to_the_timeout(seconds):
    params = dead_peer_params(seconds)
    assert params["tcp_user_timeout"] == seconds * 1000
    assert params["keepalives_idle"] + params["keepalives_count"] * params["keepalives_interval"] == seconds
    assert min(params["keepalives_idle"], params["keepalives_interval"], params["keepalives_count"]) >= 1


def test_the_setting_is_validated_with_a_default_of_ten():
    base = {"NEON_DB_URL": "postgresql://u:p@127.0.0.1:5432/db"}
    assert load_config(env=base, env_file=None).dead_peer_timeout == 10
    assert load_config(env={**base, "DATABASE_DEAD_PEER_TIMEOUT": "0"}, env_file=None).dead_peer_timeout == 0
    assert dead_peer_params(0) == {"keepalives": 0, "tcp_user_timeout": 0}
    for bad in ("1", "-3", "2.5", "soon"):
        with pytest.raises(ConfigError, match="DATABASE_DEAD_PEER_TIMEOUT"):
            load_config(env={**base, "DATABASE_DEAD_PEER_TIMEOUT": bad}, env_file=None)


@pytest.fixture
def kdb(env, db) -> DatabaseManager:
    manager = DatabaseManager(make_config(env, DATABASE_DEAD_PEER_TIMEOUT="3"))
    yield manager
    manager.close()


def test_pooled_probe_session_and_ops_connections_carry_the_settings(kdb, monkeypatch):
    opened: list[dict[str, str]] = []
    real = psycopg.Connection.connect

    def spy(*args: Any, **kwargs: Any) -> psycopg.Connection:
        conn = real(*args, **kwargs)
        opened.append(conn.info.get_parameters())
        return conn

    monkeypatch.setattr(psycopg.Connection, "connect", spy)  # the pool's connections
    monkeypatch.setattr(psycopg, "connect", spy)  # probes, sessions, ops
    assert kdb.health_check("supabase", force=True)  # a probe
    with kdb.provider_connection("neon") as pooled:
        assert _carries(pooled.info.get_parameters())
    with kdb.session_connection("railway", "sync") as session:
        assert _carries(session.info.get_parameters())
    with pgtools.target_for(kdb, "neon").connect(purpose="test") as ops:
        assert _carries(ops.info.get_parameters())
    assert len(opened) >= 4 and all(_carries(p) for p in opened), opened


def test_client_tools_get_the_settings_in_their_conninfo_without_the_password(kdb, tmp_path, passwords,
                                                                             monkeypatch):
    argvs: list[list[str]] = []
    real = subprocess.Popen

    def recording(argv: list[str], *args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        argvs.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording)
    [custom] = backup(kdb, "neon", fmt="custom", backup_dir=tmp_path)
    [plain] = backup(kdb, "neon", fmt="plain", backup_dir=tmp_path)
    verify_backup(kdb, plain.path, deep=True)
    verify_backup(kdb, custom.path, deep=True)
    restore(kdb, "neon", custom.path, backup_dir=tmp_path)
    with_conninfo = [a for a in argvs if any(x.startswith("--dbname=") for x in a)]
    tools = {Path(a[0]).name for a in with_conninfo}
    assert {"pg_dump", "pg_restore", "psql"} <= tools, tools
    for argv in with_conninfo:
        conninfo = next(x for x in argv if x.startswith("--dbname="))[len("--dbname="):]
        assert _carries(psycopg.conninfo.conninfo_to_dict(conninfo)), argv[0]
        assert not any(secret in arg for secret in passwords for arg in argv)
