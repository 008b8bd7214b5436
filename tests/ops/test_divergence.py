"""The monitor brings a backup's writes home: merge into the primary, divergence recorded, alerted and verified."""

from __future__ import annotations

import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from agent_factory.core import DatabaseManager
from agent_factory.local.proxy import CountingProxy
from agent_factory.memory import Message, PostgresMemoryStorage, Session
from agent_factory.ops.alerts import MonitorSettings
from agent_factory.ops.monitor import run_monitor_once
from agent_factory.ops.sync import divergence
from agent_factory.ops.verify import verify
from agent_factory.state import monitoring
from agent_factory.state.divergence import latest_divergence
from agent_factory.state.store import StateStore, utcnow

from ..conftest import make_config, wait_until, with_port
from ..replication.conftest import empty, setting, value_of

SETTINGS = MonitorSettings(delivery_timeout=3, backup_max_age=None)  # fire and resolve after 2 runs


@pytest.fixture
def clean(db, monkeypatch):
    monkeypatch.setenv("SYNC_MARGIN_SECONDS", "0")  # a row written just now is merged by the next statement
    empty(db)
    return db


def test_one_run_merges_a_backups_rows_into_the_primary_and_hands_them_to_the_other_backups(make_db, clean):
    db = make_db()
    store = StateStore(db.config.state_dir)
    written = utcnow() - timedelta(minutes=3)
    setting(clean, "supabase", "stranded", "on the backup only", at=written)
    setting(clean, "neon", "home", "on the primary")
    now = utcnow()
    result = run_monitor_once(db, store, [], now, settings=SETTINGS)
    assert value_of(clean, "neon", "stranded") == ("on the backup only", False)
    assert value_of(clean, "railway", "stranded") == ("on the backup only", False)  # merged home, then warmed out
    assert value_of(clean, "supabase", "home") == ("on the primary", False)
    found = {d.backup: d for d in result.divergence}
    assert set(found) == {"supabase", "railway"}
    assert (found["supabase"].rows, found["supabase"].merged, found["supabase"].oldest_at) == (1, True, written)
    assert (found["railway"].rows, found["railway"].oldest_at) == (0, None)
    with store.read() as conn:
        stored = {d.backup: d for d in latest_divergence(conn)}
    assert stored["supabase"].rows == 1 and stored["supabase"].run_id == result.run_id
    assert {(r.source, r.target) for r in store.latest_syncs()} >= {("supabase", "neon"), ("neon", "supabase")}
    [check] = [a for a in result.alerts if a.key == "agent-factory/divergence/supabase"]
    assert check.action == "pending"  # one run finding rows is healed by its own merge; two in a row fire
    [alert] = [a for a in monitoring.alert_states(store) if a.key == check.key]
    assert alert.summary.startswith("backup supabase held 1 rows the primary neon lacked, the oldest 3.0 min old")
    again = run_monitor_once(db, store, [], now + timedelta(minutes=5), settings=SETTINGS)
    assert [d.rows for d in again.divergence] == [0, 0]  # the merge is idempotent: nothing left to bring home


def test_a_backup_that_keeps_receiving_writes_fires_divergence_after_two_runs_and_resolves_after_two(make_db,
                                                                                                      clean):
    db = make_db()
    store = StateStore(db.config.state_dir)
    start = utcnow()

    def run(minute: int, write_on_backup: bool):
        if write_on_backup:  # a process still serving from supabase while neon is healthy
            setting(clean, "supabase", f"k{minute}", "v", at=utcnow() - timedelta(seconds=30))
        result = run_monitor_once(db, store, [], start + timedelta(minutes=minute), settings=SETTINGS)
        return {a.key: a for a in result.alerts}.get("agent-factory/divergence/supabase")

    assert run(0, True).action == "pending"
    fired = run(5, True)
    assert fired.action == "fired" and fired.severity.value == "WARNING"
    assert "backup supabase held 1 rows the primary neon lacked" in fired.detail
    assert value_of(clean, "neon", "k5") == ("v", False)
    still = run(10, False)
    assert still is None or still.action != "resolved"  # one good run is not enough
    resolved = run(15, False)
    assert resolved is not None and resolved.action == "resolved"


