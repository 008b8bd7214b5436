"""Telegram: the Bot API's `sendMessage`, called directly with the standard library.

Why not apprise: its Telegram plugin has the public API host built in, so a
local capturing server (the tests) or a self-hosted Bot API server cannot be
used, and a resolve-capable PagerDuty call is needed anyway. One POST is all
this channel needs.

The bot token is part of the URL path (`/bot<token>/sendMessage`): the URL is
never logged, never stored and never part of an error; errors are scrubbed of
the token as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ...errors import AlertError
from ...redact import scrub
from .base import Notification, Severity, error_detail, post_json

DEFAULT_API_BASE = "https://api.telegram.org"
_ICON = {Severity.CRITICAL: "\U0001F534", Severity.WARNING: "\U0001F7E0", Severity.INFO: "\U0001F7E2"}
_MAX_TEXT = 4096  # Telegram's limit for one message


@dataclass(frozen=True)
class TelegramChannel:
    """Send alerts to one Telegram chat through a bot."""

    token: str = field(repr=False)
    chat_id: str
    api_base: str = DEFAULT_API_BASE
    timeout: float = 10.0
    name: str = "telegram"
    sends_reminders: bool = True

    def send(self, notification: Notification) -> None:
        """Post the message to the chat; raise `AlertError` (token-free) unless Telegram answers ok."""
        icon = _ICON.get(notification.severity, "")
        text = f"{icon} {notification.subject}\n\n{notification.body}".strip()[:_MAX_TEXT]
        url = f"{self.api_base.rstrip('/')}/bot{self.token}/sendMessage"
        status, body = post_json(url, {"chat_id": self.chat_id, "text": text, "disable_web_page_preview": True},
                                 timeout=self.timeout, secrets=(self.token,))
        ok = False
        try:
            ok = bool(json.loads(body).get("ok"))
        except (ValueError, AttributeError):
            pass
        if status != 200 or not ok:
            detail = scrub(error_detail(body, "description"), self.token)
            raise AlertError(f"telegram answered HTTP {status}: {detail}")
