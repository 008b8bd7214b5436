"""The page's loaders and what it makes of them, on state stores seeded through the real writers."""

from __future__ import annotations

import sqlite3
from datetime import timedelta, timezone
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from agent_factory.errors import ConfigError, StateStoreMissingError
from agent_factory.state import StateStore, monitoring
from agent_factory.state.backups import BackupCatalog, BackupRecord
from agent_factory.state.schema import _INITIAL
from status_app import model, timeline
from status_app.data import PageSettings, clean, load_snapshot, page_settings

SETTINGS = PageSettings()
MIN = timedelta(minutes=1)


def snapshot(state_dir, now):
    return load_snapshot(state_dir, now)


def test_uptime_counts_samples_and_shows_gaps_as_coverage(seeded, now):
    state = seeded(days=2, gaps=[(now - timedelta(hours=5), now - timedelta(hours=3))],
                   down={"neon": [(now - timedelta(hours=10), now - timedelta(hours=9, minutes=30))]})
    snap = snapshot(state, now)
    neon, supabase, _ = model.provider_states(snap, SETTINGS, now)
    day = neon.uptime["24 h"]
    assert day.samples == 288 - 24, "two hours without a monitor run are 24 samples fewer"
    assert day.coverage == pytest.approx(264 / 288)
    assert day.ratio == pytest.approx((264 - 6) / 264), "30 minutes down are 6 of the samples there are"
    assert supabase.uptime["24 h"].ratio == 1.0
    assert neon.uptime["30 d"].coverage == pytest.approx((2 * 288 - 24) / (30 * 288))
    assert str(model.uptime(snap.samples.iloc[0:0], now, timedelta(hours=24), 5 * MIN)) == "no data"


def test_daily_bars_cover_every_day_with_grey_for_no_data(seeded, now):
    state = seeded(days=3, down={"supabase": [(now - timedelta(minutes=62), now - timedelta(minutes=42))]})
    snap = snapshot(state, now)
    daily = model.daily_uptime(snap.samples, now, 30, timezone.utc)
    assert len(daily) == 3 * 30 and list(daily["provider"].unique()) == ["neon", "supabase", "railway"]
    empty = daily[daily["samples"] == 0]
    assert len(empty) == 3 * 26 and set(empty["band"]) == {"no data"} and empty["uptime"].isna().all()
    hit = daily[(daily["provider"] == "supabase") & (daily["minutes_down"] > 0)]  # two days just after midnight
    assert hit["minutes_down"].sum() == 20 and (hit["band"] != "≥ 99.9 %").all()
    assert (hit["samples"] * (100 - hit["uptime"]) / 100).round().sum() == 4, "4 unhealthy samples in all"
    # the same samples counted by the day in another time zone
    shifted = model.daily_uptime(snap.samples, now, 30, ZoneInfo("Pacific/Kiritimati"))  # UTC+14
    assert shifted["samples"].sum() == daily["samples"].sum() == len(snap.samples)


def test_banner_operational_then_degraded_outage_and_unknown(seeded, now):
    assert model.banner(snapshot(seeded(), now), SETTINGS, now).text == "All systems operational"

    down = seeded(down={"neon": [(now - timedelta(minutes=30), now)]})
    verdict = model.banner(snapshot(down, now), SETTINGS, now)
    assert verdict.level == "degraded"
    assert verdict.reasons == ["primary neon is down, supabase serving", "alert firing: primary-down/neon"]

    everything = {n: [(now - timedelta(minutes=30), now)] for n in ("neon", "supabase", "railway")}
    assert model.banner(snapshot(seeded(down=everything), now), SETTINGS, now).text == \
        "Major outage: no provider answers"

    stale = model.banner(snapshot(seeded(last_run_age=timedelta(minutes=14), down=everything), now), SETTINGS, now)
    assert stale.level == "unknown" and stale.text == "Status unknown: monitor last ran 14 min ago"
    assert stale.updated_at is not None and now - stale.updated_at == timedelta(minutes=14) - timedelta(seconds=1)


def test_a_failed_or_hung_newest_run_makes_the_status_unknown(seeded, now):
    state = seeded()
    store = StateStore(state)
    with store.connect() as conn:  # a run that has just started and not finished is not a verdict yet
        monitoring.start_run(conn, now - MIN, "neon")
    assert model.banner(snapshot(state, now), SETTINGS, now).level == "operational"
    with store.connect() as conn:  # one that started 11 minutes ago and never finished is
        conn.execute("UPDATE monitor_runs SET started_at = ? WHERE finished_at IS NULL",
                     (monitoring.ts(now - 11 * MIN),))
    assert model.banner(snapshot(state, now), SETTINGS, now).text.startswith(
        "Status unknown: the last monitor run (11 min ago) failed: it did not finish")
    with store.connect() as conn:
        run = monitoring.start_run(conn, now - MIN, "neon")
        monitoring.finish_run(conn, run, now, can_serve=False, providers_up=0, providers_total=3, firing=[],
                              summary="run failed", error="ConfigError: ALERT_FIRE_AFTER='x' is not a number")
    verdict = model.banner(snapshot(state, now), SETTINGS, now)
    assert verdict.level == "unknown" and "failed: ConfigError: ALERT_FIRE_AFTER" in verdict.text


