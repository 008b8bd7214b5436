"""The page under Streamlit's AppTest, on seeded state stores: banner, metrics, tables and charts per scenario."""

from __future__ import annotations

import json
from datetime import timedelta

import streamlit as st

from agent_factory.state import StateStore, maintenance, monitoring
from agent_factory.state.backups import BackupCatalog, BackupRecord, RestoreRecord
from agent_factory.state.maintenance import SizeSample
from agent_factory.state.streams import StreamSample, add_stream_samples

from .conftest import TABLE_VIEWS
from .pagetext import chart_data, charts, everything, metrics, shown, table

MIN = timedelta(minutes=1)
ALL = ("neon", "supabase", "railway")


def test_healthy(seeded, page):
    at = page(seeded(days=2))
    assert not at.exception
    assert [shown(s.value) for s in at.success] == ["All systems operational"]
    assert not at.warning and not at.error
    assert at.title[0].value == "Agent Factory status"
    last_updated = shown(at.caption[0].value)
    assert last_updated.startswith("Last updated ") and last_updated.endswith("(2 min ago)")
    m = metrics(at)
    assert m["neon status"] == "Up" and m["railway status"] == "Up"
    assert m["neon uptime 24 h"] == "100.00 %" and m["neon latency now"].endswith(" ms")
    assert m["RPO neon"] == "3 h"
    providers = at.dataframe[0].value
    assert list(providers["provider"]) == list(ALL) and list(providers["primary"]) == [True, False, False]
    assert list(providers["serving"]) == [True, False, False]
    assert "Nothing happened: no outage, failover, alert or failure recorded." in [shown(c.value) for c in at.caption]


def test_table_views_are_closed_and_their_tables_are_sent_only_once_opened(seeded, page, now):
    state = seeded(days=2)
    with StateStore(state).connect() as conn:  # so the storage section has its table view too
        maintenance.add_size_samples(conn, [SizeSample("neon", now - MIN, 50 * 1048576, quota_bytes=None)])
    at = page(state, open_tables=False)
    assert not at.exception
    assert [e.label for e in at.expander] == list(TABLE_VIEWS)
    assert [list(df.value.columns)[:2] for df in at.dataframe] == [["provider", "started"]], "the backups only"
    assert all(not view.dataframe for view in at.expander)
    at.session_state["providers_table"] = True  # what opening the view in the browser does
    at.run()
    assert list(table(at, "serving")["provider"]) == list(ALL)
    assert len(at.dataframe) == 2 and at.expander[0].dataframe, "only the opened view's table was added"


def test_degraded_primary_down_backup_serving(seeded, page, now):
    state = seeded(down={"neon": [(now - 30 * MIN, now)]})
    StateStore(state).record_failover("neon", "supabase", "connection refused")
    at = page(state)
    assert not at.exception
    assert [shown(w.value) for w in at.warning] == [
        "Degraded: primary neon is down, supabase serving; alert firing: primary-down/neon"]
    m = metrics(at)
    assert m["neon status"] == "Down" and m["supabase status"] == "Up" and m["neon latency now"] == "—"
    assert "Error: connection refused" in [shown(c.value) for c in at.caption]
    providers = at.dataframe[0].value.set_index("provider")
    assert providers.loc["neon", "state"] == "down" and providers.loc["supabase", "serving"]
    assert not providers.loc["neon", "serving"] and providers.loc["neon", "primary"]
    events = table(at, "kind")
    assert {"outage", "alert fired", "failover"} <= set(events["kind"])
    assert events[events["kind"] == "failover"]["subject"].tolist() == ["neon → supabase"]


def test_all_down(seeded, page, now):
    at = page(seeded(down={n: [(now - 30 * MIN, now)] for n in ALL}))
    assert not at.exception
    assert [shown(e.value) for e in at.error] == ["Major outage: no provider answers"]
    assert not at.success
    assert all(metrics(at)[f"{n} status"] == "Down" for n in ALL)


def test_backup_overdue(seeded, page):
    at = page(seeded(backup_ages={"neon": timedelta(hours=30)}))
    assert not at.exception
    assert [shown(w.value) for w in at.warning] == [
        "Degraded: backup of neon overdue (newest good backup 30 h old, target 24 h)"]
    assert metrics(at)["RPO neon"] == "30 h"
    assert any(shown(c.value).startswith(":material/warning: overdue: newest good backup 30 h old") for c in at.caption)
    backups = table(at, "file")
    assert len(backups) == 3 and set(backups["verified"]) == {"yes (restore)"}
    assert not backups["file"].str.contains("/").any(), "backups are named by file, never by path"


def test_backup_target_from_the_environment(seeded, page):
    at = page(seeded(backup_ages={"neon": timedelta(hours=30)}), MONITOR_BACKUP_MAX_AGE_HOURS="48")
    assert [shown(s.value) for s in at.success] == ["All systems operational"]


