"""The fail-back loop (`replication.failback`), wired into every manager from above `core`."""

from __future__ import annotations

from agent_factory.core import DatabaseManager
from agent_factory.errors import SyncError
from agent_factory.replication.failback import FailbackLoop, merge_into_primary
from agent_factory.state.store import FAILBACK_POSTPONED, StateStore

from ..conftest import make_config, wait_for_failovers, wait_until
from .conftest import empty, setting, value_of


def test_a_failed_merge_postpones_the_fail_back_as_its_own_event_then_it_succeeds(env, local, monkeypatch):
    monkeypatch.setenv("SYNC_MARGIN_SECONDS", "0")
    calls: list[str] = []

    def flaky_merge(manager, backup, primary):  # the real merge, refused the first time
        calls.append(backup)
        if len(calls) == 1:
            raise SyncError(f"provider {primary} is busy: another sync into it is running")
        return merge_into_primary(manager, backup, primary)

    with DatabaseManager(make_config(env, DATABASE_HEALTH_TTL="0.2"), failback_sync=flaky_merge) as db:
        _postponed_then_done(db, local, calls)


def _postponed_then_done(db: DatabaseManager, local, calls: list[str]) -> None:
    empty(db)
    local.kill("neon")
    assert db.execute_query("SELECT 1", fetch_mode="one") == (1,)
    assert db.active_provider == "supabase"
    setting(db, "supabase", "written-during-failover", "yes")
    local.start("neon")
    assert wait_until(lambda: db.active_provider == "neon", 30), "no fail-back after the postponed one"
    assert value_of(db, "neon", "written-during-failover") == ("yes", False)
    events = wait_for_failovers(db, 3)
    assert [(e.kind, e.from_provider, e.to_provider) for e in events] == [
        ("switch", "neon", "supabase"), (FAILBACK_POSTPONED, "supabase", "neon"), ("switch", "supabase", "neon")]
    assert events[1].reason == "merging the writes made on supabase failed: provider neon is busy: another sync " \
                               "into it is running"
    assert events[1].title == "fail-back supabase -> neon postponed"
    assert len(calls) >= 3  # refused once, then the merge beside traffic and the one while paused


def test_a_manager_closed_while_failed_over_stops_its_watcher(make_db, local):
    db = make_db(DATABASE_HEALTH_TTL="0.2")
    local.kill("neon")
    db.execute_query("SELECT 1", fetch_mode="one")
    loop = db._failback
    assert isinstance(loop, FailbackLoop)
    watcher = loop._thread
    assert watcher is not None and watcher.is_alive() and watcher.name == "agent-factory-failback"
    db.close()
    assert not watcher.is_alive()
    assert StateStore(db.config.state_dir).failovers()[0].kind == "switch"
