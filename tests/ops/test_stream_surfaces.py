"""The streams' operations surfaces: the monitor's stream samples and lag alert, verify's TEST 7, the stream
plan behind Ansible's memory_stream, and sync --follow's default targets. Real streams on the local providers
(wal_level=logical), a real capture server for the alert."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from agent_factory.cli import main
from agent_factory.ops import schema_ops
from agent_factory.ops.alerts import MonitorSettings, channels_from_env
from agent_factory.ops.monitor import run_monitor_once
from agent_factory.ops.monitor_sync import stream_check
from agent_factory.ops.stream import StreamState, drop_streams, pause_streams, setup_streams, stream_states
from agent_factory.ops.stream_plan import converge_streams, plan_streams
from agent_factory.ops.verify import verify
from agent_factory.replication.watermarks import LOCK_KEY
from agent_factory.schema import migrations
from agent_factory.state.store import StateStore, utcnow
from agent_factory.state.streams import StreamSample, latest_stream_samples

from ..conftest import wait_until
from ..replication.conftest import empty, setting, value_of, write
from . import servers

pytestmark = pytest.mark.timeout(240)
http_capture, smtp_capture = servers.http_capture, servers.smtp_capture
SETTINGS = MonitorSettings(delivery_timeout=3, backup_max_age=None, fire_after=1, resolve_after=1,
                           stream_max_lag=timedelta(seconds=2))


def state(name: str, status: str) -> StreamState:
    return StreamState(subscriber=name, publisher="neon", status=status, lag_seconds=None, lag_bytes=None,
                       detail=status)  # type: ignore[arg-type]


def sample(status: str, lag: float | None) -> StreamSample:
    return StreamSample(at=utcnow(), subscriber="supabase", publisher="neon", status=status, lag_seconds=lag,
                        lag_bytes=None, detail="publisher unreachable" if status == "stopped" else "ok")


# ---- pure rules -------------------------------------------------------------------------


def test_plan_brings_each_stream_to_the_wanted_state_and_leaves_unsupported_ones_alone():
    current = [state("supabase", "absent"), state("railway", "paused"), state("x", "unsupported"),
               state("y", "streaming")]
    assert plan_streams(current, "present") == [("setup", "supabase"), ("resume", "railway")]
    assert plan_streams(current, "paused") == [("setup", "supabase"), ("pause", "supabase"), ("pause", "y")]
    assert plan_streams(current, "absent") == [("drop", "railway"), ("drop", "y")]
    assert plan_streams([state("y", "streaming")], "present") == []  # idempotent
    with pytest.raises(ValueError, match="unknown stream state 'gone'"):
        plan_streams(current, "gone")  # type: ignore[arg-type]


def test_stream_check_fails_when_stopped_or_behind():
    limit = timedelta(seconds=30)
    assert not stream_check(sample("streaming", 0.4), limit).failing
    over = stream_check(sample("catching_up", 45.0), limit)
    assert over.failing and "supabase's stream from neon is 45.0 s behind (limit 30 s)" in over.detail
    stopped = stream_check(sample("stopped", None), limit)
    assert stopped.failing and "is stopped: publisher unreachable" in stopped.detail
    assert stopped.key == over.key == "agent-factory/sync-lag/supabase"  # the existing lag alert


# ---- real streams ---------------------------------------------------------------------------


@pytest.fixture
def streams(db):
    """Every backup streaming from an emptied primary; the streams dropped afterwards."""
    empty(db)
    setup_streams(db)
    assert wait_until(lambda: all(s.status == "streaming" for s in stream_states(db)), 60), stream_states(db)
    yield db
    drop_streams(db)


def test_monitor_records_samples_and_a_stream_broken_by_killing_its_subscriber_resumes(streams, local):
    db = streams
    store = StateStore(db.config.state_dir)
    first = run_monitor_once(db, store, [], settings=SETTINGS)
    assert {s.subscriber: s.status for s in first.streams} == {"supabase": "streaming", "railway": "streaming"}
    with store.connect() as conn:
        assert {s.subscriber for s in latest_stream_samples(conn)} == {"supabase", "railway"}
    assert not [a for a in first.alerts if "sync-lag" in a.key and a.action == "fired"]

    local.kill("supabase")  # the subscriber's server dies: its provider-down alert says so, not a second one
    try:
        setting(db, "neon", "while-down", "1")
        second = run_monitor_once(db, store, [], settings=SETTINGS)
        assert {s.subscriber: s.status for s in second.streams}["supabase"] != "streaming"
        fired = {a.key for a in second.alerts if a.action == "fired"}
        assert "agent-factory/provider-down/supabase" in fired and "agent-factory/sync-lag/supabase" not in fired
    finally:
        local.start("supabase")
    assert wait_until(lambda: {s.subscriber: s.status for s in stream_states(db)}["supabase"] == "streaming", 60)
    assert wait_until(lambda: value_of(db, "supabase", "while-down") == ("1", False), 30)


@pytest.mark.xfail(strict=True, reason="ops.stream's lag_seconds is pg_stat_replication.replay_lag, which stays put "
                                      "while the apply worker is blocked: a stuck stream reads as on time")
def test_the_lag_alert_fires_and_resolves_when_a_live_stream_falls_behind(streams, local, http_capture, smtp_capture):
    db = streams
    store = StateStore(db.config.state_dir)
    channels = channels_from_env(servers.alert_env(http_capture, smtp_capture), env_file=None)
    blocker = psycopg.connect(local.url("railway"))
    try:
        blocker.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))  # the monitor's own sync into railway: busy
        blocker.execute("LOCK TABLE settings IN SHARE MODE")  # the apply worker waits; readers do not
        setting(db, "neon", "late", "1")
        assert wait_until(lambda: (next(s for s in stream_states(db) if s.subscriber == "railway").lag_seconds
                                   or 0) > 3, 20)
        result = run_monitor_once(db, store, channels, settings=SETTINGS)
        [fired] = [a for a in result.alerts if a.key == "agent-factory/sync-lag/railway"]
        assert fired.action == "fired" and "railway's stream from neon is " in fired.detail
        assert "behind (limit 2 s)" in fired.detail
        assert any("railway" in str(r.json) for r in http_capture.pagerduty())  # delivered
    finally:
        blocker.rollback()
        blocker.execute("SELECT pg_advisory_unlock_all()")
        blocker.close()
    assert wait_until(lambda: value_of(db, "railway", "late") == ("1", False), 60)
    resolved = run_monitor_once(db, store, channels, settings=SETTINGS)
    assert [a.action for a in resolved.alerts if a.key == "agent-factory/sync-lag/railway"] == ["resolved"]


def test_verify_reports_each_streams_state_and_lag(streams, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    pause_streams(streams, subscribers=["railway"])
    report = verify(streams)
    [test] = [t for t in report.tests if t.number == 7]
    lines = [str(c) for c in test.checks]
    assert test.title == "Checking warm backups (stream and sync lag)"
    assert any(line.startswith("[OK] supabase: stream from neon streaming, ") for line in lines), lines
    assert any(line.startswith("[OK] railway: ") and line.endswith("behind neon (stream paused: kept warm by sync)")
               for line in lines), lines


def test_converge_streams_is_idempotent_and_check_mode_changes_nothing(streams):
    db = streams
    plan = converge_streams(db, "absent", check=True)
    assert plan.changed and plan.actions == ["drop supabase", "drop railway"]
    assert {s.status for s in stream_states(db)} == {"streaming"}
    assert not converge_streams(db, "present").changed
    paused = converge_streams(db, "paused", subscribers=["railway"])
    assert paused.actions == ["pause railway"] and {s.status for s in paused.streams} == {"paused"}
    resumed = converge_streams(db, "present")
    assert resumed.actions == ["resume railway"] and "streams present: resume railway" in resumed.summary()


def test_sync_follow_has_nothing_to_follow_when_every_backup_streams(streams, cli_env, capsys):
    assert main(["sync", "--follow", "--rounds", "1"]) == 0
    assert "every backup streams from the primary: nothing to follow" in capsys.readouterr().out


def test_a_migration_deployed_with_the_streams_running_never_breaks_them(streams, monkeypatch):
    db = streams
    shipped = migrations.load_migrations()
    extra = migrations.Migration(shipped[-1].version + 90, "stream_note",
                                 "ALTER TABLE settings ADD COLUMN stream_note text")
    for module in (migrations, schema_ops):  # one more migration than the package ships
        monkeypatch.setattr(module, "load_migrations", lambda: [*shipped, extra])
    try:
        setting(db, "neon", "before", "1")  # the primary writes before, during and after the deploy
        result = schema_ops.deploy(db, all_providers=True)
        assert [(p.provider, p.status) for p in result.providers] == [
            ("supabase", "applied"), ("railway", "applied"), ("neon", "applied")]
        setting(db, "neon", "during", "2")  # the stream goes on; its column lists are those of its setup
        assert wait_until(lambda: all(value_of(db, n, "during") == ("2", False) for n in ("supabase", "railway")), 30)
        setup_streams(db)  # idempotent: the column lists now include the new column
        write(db, "neon", "settings", setting_key="after", setting_value="3", stream_note="new column")

        def noted(name: str) -> bool:
            with db.provider_connection(name) as conn:
                row = conn.execute("SELECT stream_note FROM settings WHERE setting_key = 'after'").fetchone()
                conn.rollback()
            return row == ("new column",)

        assert wait_until(lambda: noted("supabase") and noted("railway"), 30)
        assert all(value_of(db, n, "before") == ("1", False) for n in ("supabase", "railway"))
        assert {s.status for s in stream_states(db)} == {"streaming"}
    finally:  # the publications' column lists name the column: drop the streams, then the column
        drop_streams(db)
        for name in ("neon", "supabase", "railway"):
            with db.provider_connection(name) as conn:
                conn.execute("ALTER TABLE settings DROP COLUMN IF EXISTS stream_note")
                conn.execute("DELETE FROM schema_migrations WHERE version = %s", (extra.version,))
                conn.commit()