def test_stale_monitor_overrides_everything(seeded, page, now):
    at = page(seeded(last_run_age=timedelta(minutes=25), down={n: [(now - 60 * MIN, now)] for n in ALL}))
    assert not at.exception
    assert [shown(w.value) for w in at.warning] == ["Status unknown: monitor last ran 25 min ago"]
    assert not at.error and not at.success
    assert shown(at.caption[0].value).endswith("(25 min ago)")
    assert shown(at.caption[1].value).startswith("As the monitor saw them at "), "old states are labelled as old"


def test_empty_store(tmp_path, page):
    state = tmp_path / "empty"
    with StateStore(state).connect():
        pass
    at = page(state)
    assert not at.exception
    assert [shown(i.value) for i in at.info] == ["No data yet: run `agent-factory monitor --once`"]
    assert shown(at.caption[0].value) == "Last updated: never"
    assert not at.metric and not charts(at)


def test_missing_store(tmp_path, page):
    at = page(tmp_path / "nowhere")
    assert not at.exception
    assert [shown(i.value) for i in at.info] == [f"No state store at {tmp_path / 'nowhere' / 'state.db'}"]
    assert not (tmp_path / "nowhere").exists()


def test_a_bad_setting_is_named(seeded, page):
    at = page(seeded(), MONITOR_RETENTION_DAYS="a month")
    assert not at.exception
    assert shown(at.error[0].value).startswith("Configuration error: MONITOR_RETENTION_DAYS")


def test_charts_carry_alt_text_specs_and_data(seeded, page, now):
    at = page(seeded(days=3, down={"railway": [(now - 90 * MIN, now - 60 * MIN)]}))
    uptime, latency = charts(at)
    [daily] = chart_data(uptime)
    measured = int((daily[daily["provider"] == "neon"]["samples"] > 0).sum())
    assert measured in (3, 4) and len(daily) == 90 and (daily["band"] == "no data").sum() == 90 - 3 * measured
    assert uptime.proto.alt.startswith(f"Daily uptime over 30 days. neon: {measured} of 30 days with data")
    assert f"railway: {measured} of 30 days with data, lowest" in uptime.proto.alt
    spec = json.loads(uptime.proto.spec)
    assert spec["mark"]["type"] == "rect" and spec["encoding"]["color"]["field"] == "band"
    assert [t["title"] for t in spec["encoding"]["tooltip"]] == ["Provider", "Day", "Uptime", "Minutes down",
                                                                 "Samples"]
    railway = daily[daily["provider"] == "railway"]  # the outage's day; two days when it straddles midnight
    assert railway["minutes_down"].sum() == 30 and (railway["minutes_down"] > 0).sum() in (1, 2)
    assert latency.proto.alt.startswith("Health-check latency over 24 h (each sample): neon median")
    [series] = chart_data(latency)
    assert set(series["provider"]) == set(ALL) and set(series["stat"]) == {"sample"}


def test_latency_window_switches_to_hourly_percentiles(seeded, page):
    at = page(seeded(days=8))
    at.segmented_control(key="latency_window").set_value("7 d").run()
    assert not at.exception
    latency = charts(at)[1]
    assert "over 7 d (hourly p50 and p95)" in latency.proto.alt
    [series] = chart_data(latency)
    assert set(series["stat"]) == {"p50", "p95"} and len(series) == 3 * 2 * series["time"].nunique()
    assert "strokeDash" in json.loads(latency.proto.spec)["encoding"]


def test_sync_lag_shown_per_backup(seeded, page, now):
    state = seeded()
    at = page(state)
    assert metrics(at)["Sync lag supabase"] == "no sync recorded yet"
    assert "No stream or sync recorded yet." in [shown(c.value) for c in at.caption]
    store = StateStore(state)
    store.record_sync("neon", "supabase", ok=True, rows_copied=3, synced_through=now - 3 * MIN, lag_s=0.5)
    store.record_sync("neon", "railway", ok=True, synced_through=now - 45 * MIN, lag_s=0.5)
    st.cache_data.clear()  # the loader caches a state dir for 30 s
    at = page(state)
    m = metrics(at)
    assert m["Sync lag supabase"] == "3 min" and m["Sync lag railway"] == "45 min"
    captions = [shown(c.value) for c in at.caption]
    within = ":material/check_circle: within the 10 min target; last sync from neon "
    assert any(c.startswith(within) and c.endswith(", ok") for c in captions)
    assert any(c.startswith(":material/warning: over the 10 min target") for c in captions)


