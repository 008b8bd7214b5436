"""The issue's "done when", on real local providers: monitor, back up, kill the primary, let the library fail
over, monitor again; the page then shows Degraded, neon down, supabase serving, RPO, failover and alert."""

from __future__ import annotations

from agent_factory.core import DatabaseManager
from agent_factory.memory import PostgresMemoryStorage, Session
from agent_factory.ops.alerts import MonitorSettings
from agent_factory.ops.backup import backup
from agent_factory.ops.monitor import run_monitor_once
from agent_factory.state import StateStore

from ..conftest import make_config
from .pagetext import everything, metrics, shown, table


def test_killed_primary_shows_degraded_with_failover_alert_and_rpo(env, local, page, passwords, tmp_path):
    config = make_config(env)
    store = StateStore(config.state_dir)
    settings = MonitorSettings(delivery_timeout=3)
    with DatabaseManager(config) as monitor_db:
        for _ in range(2):
            assert run_monitor_once(monitor_db, store, [], settings=settings).can_serve
        [made] = backup(monitor_db, "neon", backup_dir=tmp_path / "backups")
        assert made.ok
        local.kill("neon")
        with DatabaseManager(config) as agent_db:  # an agent writes; the library fails over to supabase
            session = Session(user_id="status-page")
            session.add_message("user", "still there?")
            PostgresMemoryStorage(agent_db).save_session(session)
            assert agent_db.active_provider == "supabase"
        results = [run_monitor_once(monitor_db, store, [], settings=settings) for _ in range(2)]
    assert [str(a) for a in results[1].alerts if a.action == "fired"] == ["fired WARNING primary-down/neon"]

    at = page(config.state_dir)
    assert not at.exception
    assert [shown(w.value) for w in at.warning] == [
        "Degraded: primary neon is down, supabase serving; alert firing: primary-down/neon"]
    m = metrics(at)
    assert m["neon status"] == "Down" and m["supabase status"] == "Up" and m["railway status"] == "Up"
    assert m["RPO neon"] == "0 h"
    providers = table(at, "serving").set_index("provider")
    assert providers.loc["supabase", "serving"] and providers.loc["neon", "primary"]
    backups = table(at, "file")
    assert list(backups["file"]) == [made.path.name] and backups["verified"].iloc[0].startswith("yes")
    events = table(at, "kind")
    assert "neon → supabase" in set(events[events["kind"] == "failover"]["subject"])
    fired = events[events["kind"] == "alert fired"]
    assert "primary-down/neon" in set(fired["subject"])
    assert {"outage"} <= set(events["kind"])
    text = everything(at)
    assert not any(p in text for p in passwords)
    assert str(tmp_path / "backups") not in text
