"""PagerDuty Events API v2: trigger on fire, resolve on recovery, both with the alert's dedup key.

Reminders are not sent: PagerDuty escalates an open incident by itself, and a
repeated trigger with the same dedup key would only add noise to its log.
The routing key travels in the request body and is never logged or stored.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from ...errors import AlertError
from ...redact import scrub
from .base import KEY_PREFIX, Notification, Severity, error_detail, post_json

DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_SEVERITY = {Severity.CRITICAL: "critical", Severity.WARNING: "warning", Severity.INFO: "info"}


@dataclass(frozen=True)
class PagerDutyChannel:
    """Open and close PagerDuty incidents through one routing (integration) key."""

    routing_key: str = field(repr=False)
    events_url: str = DEFAULT_EVENTS_URL
    timeout: float = 10.0
    source: str = field(default_factory=socket.gethostname)
    name: str = "pagerduty"
    sends_reminders: bool = False

    def event(self, notification: Notification) -> dict[str, object]:
        """Return the Events API v2 body for a notification (trigger, or resolve with the same dedup_key)."""
        if notification.event == "resolve":
            return {"routing_key": self.routing_key, "event_action": "resolve", "dedup_key": notification.key}
        component = notification.key.removeprefix(KEY_PREFIX).partition("/")[2] or "agent-factory"
        return {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": notification.key,
            "payload": {
                "summary": notification.subject[:1024],
                "source": self.source,
                "severity": _SEVERITY.get(notification.severity, "warning"),
                "component": component,
                "group": "agent-factory",
                "class": notification.short_key.partition("/")[0],
                "custom_details": {"details": notification.body},
            },
        }

    def send(self, notification: Notification) -> None:
        """Enqueue the event; raise `AlertError` unless PagerDuty accepts it (HTTP 202)."""
        status, body = post_json(self.events_url, self.event(notification), timeout=self.timeout,
                                 secrets=(self.routing_key,))
        if status not in (200, 202):
            detail = scrub(error_detail(body, "message"), self.routing_key)
            raise AlertError(f"pagerduty answered HTTP {status}: {detail}")
