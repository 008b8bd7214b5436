"""What every alert channel shares: severities, the notification, the channel contract, one HTTP POST."""

from __future__ import annotations

import enum
import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ...errors import AlertError
from ...redact import scrub

KEY_PREFIX = "agent-factory/"


class Severity(enum.StrEnum):
    """How urgent an alert is; PagerDuty's severities in upper case."""

    CRITICAL = "CRITICAL"
    WARNING = "WARNING"
    INFO = "INFO"


@dataclass(frozen=True)
class Notification:
    """One message about one alert, as queued in the outbox (no secrets in it)."""

    key: str  # stable dedup key, e.g. "agent-factory/primary-down/neon"
    event: str  # "trigger", "reminder" or "resolve"
    severity: Severity
    subject: str
    body: str

    @property
    def short_key(self) -> str:
        """The key without the "agent-factory/" prefix, e.g. "primary-down/neon"."""
        return self.key.removeprefix(KEY_PREFIX)


@runtime_checkable
class Channel(Protocol):
    """A way to reach a person. `send` raises `AlertError` with a credential-free reason on failure."""

    @property
    def name(self) -> str:
        """The channel's name in alerts and logs."""
        ...

    @property
    def sends_reminders(self) -> bool:
        """Whether a firing alert is repeated to this channel."""
        ...

    def send(self, notification: Notification) -> None:
        """Deliver one notification, or raise `AlertError`."""
        ...


def post_json(url: str, payload: dict[str, Any], *, timeout: float, secrets: tuple[str, ...] = ()) -> tuple[int, bytes]:
    """POST `payload` as JSON and return (HTTP status, body) for any HTTP answer.

    Raises `AlertError` when no HTTP answer came (refused, timed out, bad URL),
    with `secrets` scrubbed from the reason; the URL itself is never in it.
    """
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "agent-factory-monitor"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # http(s) from config
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, exc.read()
        finally:
            exc.close()
    except urllib.error.URLError as exc:
        raise AlertError(scrub(_reason(exc.reason), *secrets)) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise AlertError(scrub(_reason(exc), *secrets)) from None


def _reason(exc: object) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, (ValueError, http.client.InvalidURL)):
        return "invalid endpoint URL"
    if isinstance(exc, http.client.HTTPException):
        return f"bad HTTP answer ({type(exc).__name__})"
    return str(exc)[:200] or type(exc).__name__


def error_detail(body: bytes, field: str) -> str:
    """Return a short error text from a JSON error body, or its first bytes."""
    try:
        value = json.loads(body).get(field)
    except (ValueError, AttributeError):
        value = None
    text = str(value) if value else body[:200].decode("utf-8", "replace")
    return text.strip()
