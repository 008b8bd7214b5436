"""Alerts: rules and their persisted state machine, an outbox, and the Telegram, e-mail and PagerDuty channels."""

from .base import Channel, Notification, Severity
from .config import MonitorSettings, channels_from_env, settings_from_env
from .email import EmailChannel
from .outbox import DeliveryReport, deliver_pending
from .pagerduty import PagerDutyChannel
from .rules import AlertAction, Check, alert_key, apply_checks
from .telegram import TelegramChannel

__all__ = [
    "AlertAction",
    "Channel",
    "Check",
    "DeliveryReport",
    "EmailChannel",
    "MonitorSettings",
    "Notification",
    "PagerDutyChannel",
    "Severity",
    "TelegramChannel",
    "alert_key",
    "apply_checks",
    "channels_from_env",
    "deliver_pending",
    "settings_from_env",
]