def test_stream_lag_replaces_sync_lag_for_a_streaming_backup(seeded, page, now):
    state = seeded()
    store = StateStore(state)
    store.record_sync("neon", "supabase", ok=True, synced_through=now - 4 * MIN, lag_s=0.5)
    store.record_sync("neon", "railway", ok=True, synced_through=now - 3 * MIN, lag_s=0.5)
    with store.connect() as conn:
        add_stream_samples(conn, [
            StreamSample(at=now - MIN, subscriber="supabase", publisher="neon", status="streaming", lag_seconds=0.4,
                         lag_bytes=120, detail="subscription enabled, worker running"),
            StreamSample(at=now - MIN, subscriber="railway", publisher="neon", status="unsupported",
                         lag_seconds=None, lag_bytes=None, detail="provider cannot subscribe: use sync --follow")])
    at = page(state)
    assert not at.exception
    assert [h.value for h in at.header].count("Stream lag") == 1
    m = metrics(at)
    assert m["Stream lag supabase"] == "0.4 s" and "Sync lag supabase" not in m
    assert m["Sync lag railway"] == "3 min"  # no stream there: the sync keeps it warm
    captions = [shown(c.value) for c in at.caption]
    assert any(c.startswith(":material/check_circle: within the 30 s target; stream from neon streaming, measured ")
               for c in captions)
    with store.connect() as conn:  # the next run finds the stream stopped
        add_stream_samples(conn, [StreamSample(at=now, subscriber="supabase", publisher="neon", status="stopped",
                                               lag_seconds=None, lag_bytes=None, detail="publisher unreachable")])
    st.cache_data.clear()
    at = page(state)
    assert metrics(at)["Stream lag supabase"] == "unknown"
    assert any(shown(c.value).startswith(":material/warning: over the 30 s target; stream from neon stopped")
               and "publisher unreachable" in shown(c.value) for c in at.caption)


def test_restore_shows_rto(seeded, page, now):
    state = seeded()
    BackupCatalog(StateStore(state)).record_restore(RestoreRecord(
        provider="supabase", backup_path="/srv/backups/neon-x.dump", backup_provider="neon", started_at=now - 10 * MIN,
        finished_at=now - 9 * MIN, duration_s=61.5, status="ok", pre_restore_backup="/srv/backups/supabase-pre.dump",
        error=None))
    at = page(state)
    assert metrics(at)["Last restore RTO"] == "61.5 s"
    assert any("supabase from neon-x.dump, ok" in shown(c.value) for c in at.caption)
    assert "/srv/backups" not in everything(at)


SECRETS = ["Sup3rS3cretPw", "hunter2", "AAH-botSecret", "R0UTINGKEY", "bodysecret"]


def test_no_secret_reaches_the_page(seeded, page, now):
    state = seeded(down={"neon": [(now - 30 * MIN, now)]},
                   errors={"neon": "connection to postgresql://app:Sup3rS3cretPw@db.neon.tech/app refused"})
    store = StateStore(state)
    store.record_sync("neon", "railway", ok=False, error="password=hunter2 authentication failed")
    with store.connect() as conn:
        monitoring.enqueue_delivery(conn, now - 5 * MIN, alert_key="agent-factory/primary-down/neon",
                                    event="trigger", severity="WARNING", channel="telegram", subject="s",
                                    body="bodysecret")
        conn.execute("UPDATE alert_deliveries SET last_error = 'POST https://api.telegram.org/bot42:AAH-botSecret"
                     "/sendMessage failed; routing_key=R0UTINGKEY'")
    BackupCatalog(StateStore(state)).record(BackupRecord(
        provider="neon", path="/secret/dir/neon.dump", format="custom", status="failed", started_at=now - MIN,
        error="pg_dump: password=hunter2 rejected", host="db.neon.tech:5432/app"))
    at = page(state)
    assert not at.exception
    text = everything(at)
    assert "delivery failed" in text and "pg_dump: password=*** rejected" in text
    for secret in SECRETS + ["/secret/dir"]:
        assert secret not in text


def test_thirty_days_of_samples_render(seeded, page):
    at = page(seeded(days=30))
    assert not at.exception
    assert metrics(at)["neon uptime 30 d"] == "100.00 %"
    helps = {m.label: m.proto.help for m in at.metric}
    assert all(helps[f"{n} uptime 30 d"] == "8640 samples; coverage 100 % of 30 d" for n in ALL)  # 25,920
    [daily] = chart_data(charts(at)[0])
    assert len(daily) == 90 and (daily["band"] == "no data").sum() == 0
    assert len(chart_data(charts(at)[1])[0]) == 3 * 288


def test_divergence_and_a_postponed_fail_back_are_shown(seeded, page, now):
    from agent_factory.state.divergence import Divergence, add_divergence

    state = seeded()
    store = StateStore(state)
    store.record_failback_postponed("supabase", "neon", "merging the writes made on supabase failed: busy")
    with store.connect() as conn:
        add_divergence(conn, [Divergence("railway", "neon", now - 2 * MIN, 0, None, True),
                              Divergence("supabase", "neon", now - 2 * MIN, 1014, now - 9 * MIN, True)])
    at = page(state)
    m = metrics(at)
    assert m["Not on the primary: supabase"] == "1014 rows" and m["Not on the primary: railway"] == "0 rows"
    captions = [shown(c.value) for c in at.caption]
    assert any(c.startswith(":material/warning: backup supabase held 1014 rows the primary neon lacked, the oldest 9.0 "
                            "min old; merged into neon") for c in captions), captions
    assert not at.exception
    events = table(at, "kind")
    postponed = events[events["kind"] == "fail-back postponed"]
    assert postponed["subject"].tolist() == ["supabase → neon"]
    assert postponed["detail"].tolist() == ["merging the writes made on supabase failed: busy"]
