"""The alert state machine: checks in, alert transitions and queued notifications out.

Each run hands in one `Check` per alert key (failing or not). Per key:

- an alert *fires* after `fire_after` consecutive failing runs (default 2), and
  queues a trigger for every channel;
- while firing it queues a *reminder* every `reminder_interval` (channels that
  escalate by themselves, like PagerDuty, get none);
- it *resolves* after `resolve_after` consecutive good runs (default 2) and
  queues a resolve (INFO "recovered") with the same dedup key;
- while the CRITICAL all-down alert is failing or firing, the per-provider
  warnings are *suppressed*: they do not fire and send no reminders (a warning
  already sent still resolves normally);
- an alert no longer checked (provider removed, rule turned off) counts as good.

State, the `alert_events` row of each fire and resolve, and queued
notifications are written in the caller's transaction, so a crash cannot fire
an alert without recording it and queueing its notifications.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ...state.monitoring import AlertState, add_alert_event, enqueue_delivery, load_alerts, save_alert
from .base import KEY_PREFIX, Channel, Severity
from .config import MonitorSettings

ALL_DOWN = "all-down"
PRIMARY_DOWN = "primary-down"
PROVIDER_DOWN = "provider-down"
BACKUP_OVERDUE = "backup-overdue"
SYNC_LAG = "sync-lag"
DIVERGENCE = "divergence"
CAPACITY = "capacity"
CREDENTIALS = "credentials"

_TITLES = {
    ALL_DOWN: "all database providers are down",
    PRIMARY_DOWN: "primary provider {subject} is down (failover active)",
    PROVIDER_DOWN: "backup provider {subject} is down",
    BACKUP_OVERDUE: "backup of {subject} failed or is overdue",
    SYNC_LAG: "backup provider {subject} is behind the primary (warm-backup sync lagging)",
    DIVERGENCE: "backup provider {subject} holds writes the primary lacks (a process served from it)",
    CAPACITY: "provider {subject} is near its storage quota",
    CREDENTIALS: "provider {subject} refuses the configured credentials (not an outage)",
}
_RECOVERED = {
    ALL_DOWN: "database providers are serving again",
    PRIMARY_DOWN: "primary provider {subject} recovered",
    PROVIDER_DOWN: "backup provider {subject} recovered",
    BACKUP_OVERDUE: "backups of {subject} are current again",
    SYNC_LAG: "backup provider {subject} caught up with the primary",
    DIVERGENCE: "backup provider {subject} holds nothing the primary lacks",
    CAPACITY: "provider {subject} is below 80 % of its storage quota again",
    CREDENTIALS: "provider {subject} accepts the configured credentials again",
}


def alert_key(rule: str, subject: str | None = None) -> str:
    """Return the stable dedup key of an alert, e.g. "agent-factory/primary-down/neon"."""
    return f"{KEY_PREFIX}{rule}" + (f"/{subject}" if subject else "")


@dataclass(frozen=True)
class Check:
    """What one run observed for one alert key."""

    rule: str
    severity: Severity
    failing: bool
    detail: str  # one sentence about the current state
    subject: str | None = None  # the provider, when the rule is per provider
    suppressible: bool = False  # silenced while all providers are down

    @property
    def key(self) -> str:
        """The alert's dedup key."""
        return alert_key(self.rule, self.subject)


@dataclass(frozen=True)
class AlertAction:
    """A transition (or non-transition worth reporting) of one alert in one run."""

    key: str
    severity: Severity
    action: str  # "fired", "reminded", "resolved", "pending", "suppressed"
    detail: str

    @property
    def short_key(self) -> str:
        """The key without the "agent-factory/" prefix."""
        return self.key.removeprefix(KEY_PREFIX)

    def __str__(self) -> str:
        if self.action == "resolved":
            return f"resolved {self.short_key}"
        return f"{self.action} {self.severity.value} {self.short_key}"


def title(rule: str, subject: str | None, *, recovered: bool = False) -> str:
    """Return the human title of an alert (or of its recovery)."""
    template = (_RECOVERED if recovered else _TITLES).get(rule, rule + (" {subject}" if subject else ""))
    return template.format(subject=subject or "")


