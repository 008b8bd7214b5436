"""The monthly statistics tasks: `maintenance analyze`, pool figures and review, query trends."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from agent_factory.cli import main
from agent_factory.core import DatabaseManager
from agent_factory.errors import PoolExhaustedError
from agent_factory.ops.alerts import MonitorSettings
from agent_factory.ops.maintenance import analyze, pool_review, query_trends, record_pool_figures
from agent_factory.ops.monitor import run_monitor_once
from agent_factory.state import StateStore, maintenance
from agent_factory.state.maintenance import QuerySample

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=timezone.utc)


def test_analyze_runs_only_where_statistics_are_stale(db: DatabaseManager) -> None:
    analyze(db, "neon", check=False)  # start from current statistics
    db.execute_query("INSERT INTO settings (id, setting_key, setting_value) "
                     "SELECT gen_random_uuid(), 'k' || g, 'v' FROM generate_series(1, 200) g", fetch_mode="none")
    deadline = time.monotonic() + 10  # the server publishes table statistics within about a second
    while True:
        planned = analyze(db, "neon", check=True)[0]
        stale = {t.table for t in planned.tables if t.stale}
        if "settings" in stale or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "settings" in stale and not planned.changed and "would analyze" in planned.summary
    done = analyze(db, "neon", check=False)[0]
    assert {t.table for t in done.tables if t.analyzed} == stale and done.changed
    assert all(t.autovacuum_enabled for t in done.tables)
    again = analyze(db, "neon", check=True)[0]
    assert "settings" not in {t.table for t in again.tables if t.stale}


def test_analyze_cli_reports_every_provider(cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["maintenance", "analyze", "--dry-run", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["provider"] for r in result["result"]] == ["neon", "supabase", "railway"]


def test_the_monitor_records_pool_figures_and_exhaustion_is_counted(make_db) -> None:
    db = make_db(DATABASE_POOL_MIN_SIZE="1", DATABASE_POOL_MAX_SIZE="1", DATABASE_POOL_TIMEOUT="0.3")
    store = StateStore(db.config.state_dir)
    db.execute_query("SELECT 1")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.transaction() as cur:
            cur.execute("SELECT 1")
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    with pytest.raises(PoolExhaustedError):
        db.execute_query("SELECT 2")
    release.set()
    thread.join()
    run_monitor_once(db, store, [], T0, settings=MonitorSettings(backup_max_age=None, sync_backups=False))
    samples = maintenance.pool_samples(store, "neon")
    server = [s for s in samples if s.source == "server"]
    pools = [s for s in samples if s.source.startswith("pool:")]
    assert server and server[0].figures["connections"] >= 1 and server[0].figures["max_connections"] > 0
    assert pools and pools[0].figures["pool_exhausted"] == 1
    review = {r.provider: r for r in pool_review(store, db.config.pool_max_size, T0 - timedelta(days=1))}
    assert review["neon"].pool_exhausted == 1 and "DATABASE_POOL_MAX_SIZE" in review["neon"].advice
    assert review["supabase"].pool_exhausted == 0 and "is enough" in review["supabase"].advice


def test_pool_review_cli(make_db, cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    db = make_db()
    record_pool_figures(db, StateStore(db.config.state_dir), ["neon"], datetime.now(timezone.utc))
    assert main(["maintenance", "pools"]) == 0
    assert "neon: peak" in capsys.readouterr().out


def test_query_trends_compare_the_first_and_last_interval(tmp_path) -> None:
    store = StateStore(tmp_path)
    snapshots = [(0, 100, 100.0), (1, 200, 200.0), (2, 300, 600.0)]  # 1 ms per call, then 4 ms per call
    with store.connect() as conn:
        maintenance.add_query_samples(conn, [QuerySample("neon", T0 + timedelta(days=d), "SELECT $1", calls, total, 1)
                                             for d, calls, total in snapshots])
        maintenance.add_query_samples(conn, [QuerySample("neon", T0, "SELECT once", 5, 5.0, 1)])
    trends = query_trends(store, "neon", T0 - timedelta(days=1))
    assert [t.query for t in trends] == ["SELECT $1"]  # one snapshot is no trend
    assert trends[0].first_mean_ms == pytest.approx(1.0) and trends[0].last_mean_ms == pytest.approx(4.0)
    assert trends[0].change_pct == pytest.approx(300.0) and trends[0].calls == 200
