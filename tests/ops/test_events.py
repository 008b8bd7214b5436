"""failovers, errors and slow-queries: the runbook's optional checks, on real local providers."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent_factory.cli import main
from agent_factory.errors import ConfigError
from agent_factory.ops.alerts import MonitorSettings
from agent_factory.ops.events import errors, failovers, parse_since, slow_queries
from agent_factory.ops.monitor import run_monitor_once
from agent_factory.state import StateStore
from tests.conftest import wait_for_failovers

NOW = datetime(2025, 1, 6, 8, 0, tzinfo=timezone.utc)


def test_parse_since():
    assert parse_since("24h", NOW) == NOW - timedelta(hours=24)
    assert parse_since("30m", NOW) == NOW - timedelta(minutes=30)
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("2025-01-01T00:00") == datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert parse_since("2025-01-01T01:00+01:00") == datetime(2025, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match=r"e\.g\. 24h"):
        parse_since("yesterday")


def test_failovers_and_errors_from_the_state_store(make_db, local):
    db = make_db()
    store = StateStore(db.config.state_dir)
    before = datetime.now(timezone.utc)
    local.kill("neon")
    db.execute_query("SELECT 1")
    wait_for_failovers(db, 1)
    [event] = failovers(store, since=before)
    assert (event.from_provider, event.to_provider) == ("neon", "supabase")
    assert failovers(store, since=datetime.now(timezone.utc) + timedelta(minutes=1)) == []

    run_monitor_once(db, store, [], settings=MonitorSettings(backup_max_age=None))
    [error] = errors(store, since=before)
    assert (error.source, error.subject, error.message) == ("health", "neon", "connection refused")
    assert errors(store, since=datetime.now(timezone.utc) + timedelta(minutes=1)) == []


def _clean_env(monkeypatch, tmp_path, env):
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.endswith("_DB_URL") or k.startswith("DATABASE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_cli_failovers_and_errors(monkeypatch, tmp_path, env, capsys):
    _clean_env(monkeypatch, tmp_path, env)
    assert main(["failovers"]) == 0
    assert capsys.readouterr().out.startswith("no failovers since ")
    StateStore(env["AGENT_FACTORY_STATE_DIR"]).record_failover("neon", "supabase", "connection refused")
    assert main(["failovers", "--since", "1h"]) == 0
    out = capsys.readouterr().out
    assert "neon -> supabase: connection refused" in out and "1 switches since" in out
    assert main(["--json", "failovers"]) == 0
    assert json.loads(capsys.readouterr().out)["result"][0]["to_provider"] == "supabase"
    StateStore(env["AGENT_FACTORY_STATE_DIR"]).record_failback_postponed("supabase", "neon", "requests still ran")
    assert main(["failovers"]) == 0
    out = capsys.readouterr().out
    assert "fail-back supabase -> neon postponed: requests still ran" in out
    assert "1 switches, 1 fail-backs postponed since" in out
    assert main(["--json", "failovers"]) == 0
    assert [e["kind"] for e in json.loads(capsys.readouterr().out)["result"]] == ["switch", "failback-postponed"]
    assert main(["errors", "--since", "2h"]) == 0
    assert capsys.readouterr().out.startswith("no errors recorded since")
    with pytest.raises(SystemExit) as info:
        main(["failovers", "--since", "last tuesday"])
    assert info.value.code == 2
    assert "e.g. 24h" in capsys.readouterr().err


def _has_pg_stat_statements(db, name: str) -> bool:
    with db.provider_connection(name) as conn:
        row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()
        conn.rollback()
    return row is not None


def test_slow_queries_where_available_and_a_clear_message_where_not(make_db, passwords, local):
    db = make_db()
    available = {name: _has_pg_stat_statements(db, name) for name in db.providers}
    for name, has_it in available.items():
        if has_it:
            # Start from empty statistics: the suite's own DDL (CREATE DATABASE, index builds) is slower on average.
            app_db = conninfo_to_dict(local.url(name))["dbname"]
            with psycopg.connect(make_conninfo(local.admin_url(name), dbname=app_db), autocommit=True) as admin:
                admin.execute("SELECT pg_stat_statements_reset()")
            for _ in range(3):
                with db.provider_connection(name) as conn:
                    conn.execute("SELECT count(*) FROM knowledge_atoms WHERE title = %s", ["x"]).fetchall()
                    conn.execute("SELECT pg_sleep(0.02)")
                    conn.commit()
        report = slow_queries(db, name, limit=5)
        assert report.provider == name and report.available is has_it
        if has_it:
            assert 1 <= len(report.queries) <= 5
            assert any("pg_sleep" in q.query for q in report.queries)
            assert report.queries == sorted(report.queries, key=lambda q: q.mean_ms, reverse=True)
            assert all(p not in q.query for q in report.queries for p in passwords)
        else:
            assert "pg_stat_statements" in report.message and "shared_preload_libraries" in report.message
    if not any(available.values()):
        pytest.skip("no local provider has pg_stat_statements (needs a server build that ships it)")


def test_slow_queries_default_to_the_primary_and_reject_unknown_providers(make_db):
    db = make_db()
    assert slow_queries(db).provider == "neon"
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        slow_queries(db, "nope")


def test_cli_slow_queries(monkeypatch, tmp_path, env, capsys, passwords):
    _clean_env(monkeypatch, tmp_path, env)
    for name in ("neon", "supabase", "railway"):
        assert main(["slow-queries", "--provider", name, "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("provider ") >= 3
    assert main(["slow-queries", "--provider", "nope"]) == 2
    assert "configuration error: unknown provider 'nope'" in capsys.readouterr().err
    assert main(["--json", "slow-queries"]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["provider"] == "neon"
    assert all(p not in out for p in passwords)