def test_rpo_counts_from_the_newest_verified_live_backup(seeded, now):
    snap = snapshot(seeded(backup_ages={"neon": timedelta(hours=30), "supabase": timedelta(hours=2)}), now)
    neon, supabase = model.rpos(snap, SETTINGS, now)
    assert (neon.provider, neon.age, neon.overdue) == ("neon", timedelta(hours=30), True)
    assert (supabase.age, supabase.overdue) == (timedelta(hours=2), False)
    assert neon.backup is not None and neon.backup.path.startswith("neon-") and "/" not in neon.backup.path
    assert model.describe_rpo(neon) == "newest good backup 30 h old, target 24 h"
    assert "backup of neon overdue (newest good backup 30 h old, target 24 h)" in \
        model.banner(snap, SETTINGS, now).reasons

    none = snapshot(seeded(backup_ages={}), now)
    [primary] = model.rpos(none, SETTINGS, now)
    assert primary.age is None and primary.overdue and model.describe_rpo(primary) == \
        "no verified backup, target 24 h"
    no_target = PageSettings(backup_max_age=None)
    assert not model.rpos(none, no_target, now)[0].overdue
    assert model.banner(none, no_target, now).level == "operational"


def test_pre_restore_pruned_and_failed_backups_do_not_count_but_are_listed(seeded, now):
    state = seeded(backup_ages={})
    catalog = BackupCatalog(StateStore(state))
    for path, kwargs in [("/b/pre.dump", {"purpose": "pre-restore"}), ("/b/gone.dump", {"status": "pruned"}),
                         ("/b/bad.dump", {"status": "failed", "error": "pg_dump: disk full", "verified_at": None})]:
        catalog.record(BackupRecord(provider="neon", path=path, format="custom", started_at=now - MIN,
                                    **{"status": "ok", "verified_at": now, "signed": True, **kwargs}))
    snap = snapshot(state, now)
    assert model.rpos(snap, SETTINGS, now)[0].age is None
    table = model.backup_table(snap.backups)
    assert sorted(table["file"]) == ["bad.dump", "gone.dump", "pre.dump"]
    assert set(table["status"]) == {"ok", "pruned", "failed"}
    events = timeline.timeline(snap, now)
    assert events.iloc[0]["kind"] == "backup failed" and events.iloc[0]["detail"] == "pg_dump: disk full"


def test_outages_are_runs_of_consecutive_unhealthy_samples(seeded, now):
    snap = snapshot(seeded(down={"railway": [(now - timedelta(hours=3), now - timedelta(hours=2, minutes=30)),
                                             (now - timedelta(minutes=12), now)]}), now)
    found = timeline.outages(snap.samples)
    assert list(found["provider"]) == ["railway", "railway"]
    ongoing, past = found.iloc[0], found.iloc[1]
    assert pd.isna(ongoing["end"]) and ongoing["error"] == "connection refused"
    assert past["duration"] == timedelta(minutes=30) and past["end"] - past["start"] == timedelta(minutes=30)


def test_timeline_has_outages_failovers_alerts_deliveries_and_failed_runs_newest_first(seeded, now):
    state = seeded(down={"neon": [(now - timedelta(minutes=40), now - timedelta(minutes=15))]})
    store = StateStore(state)
    store.record_failover("neon", "supabase", "connection refused")
    with store.connect() as conn:
        monitoring.enqueue_delivery(conn, now - 30 * MIN, alert_key="agent-factory/primary-down/neon",
                                    event="trigger", severity="WARNING", channel="telegram", subject="s",
                                    body="token in the body: 123456:AAHsecret")
        conn.execute("UPDATE alert_deliveries SET status = 'expired', last_error = 'HTTP 502'")
        run = monitoring.start_run(conn, now - 20 * MIN, "neon")
        monitoring.finish_run(conn, run, now - 20 * MIN, can_serve=False, providers_up=0, providers_total=3,
                              firing=[], summary="run failed", error="OSError: disk full")
    events = timeline.timeline(snapshot(state, now), now)
    assert list(events["at"]) == sorted(events["at"], reverse=True)
    kinds = set(events["kind"])
    assert {"outage", "failover", "alert fired", "alert resolved", "delivery expired", "monitor run failed"} <= kinds
    outage = events[events["kind"] == "outage"].iloc[0]
    assert outage["subject"] == "neon" and outage["detail"].startswith("down for 25 min, until ")
    assert events[events["kind"] == "failover"].iloc[0]["subject"] == "neon → supabase"
    assert not events["detail"].str.contains("AAHsecret").any()