def apply_checks(conn: sqlite3.Connection, checks: Sequence[Check], now: datetime, settings: MonitorSettings,
                 channels: Sequence[Channel], context: str = "") -> list[AlertAction]:
    """Advance every alert's state by one run and queue its notifications; return what happened.

    `context` (e.g. the run's status line) is appended to every message body.
    """
    alerts = load_alerts(conn)
    checks = list(checks)
    checked = {c.key for c in checks}
    for key, stale in alerts.items():
        if key not in checked and (stale.firing or stale.consecutive_failures):
            checks.append(Check(stale.rule, Severity(stale.severity), False, "no longer checked", stale.subject,
                                suppressible=stale.rule != ALL_DOWN))
    machine = _Machine(conn, now, settings, channels, context)
    actions = [a for c in checks if not c.suppressible for a in machine.step(alerts.get(c.key), c, False)]
    all_down = machine.saved.get(alert_key(ALL_DOWN)) or alerts.get(alert_key(ALL_DOWN))
    suppress = any(c.rule == ALL_DOWN and c.failing for c in checks) or (all_down is not None and all_down.firing)
    actions += [a for c in checks if c.suppressible for a in machine.step(alerts.get(c.key), c, suppress)]
    return actions


class _Machine:
    def __init__(self, conn: sqlite3.Connection, now: datetime, settings: MonitorSettings,
                 channels: Sequence[Channel], context: str) -> None:
        self.conn, self.now, self.settings, self.channels, self.context = conn, now, settings, channels, context
        self.saved: dict[str, AlertState] = {}

    def step(self, alert: AlertState | None, check: Check, suppressed: bool) -> list[AlertAction]:
        now, settings = self.now, self.settings
        if alert is None:
            alert = AlertState(check.key, check.rule, check.severity.value, check.subject, updated_at=now)
        alert.rule, alert.severity, alert.subject, alert.updated_at = (
            check.rule, check.severity.value, check.subject, now)
        actions: list[AlertAction] = []
        if check.failing:
            alert.consecutive_failures += 1
            alert.consecutive_ok = 0
            if alert.first_failed_at is None or (alert.consecutive_failures == 1 and not alert.firing):
                alert.first_failed_at = now
            alert.summary = check.detail
            if not alert.firing:
                if alert.consecutive_failures < settings.fire_after:
                    actions.append(self._action(check, "pending",
                                                f"{alert.consecutive_failures}/{settings.fire_after} failing runs"))
                elif suppressed:
                    actions.append(self._action(check, "suppressed", "all providers are down"))
                else:
                    alert.state, alert.fired_at, alert.resolved_at, alert.last_notified_at = "firing", now, None, now
                    add_alert_event(self.conn, now, alert, "fired", check.detail)
                    self._queue(alert, "trigger", check.detail)
                    actions.append(self._action(check, "fired", check.detail))
            elif (not suppressed and settings.reminder_interval is not None
                  and (alert.last_notified_at is None or now - alert.last_notified_at >= settings.reminder_interval)):
                alert.last_notified_at = now
                self._queue(alert, "reminder", check.detail)
                actions.append(self._action(check, "reminded", check.detail))
        else:
            alert.consecutive_ok += 1
            alert.consecutive_failures = 0
            if alert.firing and alert.consecutive_ok >= settings.resolve_after:
                alert.state, alert.resolved_at, alert.last_notified_at = "ok", now, now
                add_alert_event(self.conn, now, alert, "resolved", check.detail)
                self._queue(alert, "resolve", check.detail)
                actions.append(AlertAction(check.key, Severity.INFO, "resolved", check.detail))
            if not alert.firing:
                alert.first_failed_at = None
        save_alert(self.conn, alert)
        self.saved[alert.key] = alert
        return actions

    @staticmethod
    def _action(check: Check, action: str, detail: str) -> AlertAction:
        return AlertAction(check.key, check.severity, action, detail)

    def _queue(self, alert: AlertState, event: str, detail: str) -> None:
        name = title(alert.rule, alert.subject, recovered=event == "resolve")
        severity = Severity.INFO if event == "resolve" else Severity(alert.severity)
        since = alert.first_failed_at.strftime("%Y-%m-%d %H:%M UTC") if alert.first_failed_at else "?"
        if event == "trigger":
            subject = f"[{severity.value}] agent-factory: {name}"
            lines = [detail, f"Failing since {since} ({alert.consecutive_failures} consecutive checks)."]
        elif event == "reminder":
            subject = f"[{severity.value}] agent-factory: still firing: {name}"
            lines = [detail, f"Failing since {since}."]
        else:
            subject = f"[{severity.value}] agent-factory: {name}"
            lines = [detail, f"Resolved after {alert.consecutive_ok} good checks; failing since {since}."]
        if self.context:
            lines.append(f"Status: {self.context}")
        body = "\n".join(lines)
        for channel in self.channels:
            if event == "reminder" and not channel.sends_reminders:
                continue
            enqueue_delivery(self.conn, self.now, alert_key=alert.key, event=event, severity=severity.value,
                             channel=channel.name, subject=subject, body=body)
