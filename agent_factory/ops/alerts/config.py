"""Alert channels and monitor settings from the environment and `.env` (the environment wins).

A channel is configured when its required variables are set, and skipped
otherwise; a channel set up halfway raises `ConfigError` naming what is missing.

- telegram: TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID; optional TELEGRAM_API_BASE.
- email: SMTP_HOST, ALERT_EMAIL_FROM, ALERT_EMAIL_TO (comma-separated); optional
  SMTP_PORT (25), SMTP_USER, SMTP_PASSWORD, SMTP_STARTTLS (default on for 587),
  SMTP_SSL (default on for 465).
- pagerduty: PAGERDUTY_ROUTING_KEY; optional PAGERDUTY_EVENTS_URL.

Monitor settings: ALERT_FIRE_AFTER (2 failing runs), ALERT_RESOLVE_AFTER (2 good
runs), ALERT_REMINDER_MINUTES (60; 0 = no reminders), ALERT_DELIVERY_TIMEOUT (10 s),
ALERT_DELIVERY_MAX_AGE_HOURS (24: undelivered notifications older than this are
dropped), MONITOR_BACKUP_MAX_AGE_HOURS (24; 0 turns the backup rule off),
MONITOR_RETENTION_DAYS (30), MONITOR_SYNC_BACKUPS (true: each run merges each
backup into the primary, then syncs the primary into each backup), SYNC_MAX_LAG_MINUTES (10: WARNING when a
backup is further behind the primary; 0 turns the lag rule off), STREAM_LAG_ALERT_SECONDS (30, positive,
as `load_config` reads it: the same WARNING for a backup kept warm by a stream,
when the stream is stopped or further behind).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ...config import env_bool, env_float, env_int, read_env
from ...errors import ConfigError
from .base import Channel
from .email import EmailChannel
from .pagerduty import DEFAULT_EVENTS_URL, PagerDutyChannel
from .telegram import DEFAULT_API_BASE, TelegramChannel


@dataclass(frozen=True)
class MonitorSettings:
    """How the monitor decides and delivers; defaults follow the runbook (cron every 5 minutes)."""

    fire_after: int = 2
    resolve_after: int = 2
    reminder_interval: timedelta | None = timedelta(hours=1)
    delivery_timeout: float = 10.0
    delivery_max_age: timedelta = timedelta(hours=24)
    backup_max_age: timedelta | None = timedelta(hours=24)
    retention: timedelta = timedelta(days=30)
    sync_backups: bool = True
    sync_max_lag: timedelta | None = timedelta(minutes=10)
    stream_max_lag: timedelta | None = timedelta(seconds=30)


def env_values(env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> dict[str, str]:
    """Return `env` (default `os.environ`) layered over `env_file` (see `read_env`), stripped, blanks dropped."""
    values = read_env(env, env_file)
    return {k: v.strip() for k, v in values.items() if v is not None and v.strip() != ""}


def settings_from_env(env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> MonitorSettings:
    """Return the monitor settings; raises `ConfigError` naming a malformed variable."""
    values = env_values(env, env_file)
    reminder = env_float(values, "ALERT_REMINDER_MINUTES", 60, minimum=0, unit="minutes")
    backup_age = env_float(values, "MONITOR_BACKUP_MAX_AGE_HOURS", 24, minimum=0, unit="hours")
    max_lag = env_float(values, "SYNC_MAX_LAG_MINUTES", 10, minimum=0, unit="minutes")
    stream_lag = env_float(values, "STREAM_LAG_ALERT_SECONDS", 30)
    return MonitorSettings(
        fire_after=env_int(values, "ALERT_FIRE_AFTER", 2, minimum=1),
        resolve_after=env_int(values, "ALERT_RESOLVE_AFTER", 2, minimum=1),
        reminder_interval=timedelta(minutes=reminder) if reminder > 0 else None,
        delivery_timeout=env_float(values, "ALERT_DELIVERY_TIMEOUT", 10, minimum=0.1),
        delivery_max_age=timedelta(hours=env_float(values, "ALERT_DELIVERY_MAX_AGE_HOURS", 24, minimum=0.01,
                                                   unit="hours")),
        backup_max_age=timedelta(hours=backup_age) if backup_age > 0 else None,
        retention=timedelta(days=env_float(values, "MONITOR_RETENTION_DAYS", 30, minimum=0.01, unit="days")),
        sync_backups=env_bool(values, "MONITOR_SYNC_BACKUPS", True),
        sync_max_lag=timedelta(minutes=max_lag) if max_lag > 0 else None,
        stream_max_lag=timedelta(seconds=stream_lag),
    )


def channels_from_env(env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env",
                      timeout: float | None = None) -> list[Channel]:
    """Return every configured channel (telegram, email, pagerduty), skipping unconfigured ones.

    Raises `ConfigError` for a channel configured halfway or with a malformed value.
    """
    values = env_values(env, env_file)
    if timeout is None:
        timeout = env_float(values, "ALERT_DELIVERY_TIMEOUT", 10, minimum=0.1)
    channels: list[Channel] = []
    if _wanted(values, "telegram", ["TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID"], ["TELEGRAM_API_BASE"]):
        channels.append(TelegramChannel(
            token=values["TELEGRAM_BOT_TOKEN"], chat_id=values["TELEGRAM_CHAT_ID"],
            api_base=_http_url(values, "TELEGRAM_API_BASE", DEFAULT_API_BASE), timeout=timeout))
    if _wanted(values, "email", ["SMTP_HOST", "ALERT_EMAIL_FROM", "ALERT_EMAIL_TO"],
               ["SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD"]):
        port = env_int(values, "SMTP_PORT", 25, minimum=1)
        recipients = tuple(a.strip() for a in values["ALERT_EMAIL_TO"].split(",") if a.strip())
        if values.get("SMTP_PASSWORD") and not values.get("SMTP_USER"):
            raise ConfigError("SMTP_PASSWORD is set but SMTP_USER is empty; set both, or neither")
        channels.append(EmailChannel(
            host=values["SMTP_HOST"], port=port, sender=values["ALERT_EMAIL_FROM"], recipients=recipients,
            user=values.get("SMTP_USER"), password=values.get("SMTP_PASSWORD"),
            starttls=env_bool(values, "SMTP_STARTTLS", port == 587),
            use_ssl=env_bool(values, "SMTP_SSL", port == 465),
            timeout=timeout))
    if _wanted(values, "pagerduty", ["PAGERDUTY_ROUTING_KEY"], ["PAGERDUTY_EVENTS_URL"]):
        channels.append(PagerDutyChannel(
            routing_key=values["PAGERDUTY_ROUTING_KEY"],
            events_url=_http_url(values, "PAGERDUTY_EVENTS_URL", DEFAULT_EVENTS_URL), timeout=timeout))
    return channels


def _wanted(values: Mapping[str, str], channel: str, required: list[str], optional: list[str]) -> bool:
    present = [name for name in required if name in values]
    if len(present) == len(required):
        return True
    if present or any(name in values for name in optional if not name.endswith(("_API_BASE", "_EVENTS_URL"))):
        missing = ", ".join(name for name in required if name not in values)
        raise ConfigError(f"the {channel} alert channel is configured halfway: set {missing} (or unset the others)")
    return False


def _http_url(values: Mapping[str, str], name: str, default: str) -> str:
    url = values.get(name, default)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must start with https:// (or http:// for a local server)")
    return url
