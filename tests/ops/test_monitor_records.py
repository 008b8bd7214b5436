"""What the monitor records for the status page: primary and serving provider, alert events, backup age."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from agent_factory.ops.alerts import Check, MonitorSettings, Severity, apply_checks
from agent_factory.ops.alerts.rules import PRIMARY_DOWN
from agent_factory.ops.monitor import run_monitor_once, serving_provider
from agent_factory.state import StateStore, monitoring
from agent_factory.state.backups import BackupCatalog, BackupRecord, backup_age, newest_good_backup
from agent_factory.state.monitoring import HealthSample

T0 = datetime(2025, 1, 6, 8, 0, tzinfo=timezone.utc)


def sample(name: str, healthy: bool, primary: bool = False) -> HealthSample:
    return HealthSample(name, T0, primary, healthy, 1.0 if healthy else None, None, None if healthy else "down")


@pytest.mark.parametrize("up, failover, expected", [
    ((True, True, True), True, "neon"),
    ((False, True, True), True, "supabase"),
    ((False, False, True), True, "railway"),
    ((False, False, False), True, None),
    ((False, True, True), False, None),
])
def test_serving_provider_is_the_primary_or_the_next_healthy_one(up, failover, expected):
    samples = [sample("neon", up[0], primary=True), sample("supabase", up[1]), sample("railway", up[2])]
    assert serving_provider(samples, failover) == expected


def test_serving_provider_starts_the_rotation_at_the_primary():
    samples = [sample("neon", True), sample("supabase", False, primary=True), sample("railway", True)]
    assert serving_provider(samples) == "railway"


def test_fires_and_resolves_are_recorded_as_alert_events_in_the_same_transaction(tmp_path):
    store = StateStore(tmp_path / "state")
    settings = MonitorSettings()

    def run(minute: int, failing: bool) -> None:
        check = Check(PRIMARY_DOWN, Severity.WARNING, failing, f"neon {'down' if failing else 'up'} {minute}", "neon")
        with store.connect() as conn:
            apply_checks(conn, [check], T0 + timedelta(minutes=minute), settings, [])

    for minute, failing in ((0, True), (5, True), (10, True), (15, False), (20, False)):
        run(minute, failing)
    events = monitoring.alert_events(store)
    assert [(e.event, e.at, e.summary) for e in events] == [
        ("resolved", T0 + timedelta(minutes=20), "neon up 20"),
        ("fired", T0 + timedelta(minutes=5), "neon down 5"),
    ]
    assert {(e.alert_key, e.rule, e.severity, e.subject) for e in events} == {
        ("agent-factory/primary-down/neon", "primary-down", "WARNING", "neon")}

    with pytest.raises(RuntimeError):  # a failed run records no event and no state
        with store.connect() as conn:
            for minute in (25, 30):
                apply_checks(conn, [Check(PRIMARY_DOWN, Severity.WARNING, True, "x", "neon")],
                             T0 + timedelta(minutes=minute), settings, [])
            raise RuntimeError("crash before commit")
    assert len(monitoring.alert_events(store)) == 2


def _backup(path: str, started: datetime, **kwargs) -> BackupRecord:
    values = {"provider": "neon", "format": "custom", "status": "ok", "verified_at": started + timedelta(minutes=1),
              "signed": True, **kwargs}
    return BackupRecord(path=path, started_at=started, **values)


def test_backup_age_counts_from_when_the_newest_good_backup_was_taken():
    now = T0
    old = _backup("/b/old.dump", now - timedelta(hours=30), verified_at=now - timedelta(hours=1))
    assert backup_age([old], now) == timedelta(hours=30), "verifying an old backup again does not make it fresh"
    unverified = _backup("/b/new.dump", now - timedelta(hours=1), verified_at=None)
    failed_check = _backup("/b/bad.dump", now - timedelta(hours=2), verify_error="checksum mismatch")
    pruned = _backup("/b/pruned.dump", now - timedelta(hours=3), status="pruned")
    safety = _backup("/b/pre.dump", now - timedelta(hours=4), purpose="pre-restore")
    good = _backup("/b/good.dump", now - timedelta(hours=5))
    records = [old, unverified, failed_check, pruned, safety, good]
    assert newest_good_backup(records) is good
    assert backup_age(records, now) == timedelta(hours=5)
    assert backup_age([unverified, pruned], now) is None


def test_monitor_records_primary_serving_and_fires_on_an_old_backup_verified_recently(make_db, local):
    db = make_db()
    store = StateStore(db.config.state_dir)
    BackupCatalog(store).record(_backup("/b/neon-old.dump", T0 - timedelta(hours=30),
                                        verified_at=T0 - timedelta(minutes=30)))
    settings = MonitorSettings(delivery_timeout=3)
    first = run_monitor_once(db, store, [], T0, settings=settings)
    [beat] = monitoring.heartbeats(store)
    assert (beat.primary_provider, beat.serving_provider) == ("neon", "neon")
    local.kill("neon")
    second = run_monitor_once(db, store, [], T0 + timedelta(minutes=5), settings=settings)
    assert [str(a) for a in second.alerts if a.action == "fired"] == ["fired WARNING backup-overdue/neon"]
    assert first.backups is not None and first.backups[0].newest_backup_at == T0 - timedelta(hours=30)
    beat = monitoring.heartbeats(store)[0]
    assert (beat.primary_provider, beat.serving_provider) == ("neon", "supabase")
    assert [(e.alert_key, e.event) for e in monitoring.alert_events(store)] == [
        ("agent-factory/backup-overdue/neon", "fired")]
