"""`agent-factory sync`, the monitor's warm backups, the sync-lag rule and verify's lag lines."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest

from agent_factory.cli import main
from agent_factory.ops.alerts import MonitorSettings
from agent_factory.ops.monitor import run_monitor_once
from agent_factory.ops.sync import backup_lags, sync
from agent_factory.ops.verify import verify
from agent_factory.replication import TABLES
from agent_factory.replication.watermarks import LOCK_KEY
from agent_factory.state.store import StateStore, utcnow

from ..replication.conftest import empty, one_of_each, setting, snapshot, value_of

SETTINGS = MonitorSettings(delivery_timeout=3, backup_max_age=None, fire_after=1)


@pytest.fixture
def clean(db):
    empty(db)
    return db


def test_cli_syncs_a_pair_with_progress_lines_and_a_summary(cli_env, clean, capsys, passwords):
    one_of_each(clean, "neon", "cli")
    assert main(["sync", "--from", "neon", "--to", "supabase"]) == 0
    captured = capsys.readouterr()
    progress = [line for line in captured.err.splitlines() if line.startswith("neon -> supabase  ")]
    assert len(progress) == len(TABLES)  # one line per table (supabase has no pgvector-only tables)
    assert any("settings" in line and "1 copied" in line for line in progress)
    assert "neon -> supabase: 12 rows copied, 0 conflicts resolved, 0 tombstones applied, lag " in captured.out
    assert "1 syncs: 12 rows copied" in captured.out
    assert snapshot(clean, "neon") == snapshot(clean, "supabase")
    [run] = [r for r in StateStore(cli_env["AGENT_FACTORY_STATE_DIR"]).latest_syncs() if r.target == "supabase"]
    assert run.ok and run.rows_copied == 12 and run.lag_s is not None and run.synced_through is not None
    assert not any(p in captured.out + captured.err for p in passwords)


def test_cli_all_json_converges_and_reports_totals(cli_env, clean, capsys):
    setting(clean, "neon", "a", "1")
    setting(clean, "supabase", "b", "2")
    setting(clean, "railway", "c", "3", deleted=True)
    assert main(["--json", "sync", "--all"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is True
    result = payload["result"]
    assert result["hub"] == "neon" and result["ok"] is True
    assert result["rows_copied"] == sum(p["rows_copied"] for p in result["pairs"]) > 0
    assert [(p["source"], p["target"]) for p in result["pairs"]] == [
        ("supabase", "neon"), ("railway", "neon"), ("neon", "supabase"), ("neon", "railway")]
    assert sum(p["tombstones_applied"] for p in result["pairs"]) == 2  # railway -> neon, then neon -> supabase
    states = [snapshot(clean, n) for n in ("neon", "supabase", "railway")]
    assert states[0] == states[1] == states[2]


def test_cli_dry_run_writes_nothing_and_records_nothing(cli_env, clean, capsys):
    setting(clean, "neon", "a", "1")
    assert main(["sync", "--from", "neon", "--to", "railway", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "neon -> railway: 1 rows would copy" in out
    assert value_of(clean, "railway", "a") is None
    assert StateStore(cli_env["AGENT_FACTORY_STATE_DIR"]).latest_syncs() == []


@pytest.mark.parametrize("argv, message", [
    (["sync"], "name a pair (--from A --to B) or ask for --all"),
    (["sync", "--all", "--from", "neon"], "not both"),
    (["sync", "--from", "neon"], "needs both --from and --to"),
    (["sync", "--from", "neon", "--to", "nope"], "unknown provider 'nope'"),
    (["sync", "--from", "neon", "--to", "neon"], "into itself"),
])
def test_cli_usage_errors_exit_2(cli_env, capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_busy_target_exits_1_with_one_line(cli_env, clean, capsys):
    with psycopg.connect(cli_env["SUPABASE_DB_URL"], autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        assert main(["sync", "--from", "neon", "--to", "supabase"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: provider supabase is busy: another sync into it is running")


def test_all_with_a_provider_down_skips_it_and_fails(cli_env, clean, local, capsys):
    local.kill("railway")
    setting(clean, "supabase", "x", "1")
    assert main(["sync", "--all"]) == 1
    out = capsys.readouterr().out
    assert "skipped railway (unreachable)" in out
    assert value_of(clean, "neon", "x") == ("1", False)


def test_monitor_keeps_backups_warm_and_records_their_lag(make_db, clean):
    db = make_db()
    store = StateStore(db.config.state_dir)
    setting(clean, "neon", "warm", "yes")
    result = run_monitor_once(db, store, [], settings=SETTINGS)
    assert [(s.source, s.target, s.ok) for s in result.syncs] == [("neon", "supabase", True),
                                                                   ("neon", "railway", True)]
    assert value_of(clean, "supabase", "warm") == ("yes", False)
    assert value_of(clean, "railway", "warm") == ("yes", False)
    lags = {lag.backup: lag for lag in backup_lags(db, store)}
    assert set(lags) == {"supabase", "railway"}
    assert all(lag.last_ok and lag.lag_s(utcnow()) < 600 for lag in lags.values())
    assert not [a for a in result.alerts if "sync-lag" in a.key and a.action == "fired"]


def test_a_backup_behind_by_more_than_the_limit_fires_a_warning(make_db, clean, local):
    db = make_db()
    store = StateStore(db.config.state_dir)
    run_monitor_once(db, store, [], settings=SETTINGS)
    local.kill("railway")
    later = utcnow() + timedelta(minutes=11)
    result = run_monitor_once(db, store, [], later, settings=SETTINGS)
    [lag] = [a for a in result.alerts if a.key == "agent-factory/sync-lag/railway"]
    assert lag.action == "fired" and lag.severity.value == "WARNING"
    assert "backup railway is 11." in lag.detail and "behind neon (limit 10 min)" in lag.detail
    assert "last sync failed: provider railway does not answer" in lag.detail
    assert not [a for a in result.alerts if a.key == "agent-factory/sync-lag/supabase" and a.action == "fired"]
    [run] = [r for r in store.latest_syncs() if r.target == "railway"]
    assert not run.ok and run.synced_through is not None  # the last known point is kept


def test_verify_prints_each_backups_lag(make_db, clean, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    db = make_db()
    sync(db, "neon", "supabase", store=StateStore(db.config.state_dir))
    report = verify(db)
    [test] = [t for t in report.tests if t.number == 7]
    lines = [str(c) for c in test.checks]
    assert any(line.startswith("[OK] supabase: 0.") and "min behind neon" in line for line in lines)
    assert any(line.startswith("[INFO] railway: no successful sync from neon on record") for line in lines)
