"""The health monitor on real local providers, with real capturing Telegram/PagerDuty (HTTP) and SMTP servers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent_factory.cli import main
from agent_factory.ops.alerts import MonitorSettings, channels_from_env
from agent_factory.ops.events import errors
from agent_factory.ops.monitor import BackupStatus, backup_status, run_monitor_loop, run_monitor_once
from agent_factory.state import StateStore, monitoring

from . import servers
from .servers import BOT_TOKEN, ROUTING_KEY, alert_env

http_capture = servers.http_capture
smtp_capture = servers.smtp_capture

T0 = datetime(2025, 1, 6, 8, 0, tzinfo=timezone.utc)
SETTINGS = MonitorSettings(delivery_timeout=3, backup_max_age=None)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def monitor(make_db, env, http_capture, smtp_capture):
    """Run the monitor once per call, five minutes apart, alerting to the capture servers."""
    db = make_db()
    store = StateStore(db.config.state_dir)
    channels = channels_from_env(alert_env(http_capture, smtp_capture), env_file=None)
    runs = []

    def run(settings: MonitorSettings = SETTINGS, **kwargs):
        result = run_monitor_once(db, store, channels, T0 + timedelta(minutes=5 * len(runs)), settings=settings,
                                  **kwargs)
        runs.append(result)
        return result

    run.db, run.store = db, store  # type: ignore[attr-defined]
    return run


def fired(result) -> list[str]:
    return [str(a) for a in result.alerts if a.action in ("fired", "resolved", "reminded")]


def test_a_killed_primary_fires_one_warning_then_one_recovery(monitor, local, http_capture, smtp_capture):
    first = monitor()
    assert first.can_serve and fired(first) == []
    assert first.summary.startswith("neon OK ") and first.summary.endswith("alerts: none firing")

    local.kill("neon")
    down1 = monitor()
    assert fired(down1) == [] and not http_capture.requests and not smtp_capture.messages
    assert "neon DOWN (connection refused)" in down1.summary
    down2 = monitor()
    assert fired(down2) == ["fired WARNING primary-down/neon"]
    assert "alerts: fired WARNING primary-down/neon" in down2.summary
    down3 = monitor()
    assert fired(down3) == [] and down3.firing == ["agent-factory/primary-down/neon"]
    assert len(http_capture.telegram()) == 1 and len(http_capture.pagerduty()) == 1 and len(smtp_capture.messages) == 1
    assert "primary provider neon is down" in http_capture.telegram()[0].json["text"]

    local.start("neon")
    assert fired(monitor()) == []
    assert fired(monitor()) == ["resolved primary-down/neon"]
    assert fired(monitor()) == []

    telegram = [r.json["text"] for r in http_capture.telegram()]
    assert len(telegram) == 2 and "primary provider neon recovered" in telegram[1]
    assert [m.message["X-Agent-Factory-Severity"] for m in smtp_capture.messages] == ["WARNING", "INFO"]
    trigger, resolve = (r.json for r in http_capture.pagerduty())
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == "agent-factory/primary-down/neon"


def test_all_providers_down_fires_critical_and_suppresses_the_warnings(monitor, local, http_capture):
    for name in ("neon", "supabase", "railway"):
        local.kill(name)
    first, second = monitor(), monitor()
    assert not first.can_serve and not second.can_serve
    assert fired(second) == ["fired CRITICAL all-down"]
    assert {a.action for a in second.alerts if a.key != "agent-factory/all-down"} == {"suppressed"}
    [trigger] = http_capture.pagerduty()
    assert trigger.json["payload"]["severity"] == "critical"
    assert trigger.json["dedup_key"] == "agent-factory/all-down"
    assert len(http_capture.telegram()) == 1

    for name in ("neon", "supabase", "railway"):
        local.start(name)
    monitor()
    assert fired(monitor()) == ["resolved all-down"]
    events = [(r.json["event_action"], r.json["dedup_key"]) for r in http_capture.pagerduty()]
    assert events == [("trigger", "agent-factory/all-down"), ("resolve", "agent-factory/all-down")]


def test_samples_row_counts_heartbeats_and_retention(monitor, db):
    with db.provider_connection("neon") as conn:
        conn.execute("INSERT INTO knowledge_atoms (id, atom_id, atom_type, title, content) "
                     "VALUES (gen_random_uuid(), 'a1', 'concept', 't', 'c')")
        conn.commit()
    old = monitor()
    result = monitor(MonitorSettings(backup_max_age=None, retention=timedelta(minutes=1)))
    samples = monitoring.samples(monitor.store)
    assert {s.run_id for s in samples} == {result.run_id}, "the first run's samples are past the retention"
    by_name = {s.provider: s for s in samples}
    assert set(by_name) == {"neon", "supabase", "railway"} and by_name["neon"].is_primary
    assert all(s.healthy and s.latency_ms > 0 and s.select_ms is not None for s in samples)
    assert by_name["neon"].row_counts == {"session_memories": 0, "knowledge_atoms": 1}
    # The first run's warm-backup sync copied the atom to the backups.
    assert by_name["railway"].row_counts == {"session_memories": 0, "knowledge_atoms": 1}
    [beat] = monitoring.heartbeats(monitor.store)
    assert beat.id == result.run_id != old.run_id
    assert beat.can_serve and beat.providers_up == 3 and beat.summary == result.summary


def test_failed_delivery_is_recorded_and_retried_without_crashing(monitor, http_capture, smtp_capture):
    failing = [BackupStatus("neon", None, "failed", T0, "pg_dump: disk full")]
    http_capture.stop()
    monitor(backups=lambda store, names: failing, settings=MonitorSettings(delivery_timeout=3))
    result = monitor(backups=lambda store, names: failing, settings=MonitorSettings(delivery_timeout=3))
    assert fired(result) == ["fired WARNING backup-overdue/neon"]
    assert result.deliveries.sent == 1 and result.deliveries.failed == 2  # e-mail went out; telegram, pagerduty not
    assert "retried next run" in result.summary
    recent = errors(monitor.store)
    assert {(e.source, e.subject) for e in recent} == {("delivery", "telegram"), ("delivery", "pagerduty")}

    http_capture.start()
    retry = monitor(backups=lambda store, names: failing, settings=MonitorSettings(delivery_timeout=3))
    assert fired(retry) == [] and retry.deliveries.sent == 2 and retry.deliveries.failed == 0
    assert "last backup of neon failed" in http_capture.telegram()[0].json["text"]
    assert http_capture.pagerduty()[0].json["dedup_key"] == "agent-factory/backup-overdue/neon"
    assert len(smtp_capture.messages) == 1


def test_a_channel_that_raises_never_crashes_the_monitor(make_db, local):
    class Broken:
        name, sends_reminders = "broken", True

        def send(self, notification):
            raise RuntimeError("bug in a channel")

    db = make_db()
    store = StateStore(db.config.state_dir)
    local.kill("railway")
    for minute in (0, 5, 10):
        result = run_monitor_once(db, store, [Broken()], T0 + timedelta(minutes=minute), settings=SETTINGS)
    assert result.can_serve and result.deliveries.failed == 1
    assert "broken: RuntimeError: bug in a channel" in result.summary
    assert monitoring.deliveries(store)[0].attempts == 2


def test_backup_rule_reads_the_catalog(monitor):
    pytest.importorskip("agent_factory.state.backups")
    from agent_factory.state.backups import BackupCatalog, BackupRecord

    catalog = BackupCatalog(monitor.store)
    [neon] = backup_status(monitor.store, ["neon", "supabase", "railway"])
    assert (neon.provider, neon.newest_backup_at, neon.last_attempt_status) == ("neon", None, None)
    catalog.record(BackupRecord(provider="neon", path="/b/neon-1.dump", format="custom", status="ok",
                                started_at=T0 - timedelta(hours=30), verified_at=T0 - timedelta(hours=29),
                                signed=True))
    settings = MonitorSettings(delivery_timeout=3)
    monitor(settings=settings)
    assert fired(monitor(settings=settings)) == ["fired WARNING backup-overdue/neon"]
    catalog.record(BackupRecord(provider="neon", path="/b/neon-2.dump", format="custom", status="ok",
                                started_at=T0, verified_at=T0 + timedelta(minutes=1), signed=True))
    monitor(settings=settings)
    assert fired(monitor(settings=settings)) == ["resolved backup-overdue/neon"]


def test_loop_runs_repeatedly(make_db):
    db = make_db()
    seen = []
    last = run_monitor_loop(0.05, db, StateStore(db.config.state_dir), [], settings=SETTINGS, count=3,
                            on_result=seen.append)
    assert len(seen) == 3 and last is seen[-1] and last.can_serve


def _cli_env(monkeypatch, tmp_path, env, extra=()):
    monkeypatch.chdir(tmp_path)  # no .env here
    for key in [k for k in os.environ if k.endswith("_DB_URL") or k.startswith(("DATABASE_", "TELEGRAM_", "SMTP_"))]:
        monkeypatch.delenv(key)
    for key, value in {**env, "MONITOR_BACKUP_MAX_AGE_HOURS": "0", **dict(extra)}.items():
        monkeypatch.setenv(key, value)


def test_cli_exit_codes_status_lines_and_no_secrets(monkeypatch, tmp_path, env, local, passwords, capsys, caplog,
                                                     http_capture, smtp_capture):
    caplog.set_level(logging.DEBUG)
    _cli_env(monkeypatch, tmp_path, env, alert_env(http_capture, smtp_capture))
    assert main(["monitor", "--once"]) == 0
    ok_line = capsys.readouterr().out.strip()
    assert ok_line.startswith("neon OK ") and "railway OK" in ok_line and ok_line.endswith("alerts: none firing")

    for name in ("neon", "supabase", "railway"):
        local.kill(name)
    assert main(["monitor"]) == 1
    assert main(["--json", "monitor", "--once"]) == 1
    out = capsys.readouterr().out
    payload = json.loads(out[out.index("{"):])
    assert payload["ok"] is False and payload["result"]["can_serve"] is False
    assert [a["action"] for a in payload["result"]["alerts"] if a["key"].endswith("all-down")] == ["fired"]
    assert main(["monitor", "--loop", "0.05", "--count", "2"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "neon DOWN (connection refused)" in lines[0]
    assert lines[-1] == "monitor stopped after 2 runs"
    assert main(["errors", "--since", "1h"]) == 0
    assert "[health] neon: connection refused" in capsys.readouterr().out

    captured = capsys.readouterr()
    texts = [out, *lines, captured.out, captured.err] + [r.getMessage() for r in caplog.records]
    texts += [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    messages = [r.json["text"] for r in http_capture.telegram()] + [m.data.decode() for m in smtp_capture.messages]
    messages += [json.dumps(r.json["payload"]) for r in http_capture.pagerduty()]
    state_dir = Path(env["AGENT_FACTORY_STATE_DIR"])
    state_bytes = b"".join(p.read_bytes() for p in state_dir.iterdir() if p.is_file())
    assert http_capture.telegram() and smtp_capture.messages, "the CRITICAL alert should have gone out"
    for secret in [*passwords, BOT_TOKEN, ROUTING_KEY]:
        assert not [text for text in texts + messages if secret in text]
        assert secret.encode() not in state_bytes


def test_runbook_script_runs_the_monitor(env, tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_DB_URL") and not k.startswith("DATABASE_")}
    result = subprocess.run([sys.executable, str(REPO / "scripts/ops/health_monitor.py"), "--json"],
                            env={**clean, **env, "MONITOR_BACKUP_MAX_AGE_HOURS": "0"}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"]["can_serve"] is True
    assert "Traceback" not in result.stderr