def test_sync_lag_from_the_newest_sync_per_backup(seeded, now):
    state = seeded()
    store = StateStore(state)
    snap = snapshot(state, now)
    assert [(lag.target, lag.behind) for lag in model.sync_lags(snap, SETTINGS, now)] == [
        ("supabase", None), ("railway", None)]
    store.record_sync("neon", "supabase", ok=True, synced_through=now - 2 * MIN, lag_s=1.0)
    store.record_sync("neon", "railway", ok=True, synced_through=now - 40 * MIN, lag_s=1.0)
    store.record_sync("neon", "railway", ok=False, error="connection to railway refused")
    supabase, railway = model.sync_lags(snapshot(state, now), SETTINGS, now)
    assert supabase.behind == 2 * MIN and supabase.ok and not supabase.over
    assert not railway.ok and railway.over and railway.error == "connection to railway refused"


def test_load_reads_an_old_store_as_it_is_and_creates_nothing(tmp_path, now):
    state = tmp_path / "old"
    state.mkdir()
    with sqlite3.connect(state / "state.db") as conn:
        for ddl in _INITIAL:
            conn.execute(ddl)
        conn.execute("INSERT INTO monitor_runs (started_at, finished_at, can_serve, providers_up, providers_total, "
                     "firing, summary) VALUES (?, ?, 1, 1, 1, '[]', 'neon OK')",
                     (monitoring.ts(now - MIN), monitoring.ts(now - MIN)))
        conn.execute("INSERT INTO health_samples (run_id, at, provider, is_primary, healthy, latency_ms) "
                     "VALUES (1, ?, 'neon', 1, 1, 2.0)", (monitoring.ts(now - MIN),))
    before = sorted(p.name for p in state.iterdir())
    snap = load_snapshot(state, now)
    assert snap.schema_version == 0 and snap.syncs == [] and snap.alert_events.empty
    assert model.banner(snap, SETTINGS, now).reasons == ["backup of neon overdue (no verified backup, target 24 h)"]
    [neon] = model.provider_states(snap, SETTINGS, now)
    assert neon.primary and neon.up and not neon.serving  # serving was not recorded before version 2
    assert StateStore(state).schema_version() == 0 and sorted(p.name for p in state.iterdir()) == before


def test_a_missing_store_is_reported_and_not_created(tmp_path, now):
    with pytest.raises(StateStoreMissingError, match="no state store at"):
        load_snapshot(tmp_path / "none", now)
    assert not (tmp_path / "none").exists()


def test_page_settings_need_no_provider_and_name_a_bad_variable(tmp_path):
    (tmp_path / ".env").write_text("AGENT_FACTORY_STATE_DIR=/srv/state\nSYNC_MAX_LAG_MINUTES=5\n")
    settings = page_settings(env={"MONITOR_BACKUP_MAX_AGE_HOURS": "12"}, env_file=tmp_path / ".env")
    assert settings == PageSettings(state_dir=tmp_path.__class__("/srv/state"), backup_max_age=timedelta(hours=12),
                                    sync_max_lag=timedelta(minutes=5))
    assert page_settings(env={"MONITOR_BACKUP_MAX_AGE_HOURS": "0"}, env_file=None).backup_max_age is None
    assert page_settings(env={}, env_file=None, state_dir="/x").state_dir == tmp_path.__class__("/x")
    with pytest.raises(ConfigError, match="MONITOR_RETENTION_DAYS"):
        page_settings(env={"MONITOR_RETENTION_DAYS": "soon"}, env_file=None)


@pytest.mark.parametrize("text, secret", [
    ("connection to postgresql://app:Sup3rS3cret@db.example.com/app failed", "Sup3rS3cret"),
    ("FATAL: password=hunter2 rejected", "hunter2"),
    ("POST https://api.telegram.org/bot123456:AAH-xyz_Secret/sendMessage: 502", "AAH-xyz_Secret"),
    ('pagerduty said {"routing_key": "R0UT1NGKEY"}', "R0UT1NGKEY"),
    ("Authorization: Bearer tok3n-value", "tok3n-value"),
])
def test_clean_removes_secret_looking_values(text, secret):
    cleaned = clean(text)
    assert cleaned is not None and secret not in cleaned and "***" in cleaned
