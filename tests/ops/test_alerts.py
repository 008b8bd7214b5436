"""Alert rules, state machine, outbox and channels, against real capturing HTTP and SMTP servers (no PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from agent_factory.errors import AlertError, ConfigError
from agent_factory.ops.alerts import (
    Check,
    EmailChannel,
    MonitorSettings,
    Notification,
    PagerDutyChannel,
    Severity,
    TelegramChannel,
    apply_checks,
    channels_from_env,
    deliver_pending,
    settings_from_env,
)
from agent_factory.ops.alerts.rules import ALL_DOWN, PRIMARY_DOWN, PROVIDER_DOWN
from agent_factory.state import StateStore, monitoring

from . import servers
from .servers import BOT_TOKEN, ROUTING_KEY, CaptureHTTPServer, alert_env

http_capture = servers.http_capture
smtp_capture = servers.smtp_capture

T0 = datetime(2025, 1, 6, 8, 0, tzinfo=timezone.utc)
SETTINGS = MonitorSettings(delivery_timeout=3)


class Recorder:
    """A channel that keeps what it is sent."""

    def __init__(self, name: str = "recorder", sends_reminders: bool = True) -> None:
        self.name, self.sends_reminders, self.sent = name, sends_reminders, []

    def send(self, notification: Notification) -> None:
        self.sent.append(notification)


def primary(failing: bool) -> Check:
    return Check(PRIMARY_DOWN, Severity.WARNING, failing, "neon is down" if failing else "neon answers", "neon",
                 suppressible=True)


def all_down(failing: bool) -> Check:
    return Check(ALL_DOWN, Severity.CRITICAL, failing, "nothing answers" if failing else "3 of 3 serve")


def step(store: StateStore, checks: list[Check], minute: int, channels: list, settings=SETTINGS):
    now = T0 + timedelta(minutes=minute)
    with store.connect() as conn:
        actions = apply_checks(conn, checks, now, settings, channels, context="neon DOWN")
    deliver_pending(store, channels, now, settings)
    return [str(a) for a in actions if a.action != "pending"]


def test_fires_after_two_failures_once_reminds_hourly_and_resolves_after_two_good(tmp_path):
    store, rec = StateStore(tmp_path), Recorder()
    pd = Recorder("pd", sends_reminders=False)
    assert step(store, [primary(True)], 0, [rec, pd]) == []
    assert step(store, [primary(True)], 5, [rec, pd]) == ["fired WARNING primary-down/neon"]
    assert step(store, [primary(True)], 10, [rec, pd]) == []
    assert [n.event for n in rec.sent] == ["trigger"]
    assert step(store, [primary(True)], 65, [rec, pd]) == ["reminded WARNING primary-down/neon"]
    assert step(store, [primary(False)], 70, [rec, pd]) == []
    assert step(store, [primary(False)], 75, [rec, pd]) == ["resolved primary-down/neon"]
    assert step(store, [primary(False)], 80, [rec, pd]) == []
    assert [(n.event, n.severity) for n in rec.sent] == [
        ("trigger", Severity.WARNING), ("reminder", Severity.WARNING), ("resolve", Severity.INFO)]
    assert [n.event for n in pd.sent] == ["trigger", "resolve"]
    assert {n.key for n in rec.sent + pd.sent} == {"agent-factory/primary-down/neon"}
    trigger = rec.sent[0]
    assert trigger.subject == "[WARNING] agent-factory: primary provider neon is down (failover active)"
    assert "neon is down" in trigger.body and "Status: neon DOWN" in trigger.body
    assert "recovered" in rec.sent[-1].subject


def test_flapping_does_not_fire_and_one_good_run_does_not_resolve(tmp_path):
    store, rec = StateStore(tmp_path), Recorder()
    for minute, failing in enumerate([True, False, True, False, True]):
        assert step(store, [primary(failing)], minute * 5, [rec]) == []
    assert step(store, [primary(True)], 30, [rec]) == ["fired WARNING primary-down/neon"]
    assert step(store, [primary(False)], 35, [rec]) == []
    assert step(store, [primary(True)], 40, [rec]) == []
    assert [n.event for n in rec.sent] == ["trigger"]
    state = {a.key: a for a in monitoring.alert_states(store)}["agent-factory/primary-down/neon"]
    assert state.firing and state.first_failed_at == T0 + timedelta(minutes=20)


def test_all_down_suppresses_per_provider_warnings(tmp_path):
    store, rec = StateStore(tmp_path), Recorder()
    railway = Check(PROVIDER_DOWN, Severity.WARNING, True, "railway is down", "railway", suppressible=True)
    assert step(store, [all_down(True), primary(True), railway], 0, [rec]) == []
    assert step(store, [all_down(True), primary(True), railway], 5, [rec]) == [
        "fired CRITICAL all-down", "suppressed WARNING primary-down/neon",
        "suppressed WARNING provider-down/railway"]
    assert step(store, [all_down(True), primary(True), railway], 65, [rec]) == [
        "reminded CRITICAL all-down", "suppressed WARNING primary-down/neon",
        "suppressed WARNING provider-down/railway"]
    # railway comes back, neon stays down: all-down resolves, and only then the primary warning fires.
    railway_ok = Check(PROVIDER_DOWN, Severity.WARNING, False, "railway answers", "railway", suppressible=True)
    assert step(store, [all_down(False), primary(True), railway_ok], 70, [rec]) == [
        "suppressed WARNING primary-down/neon"]
    assert step(store, [all_down(False), primary(True), railway_ok], 75, [rec]) == [
        "resolved all-down", "fired WARNING primary-down/neon"]
    assert [(n.event, n.key.rsplit("/", 1)[-1]) for n in rec.sent] == [
        ("trigger", "all-down"), ("reminder", "all-down"), ("resolve", "all-down"), ("trigger", "neon")]


def test_an_alert_no_longer_checked_resolves(tmp_path):
    store, rec = StateStore(tmp_path), Recorder()
    step(store, [primary(True)], 0, [rec])
    step(store, [primary(True)], 5, [rec])
    assert step(store, [], 10, [rec]) == []
    assert step(store, [], 15, [rec]) == ["resolved primary-down/neon"]


def test_channels_deliver_to_real_servers(http_capture, smtp_capture):
    channels = channels_from_env(alert_env(http_capture, smtp_capture), env_file=None)
    assert [c.name for c in channels] == ["telegram", "email", "pagerduty"]
    note = Notification("agent-factory/primary-down/neon", "trigger", Severity.WARNING,
                        "[WARNING] agent-factory: primary provider neon is down", "neon: connection refused")
    for channel in channels:
        channel.send(note)
        channel.send(Notification(note.key, "resolve", Severity.INFO, "[INFO] recovered", "neon answers"))

    telegram = http_capture.telegram()
    assert [r.path for r in telegram] == [f"/bot{BOT_TOKEN}/sendMessage"] * 2
    assert telegram[0].json["chat_id"] == "-1001234"
    assert "primary provider neon is down" in telegram[0].json["text"]

    trigger, resolve = (r.json for r in http_capture.pagerduty())
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "agent-factory/primary-down/neon"
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["payload"]["severity"] == "warning" and trigger["payload"]["component"] == "neon"

    mail = smtp_capture.messages[0]
    assert mail.recipients == ["oncall@example.test", "sre@example.test"]
    assert mail.message["Subject"] == "[WARNING] agent-factory: primary provider neon is down"
    assert mail.message["X-Agent-Factory-Alert"] == "agent-factory/primary-down/neon"
    assert "neon: connection refused" in mail.message.get_content()


def test_channel_errors_are_alert_errors_without_secrets(http_capture, smtp_capture):
    note = Notification("agent-factory/all-down", "trigger", Severity.CRITICAL, "s", "b")
    http_capture.fail_status = 401
    telegram = TelegramChannel(BOT_TOKEN, "1", api_base=http_capture.base, timeout=3)
    with pytest.raises(AlertError, match="telegram answered HTTP 401: Unauthorized") as info:
        telegram.send(note)
    assert BOT_TOKEN not in str(info.value)
    with pytest.raises(AlertError, match="pagerduty answered HTTP 401"):
        PagerDutyChannel(ROUTING_KEY, events_url=f"{http_capture.base}/v2/enqueue", timeout=3).send(note)
    http_capture.stop()
    with pytest.raises(AlertError, match="connection refused") as info:
        telegram.send(note)
    assert BOT_TOKEN not in str(info.value)
    bad_url = TelegramChannel(BOT_TOKEN, "1", api_base="http://127.0.0.1:notaport", timeout=3)
    with pytest.raises(AlertError) as info:
        bad_url.send(note)
    assert BOT_TOKEN not in str(info.value)
    smtp_capture.stop()
    with pytest.raises(AlertError, match="connection refused"):
        EmailChannel("127.0.0.1", smtp_capture.port, "a@example.test", ("b@example.test",), timeout=3).send(note)


def test_failed_delivery_is_kept_and_retried_next_run(tmp_path, http_capture):
    store = StateStore(tmp_path)
    telegram = TelegramChannel(BOT_TOKEN, "1", api_base=http_capture.base, timeout=3)
    http_capture.stop()
    step(store, [primary(True)], 0, [telegram])
    step(store, [primary(True)], 5, [telegram])
    [row] = monitoring.deliveries(store)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "connection refused")

    http_capture.start()
    step(store, [primary(True)], 10, [telegram])
    [row] = monitoring.deliveries(store)
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(http_capture.telegram()) == 1
    assert BOT_TOKEN.encode() not in b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())


def test_a_broken_channel_keeps_order_and_later_messages_wait(tmp_path, http_capture):
    store = StateStore(tmp_path)
    pd = PagerDutyChannel(ROUTING_KEY, events_url=f"{http_capture.base}/v2/enqueue", timeout=3)
    step(store, [primary(True)], 0, [pd])
    http_capture.stop()
    step(store, [primary(True)], 5, [pd])
    step(store, [primary(False)], 10, [pd])
    step(store, [primary(False)], 15, [pd])  # resolve queued behind the undelivered trigger
    assert [d.status for d in monitoring.deliveries(store)] == ["pending", "pending"]
    http_capture.start()
    report = deliver_pending(store, [pd], T0 + timedelta(minutes=20), SETTINGS)
    assert (report.sent, report.failed) == (2, 0)
    assert [r.json["event_action"] for r in http_capture.pagerduty()] == ["trigger", "resolve"]


def test_undeliverable_notifications_expire(tmp_path, http_capture):
    store = StateStore(tmp_path)
    telegram = TelegramChannel(BOT_TOKEN, "1", api_base=http_capture.base, timeout=3)
    http_capture.stop()
    step(store, [primary(True)], 0, [telegram])
    step(store, [primary(True)], 5, [telegram])
    report = deliver_pending(store, [telegram], T0 + timedelta(days=2), SETTINGS)
    assert report.expired == 1 and report.pending == 0
    assert [d.status for d in monitoring.deliveries(store)] == ["expired"]


def test_channel_configuration_from_env_and_dotenv(tmp_path, http_capture, smtp_capture):
    assert channels_from_env({}, env_file=None) == []
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"TELEGRAM_BOT_TOKEN={BOT_TOKEN}\nTELEGRAM_CHAT_ID=42\n")
    [telegram] = channels_from_env({}, env_file=dotenv)
    assert isinstance(telegram, TelegramChannel) and telegram.api_base == "https://api.telegram.org"
    assert BOT_TOKEN not in repr(telegram)
    with pytest.raises(ConfigError, match="telegram alert channel is configured halfway: set TELEGRAM_CHAT_ID"):
        channels_from_env({"TELEGRAM_BOT_TOKEN": BOT_TOKEN}, env_file=None)
    with pytest.raises(ConfigError, match="set ALERT_EMAIL_FROM, ALERT_EMAIL_TO"):
        channels_from_env({"SMTP_HOST": "mail.example.test"}, env_file=None)
    email_channel = channels_from_env({"SMTP_HOST": "h", "SMTP_PORT": "587", "ALERT_EMAIL_FROM": "a@x",
                                       "ALERT_EMAIL_TO": "b@x", "SMTP_USER": "u", "SMTP_PASSWORD": "pw"},
                                      env_file=None)[0]
    assert isinstance(email_channel, EmailChannel) and email_channel.starttls and "pw" not in repr(email_channel)
    with pytest.raises(ConfigError, match="SMTP_PORT"):
        channels_from_env({"SMTP_HOST": "h", "SMTP_PORT": "x", "ALERT_EMAIL_FROM": "a", "ALERT_EMAIL_TO": "b"},
                          env_file=None)


def test_settings_from_env():
    assert settings_from_env({}, env_file=None) == MonitorSettings()
    custom = settings_from_env({"ALERT_FIRE_AFTER": "3", "ALERT_REMINDER_MINUTES": "0",
                                "MONITOR_BACKUP_MAX_AGE_HOURS": "0", "MONITOR_RETENTION_DAYS": "7"}, env_file=None)
    assert (custom.fire_after, custom.reminder_interval, custom.backup_max_age, custom.retention) == (
        3, None, None, timedelta(days=7))
    with pytest.raises(ConfigError, match="ALERT_FIRE_AFTER"):
        settings_from_env({"ALERT_FIRE_AFTER": "0"}, env_file=None)


def test_capture_server_answers_like_telegram_and_pagerduty(http_capture: CaptureHTTPServer):
    PagerDutyChannel(ROUTING_KEY, events_url=f"{http_capture.base}/v2/enqueue", timeout=3).send(
        Notification("agent-factory/all-down", "trigger", Severity.CRITICAL, "s", "b"))
    assert http_capture.pagerduty()[0].json["payload"]["severity"] == "critical"
