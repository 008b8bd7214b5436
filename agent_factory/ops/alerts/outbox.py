"""Deliver queued notifications; what fails stays queued for the next run.

Deliveries go out oldest first, per channel in order (a PagerDuty resolve never
overtakes its trigger): after a channel's first failure in a run its remaining
notifications wait for the next run, so a dead endpoint costs one timeout per
run, not one per message. Rows are leased while being sent, so two monitor
processes do not send the same message twice. A notification still undelivered
after `delivery_max_age` is marked expired. Nothing here raises for a channel's
failure: it is recorded (scrubbed of the channel's secrets) and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ...errors import AlertError
from ...redact import scrub
from ...state import monitoring
from ...state.store import StateStore
from .base import Channel, Notification, Severity
from .config import MonitorSettings

logger = logging.getLogger(__name__)

_SECRET_FIELDS = ("token", "routing_key", "password")


@dataclass
class DeliveryReport:
    """What one delivery pass did."""

    sent: int = 0
    failed: int = 0
    pending: int = 0  # still queued after this pass (retried next run)
    expired: int = 0
    errors: list[str] = field(default_factory=list)  # "telegram: connection refused"


def channel_secrets(channel: Channel) -> tuple[str, ...]:
    """Return the secret values a channel holds, to scrub them from any text."""
    return tuple(v for v in (getattr(channel, f, None) for f in _SECRET_FIELDS) if isinstance(v, str) and v)


def deliver_pending(store: StateStore, channels: Sequence[Channel], now: datetime,
                    settings: MonitorSettings) -> DeliveryReport:
    """Send every queued notification through its channel and record the outcome; never raises for a channel."""
    report = DeliveryReport(expired=monitoring.expire_deliveries(store, now - settings.delivery_max_age))
    if report.expired:
        logger.warning("dropped %d alert notifications undelivered for more than %s",
                       report.expired, settings.delivery_max_age)
    by_name = {c.name: c for c in channels}
    lease = now + timedelta(seconds=max(300.0, settings.delivery_timeout * 4))
    broken: set[str] = set()
    for row in monitoring.claim_deliveries(store, now, lease):
        channel = by_name.get(row.channel)
        if channel is None or row.channel in broken:
            # Not configured in this process, or already failing this run: keep it for the next run.
            monitoring.mark_failed(store, row.id, now, None, attempted=False)
            report.pending += 1
            continue
        notification = Notification(row.alert_key, row.event, Severity(row.severity), row.subject, row.body)
        try:
            channel.send(notification)
        except AlertError as exc:
            error = scrub(str(exc), *channel_secrets(channel))
        except Exception as exc:  # a channel bug must not stop the monitor (the loop is the boundary)
            error = scrub(f"{type(exc).__name__}: {exc}", *channel_secrets(channel))[:300]
        else:
            monitoring.mark_sent(store, row.id, now)
            report.sent += 1
            logger.info("sent %s of %s through %s", row.event, row.alert_key, row.channel)
            continue
        broken.add(row.channel)
        monitoring.mark_failed(store, row.id, now, error, attempted=True)
        report.failed += 1
        report.pending += 1
        report.errors.append(f"{row.channel}: {error}")
        logger.warning("could not send %s of %s through %s (will retry next run): %s",
                       row.event, row.alert_key, row.channel, error)
    return report
