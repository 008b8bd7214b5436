"""Disk usage against quotas: `agent-factory capacity`, the monitor's size samples and the `capacity` alert."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest

from agent_factory.cli import main
from agent_factory.core import DatabaseManager
from agent_factory.ops.alerts import MonitorSettings
from agent_factory.ops.capacity import MB, capacity_report, growth_per_day
from agent_factory.ops.monitor import run_monitor_once
from agent_factory.state import StateStore, maintenance, monitoring
from agent_factory.state.maintenance import SizeSample

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=timezone.utc)
SETTINGS = MonitorSettings(delivery_timeout=3, backup_max_age=None, sync_backups=False)


def test_capacity_reports_every_provider(cli_env: dict[str, str], capsys: pytest.CaptureFixture[str],
                                         passwords: list[str]) -> None:
    code = main(["capacity", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out)["result"]
    assert [p["provider"] for p in report] == ["neon", "supabase", "railway"]
    for p in report:
        assert p["database_bytes"] > 0 and p["state"] == "no-quota" and p["error"] is None
        assert any(r["kind"] == "table" and r["dead_tuples"] is not None for r in p["relations"])
        assert any(r["kind"] == "index" for r in p["relations"])
    assert all(secret not in out for secret in passwords)


def test_a_quota_below_the_size_fires_the_capacity_alert_and_a_larger_one_resolves_it(make_db) -> None:
    db = make_db(NEON_STORAGE_QUOTA_MB="1")
    store = StateStore(db.config.state_dir)
    results = [run_monitor_once(db, store, [], T0 + timedelta(minutes=5 * i), settings=SETTINGS) for i in range(2)]
    assert "agent-factory/capacity/neon" in results[-1].firing
    fired = [a for a in results[-1].fired if a.key == "agent-factory/capacity/neon"]
    assert fired and fired[0].severity.value == "CRITICAL" and "NEON_STORAGE_QUOTA_MB" in fired[0].detail
    assert not any("capacity/supabase" in k for k in results[-1].firing)  # no quota, no alert
    sizes = maintenance.size_samples(store, "neon")
    assert len(sizes) == 2 and sizes[0].quota_bytes == MB and sizes[0].database_bytes > MB

    roomy = make_db(NEON_STORAGE_QUOTA_MB="100000", AGENT_FACTORY_STATE_DIR=str(db.config.state_dir))
    later = [run_monitor_once(roomy, store, [], T0 + timedelta(minutes=20 + 5 * i), settings=SETTINGS)
             for i in range(2)]
    assert any(a.key == "agent-factory/capacity/neon" and a.action == "resolved" for a in later[-1].alerts)
    events = [e.event for e in monitoring.alert_events(store) if e.alert_key == "agent-factory/capacity/neon"]
    assert events == ["resolved", "fired"]  # newest first


def test_warning_from_80_percent(make_db) -> None:
    db = make_db()
    size = capacity_report(db, StateStore(db.config.state_dir), provider="neon")[0].database_bytes
    quota_mb = size / MB / 0.85  # 85 % used
    warned = make_db(NEON_STORAGE_QUOTA_MB=f"{quota_mb:.3f}")
    store = StateStore(warned.config.state_dir)
    result = [run_monitor_once(warned, store, [], T0 + timedelta(minutes=5 * i), settings=SETTINGS)
              for i in range(2)][-1]
    fired = [a for a in result.fired if a.key == "agent-factory/capacity/neon"]
    assert fired and fired[0].severity.value == "WARNING"


def test_growth_per_day_and_days_left_from_the_history(db: DatabaseManager) -> None:
    store = StateStore(db.config.state_dir)
    now = datetime.now(timezone.utc)
    size = capacity_report(db, store, provider="neon", now=now - timedelta(seconds=1))[0].database_bytes
    assert size is not None
    with store.connect() as conn:  # a week of history growing 10 MB a day up to today's size
        maintenance.add_size_samples(conn, [SizeSample("neon", now - timedelta(days=d), size - d * 10 * MB)
                                            for d in range(7, 0, -1)])
    quota_mb = (size + 50 * MB) / MB
    neon = dataclasses.replace(db.config.providers["neon"], storage_quota_mb=quota_mb)
    roomy = DatabaseManager(dataclasses.replace(db.config, providers={**db.config.providers, "neon": neon}))
    with roomy:
        report = capacity_report(roomy, store, provider="neon", days=30, now=now)[0]
    assert report.growth_bytes_per_day == pytest.approx(10 * MB, rel=0.05)
    assert report.days_left == pytest.approx(5.0, rel=0.1)
    assert "days left" in report.summary


def test_growth_needs_hours_of_history() -> None:
    at = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert growth_per_day([SizeSample("neon", at, 1), SizeSample("neon", at + timedelta(minutes=5), 2)]) is None
    assert growth_per_day([SizeSample("neon", at, 0), SizeSample("neon", at + timedelta(days=2), 2 * MB)]) == MB