def test_verify_shows_what_a_backup_holds_that_the_primary_lacks_without_merging(make_db, clean, monkeypatch,
                                                                                  tmp_path):
    monkeypatch.chdir(tmp_path)
    db = make_db()
    setting(clean, "supabase", "stranded", "x", at=utcnow() - timedelta(minutes=7))
    [supabase, railway] = divergence(db)
    assert (supabase.backup, supabase.rows, supabase.merged) == ("supabase", 1, False)
    assert supabase.age(utcnow()) >= timedelta(minutes=7) and railway.rows == 0
    report = verify(db)
    lines = [str(c) for t in report.tests for c in t.checks]
    assert any(line.startswith("[FAIL] supabase: holds 1 rows neon lacks, the oldest 7.") for line in lines), lines
    assert any(line.startswith("[OK] railway: holds no row neon lacks") for line in lines), lines
    assert value_of(clean, "neon", "stranded") is None  # verify writes nothing


def test_monitor_runs_while_a_manager_still_serves_from_the_backup_lose_nothing_and_fire_divergence(
        make_db, env, clean):
    """A partition between one manager and the primary: it writes on supabase through several monitor runs."""
    relay = CountingProxy("127.0.0.1", urlsplit(env["NEON_DB_URL"]).port or 5432)
    cut = make_db(NEON_DB_URL=with_port(env["NEON_DB_URL"], relay.port))
    storage = PostgresMemoryStorage(cut)
    monitor_db = make_db()
    store = StateStore(monitor_db.config.state_dir)
    stop = threading.Event()
    acked: list[tuple[str, str]] = []
    failures: list[BaseException] = []

    def write() -> None:
        session_id, n = None, 0
        while not stop.is_set():
            n += 1
            try:
                if session_id is None or n % 10 == 0:
                    session = Session(user_id="cut", messages=[Message("user", f"m{n}")])
                    storage.save_session(session)
                    session_id = session.session_id
                else:
                    storage.append_messages(session_id, [{"role": "user", "content": f"m{n}"}])
                acked.append((session_id, f"m{n}"))
            except Exception as exc:  # asserted below
                failures.append(exc)
                session_id = None

    writer = threading.Thread(target=write)
    try:
        relay.close()  # neon vanishes for `cut` only; the monitor still sees it
        writer.start()
        assert wait_until(lambda: cut.active_provider == "supabase" and len(acked) >= 20, 30)
        start = utcnow()
        runs = []
        for minute in (0, 5):  # two runs while the manager keeps writing on supabase
            count = len(acked)
            assert wait_until(lambda: len(acked) >= count + 20, 30)  # noqa: B023 - waited on here
            runs.append(run_monitor_once(monitor_db, store, [], start + timedelta(minutes=minute), settings=SETTINGS))
        stop.set()
        writer.join(timeout=30)
        last = run_monitor_once(monitor_db, store, [], start + timedelta(minutes=10), settings=SETTINGS)
    finally:
        stop.set()
        relay.close()
    assert not failures, failures[:3]
    assert all(r.divergence[0].rows for r in runs)  # each run found what the manager wrote since the last
    fired = [a for a in runs[1].alerts if a.key == "agent-factory/divergence/supabase"]
    assert [a.action for a in fired] == ["fired"]
    assert last.divergence[0].backup == "supabase"
    with DatabaseManager(make_config(env)) as fresh:  # every acknowledged message on neon, once, in order
        reader = PostgresMemoryStorage(fresh)
        sessions: dict[str, list[str]] = {}
        for session_id, text in acked:
            sessions.setdefault(session_id, []).append(text)
        for session_id, texts in sessions.items():
            loaded = reader.load_session(session_id)
            assert loaded is not None and [m.content for m in loaded.messages] == texts
