"""The state store: versioned migrations, the read-only connection and sync runs, on real SQLite files."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent_factory.errors import (
    ConfigError,
    InvalidInputError,
    StateDirError,
    StateStoreError,
    StateStoreMissingError,
)
from agent_factory.state import SCHEMA_VERSION, StateStore, SyncRun, monitoring
from agent_factory.state.schema import _INITIAL, MIGRATIONS

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def old_store(state_dir: Path) -> Path:
    """A store as the code before versioning left it: the initial tables, user_version 0, one heartbeat."""
    state_dir.mkdir(parents=True)
    path = state_dir / "state.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        for ddl in _INITIAL:
            conn.execute(ddl)
        conn.execute("INSERT INTO monitor_runs (started_at, summary) VALUES ('2026-01-01T00:00:00+00:00', 'old')")
    return path


def test_a_new_store_is_created_at_the_current_version(tmp_path):
    store = StateStore(tmp_path / "state")
    with store.connect():
        pass
    assert store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
    assert {"alert_events", "sync_runs", "monitor_runs"} <= tables(store.path)
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"


def test_an_unversioned_store_gains_the_new_columns_and_tables_and_keeps_its_rows(tmp_path):
    path = old_store(tmp_path / "state")
    assert "serving_provider" not in columns(path, "monitor_runs")
    store = StateStore(tmp_path / "state")
    assert store.schema_version() == 0  # reading migrates nothing
    assert monitoring.heartbeats(store)[0].summary == "old"  # the first connect() migrates
    assert store.schema_version() == SCHEMA_VERSION
    assert {"primary_provider", "serving_provider"} <= set(columns(path, "monitor_runs"))
    assert columns(path, "sync_runs") == ["id", "at", "source", "target", "ok", "rows_copied", "conflicts",
                                          "tombstones", "synced_through", "lag_s", "duration_s", "error"]
    assert columns(path, "alert_events") == ["id", "at", "alert_key", "rule", "severity", "subject", "event",
                                             "summary"]
    # a second StateStore (another process, later) finds nothing to do
    with StateStore(tmp_path / "state").connect() as conn:
        assert conn.execute("SELECT count(*) FROM monitor_runs").fetchone()[0] == 1


def _open_and_write(state_dir: str, n: int) -> None:
    StateStore(state_dir).record_sync("neon", f"backup{n}", ok=True, rows_copied=n)


def test_processes_opening_an_old_store_at_once_migrate_it_once(tmp_path):
    old_store(tmp_path / "state")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_open_and_write, args=(str(tmp_path / "state"), n)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = StateStore(tmp_path / "state")
    assert store.schema_version() == SCHEMA_VERSION
    assert sorted(s.rows_copied for s in store.latest_syncs()) == [0, 1, 2, 3]


def test_a_failed_migration_leaves_the_store_at_its_old_version(tmp_path):
    path = old_store(tmp_path / "state")
    with sqlite3.connect(path) as conn:  # a table in the way of migration 3
        conn.execute("CREATE TABLE sync_runs (x INTEGER)")
    with pytest.raises(sqlite3.OperationalError, match="sync_runs already exists"):
        with StateStore(tmp_path / "state").connect():
            pass
    assert StateStore(tmp_path / "state").schema_version() == 0
    assert "serving_provider" not in columns(path, "monitor_runs")  # migration 2 rolled back with it


def test_read_is_read_only_and_reports_a_missing_file(tmp_path):
    store = StateStore(tmp_path / "nowhere")
    with pytest.raises(StateStoreMissingError, match=f"no state store at {tmp_path / 'nowhere' / 'state.db'}"):
        with store.read():
            pass
    assert not (tmp_path / "nowhere").exists()
    with store.connect() as conn:
        conn.execute("INSERT INTO failover_events (at, from_provider, to_provider, reason) "
                     "VALUES ('2026-01-01T00:00:00+00:00', 'neon', 'supabase', 'test')")
    with store.read() as conn:
        assert conn.execute("SELECT count(*) FROM failover_events").fetchone()[0] == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM failover_events")


def test_read_does_not_wait_for_a_writer(tmp_path):
    store = StateStore(tmp_path / "state")
    store.record_sync("neon", "supabase", ok=True)
    with store.connect() as writer:  # holds the write lock
        writer.execute("DELETE FROM sync_runs")
        with store.read() as conn:  # sees the last committed snapshot at once
            assert conn.execute("SELECT count(*) FROM sync_runs").fetchone()[0] == 1


def test_record_sync_and_latest_syncs(tmp_path):
    store = StateStore(tmp_path / "state")
    assert store.latest_syncs() == []
    store.record_sync("neon", "supabase", ok=True, rows_copied=10, synced_through=T0, lag_s=3.5, duration_s=0.2)
    store.record_sync("neon", "railway", ok=False, error="connection to postgresql://u:hunter2@h/db refused")
    store.record_sync("neon", "supabase", ok=True, rows_copied=2, conflicts=1, tombstones=4,
                      synced_through=T0 + timedelta(minutes=5), lag_s=1.0)
    railway, supabase = store.latest_syncs()
    assert isinstance(supabase, SyncRun)
    assert (supabase.source, supabase.target, supabase.ok, supabase.rows_copied, supabase.conflicts,
            supabase.tombstones, supabase.lag_s, supabase.duration_s) == ("neon", "supabase", True, 2, 1, 4, 1.0, None)
    assert supabase.synced_through == T0 + timedelta(minutes=5) and supabase.at.tzinfo is not None
    assert railway.target == "railway" and not railway.ok and railway.error is not None
    assert "hunter2" not in railway.error and "refused" in railway.error
    with pytest.raises(AttributeError):
        supabase.ok = False  # type: ignore[misc]


@pytest.mark.parametrize("kwargs, message", [
    ({"source": "", "target": "supabase"}, "source must be a provider name"),
    ({"source": "neon", "target": "neon"}, "does not sync to itself"),
    ({"rows_copied": -1}, "rows_copied must be a whole number"),
    ({"conflicts": 1.5}, "conflicts must be a whole number"),
    ({"lag_s": -2.0}, "lag_s must be seconds"),
    ({"synced_through": datetime(2026, 1, 1)}, "no time zone"),  # noqa: DTZ001 - naive on purpose
])
def test_record_sync_refuses_bad_input_and_writes_nothing(tmp_path, kwargs, message):
    store = StateStore(tmp_path / "state")
    args = {"source": "neon", "target": "supabase", "ok": True, **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        store.record_sync(args.pop("source"), args.pop("target"), **args)
    assert store.latest_syncs() == []


def test_prune_drops_old_history_but_keeps_the_newest_sync_of_each_pair(tmp_path):
    store = StateStore(tmp_path / "state")
    store.record_sync("neon", "supabase", ok=True)
    store.record_sync("neon", "supabase", ok=True, rows_copied=7)
    store.record_sync("neon", "railway", ok=True)
    with store.connect() as conn:
        conn.execute("INSERT INTO alert_events (at, alert_key, rule, severity, event) "
                     "VALUES ('2000-01-01T00:00:00+00:00', 'k', 'r', 'WARNING', 'fired')")
        pruned = monitoring.prune(conn, datetime.now(timezone.utc) + timedelta(days=1))
    assert pruned["sync_runs"] == 1 and pruned["alert_events"] == 1
    assert sorted((s.target, s.rows_copied) for s in store.latest_syncs()) == [("railway", 0), ("supabase", 7)]


def test_a_file_where_the_state_dir_should_be_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "var"
    blocker.write_text("x")
    for state_dir in (blocker, blocker / "below"):
        with pytest.raises(StateDirError) as info:
            StateStore(state_dir).record_failover("neon", "supabase", "r")
        assert isinstance(info.value, ConfigError) and "AGENT_FACTORY_STATE_DIR" in str(info.value)
    assert blocker.read_text() == "x"
    with pytest.raises(StateStoreMissingError):
        StateStore(blocker).schema_version()


def test_a_directory_named_state_db_or_a_foreign_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a" / "state.db").mkdir(parents=True)
    with pytest.raises(StateDirError, match="is a directory, not a state store file"):
        StateStore(tmp_path / "a").failovers()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "state.db").write_bytes(b"\x00garbage" * 200)
    with pytest.raises(StateStoreError, match="not a SQLite database"):
        StateStore(tmp_path / "b").failovers()
    assert (tmp_path / "b" / "state.db").read_bytes() == b"\x00garbage" * 200


def test_the_store_is_private(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "var" / "state")
    store.record_failover("neon", "supabase", "r")
    assert (tmp_path / "var" / "state").stat().st_mode & 0o777 == 0o700
    with store.connect():  # -wal and -shm exist while a connection is open
        files = sorted((tmp_path / "var" / "state").iterdir())
        assert [f.name for f in files] == ["state.db", "state.db-shm", "state.db-wal"]
        assert {f.name: f.stat().st_mode & 0o777 for f in files} == dict.fromkeys((f.name for f in files), 0o600)


def test_a_postponed_fail_back_stored_as_a_self_switch_becomes_its_own_kind(tmp_path):
    path = old_store(tmp_path / "state")
    with sqlite3.connect(path) as conn:  # as DatabaseManager recorded them before migration 5
        conn.executemany("INSERT INTO failover_events (at, from_provider, to_provider, reason) VALUES (?, ?, ?, ?)", [
            ("2026-01-01T00:00:00+00:00", "neon", "supabase", "neon failed: connection refused"),
            ("2026-01-01T00:01:00+00:00", "supabase", "supabase",
             "fail-back to neon postponed: merging the writes made on supabase failed: busy"),
        ])
    store = StateStore(tmp_path / "state")
    switch, postponed = store.failovers()
    assert (switch.kind, switch.from_provider, switch.to_provider) == ("switch", "neon", "supabase")
    assert switch.title == "neon -> supabase"
    assert (postponed.kind, postponed.from_provider, postponed.to_provider) == ("failback-postponed", "supabase",
                                                                                 "neon")
    assert postponed.reason == "merging the writes made on supabase failed: busy"
    assert postponed.title == "fail-back supabase -> neon postponed"
    recorded = store.record_failback_postponed("railway", "neon", "requests still ran on railway after 35 s")
    assert store.failovers()[-1] == recorded and recorded.kind == "failback-postponed"


def test_divergence_rows_keep_the_newest_per_backup_through_pruning(tmp_path):
    from agent_factory.state.divergence import Divergence, add_divergence, latest_divergence

    store = StateStore(tmp_path / "state")
    old = Divergence("supabase", "neon", T0, 3, T0 - timedelta(minutes=4), True, run_id=1)
    new = Divergence("supabase", "neon", T0 + timedelta(days=40), 0, None, True, run_id=9)
    failed = Divergence("railway", "neon", T0, None, None, False, "provider neon is busy", run_id=1)
    with store.connect() as conn:
        add_divergence(conn, [old, failed])
        add_divergence(conn, [new])
        assert latest_divergence(conn) == [failed, new]
        assert monitoring.prune(conn, T0 + timedelta(days=10))["divergence"] == 1  # the old supabase row
        assert latest_divergence(conn) == [failed, new]
    assert old.summary(T0) == "backup supabase held 3 rows the primary neon lacked, the oldest 4.0 min old; " \
                              "merged into neon"
    assert failed.summary(T0) == "could not compare backup railway with the primary neon: provider neon is busy"
    assert new.summary(T0) == "backup supabase holds no row the primary neon lacks"
