"""E-mail over SMTP with the standard library (`smtplib`), STARTTLS and login when configured.

STARTTLS is used when SMTP_STARTTLS is true, or by default on port 587; SMTP_SSL
(implicit TLS, port 465) when SMTP_SSL is true. The password is never logged.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from ...errors import AlertError
from ...redact import scrub
from .base import Notification


@dataclass(frozen=True)
class EmailChannel:
    """Send alerts by e-mail through one SMTP server."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    use_ssl: bool = False
    timeout: float = 10.0
    name: str = "email"
    sends_reminders: bool = True

    def message(self, notification: Notification) -> EmailMessage:
        """Return the e-mail for a notification."""
        msg = EmailMessage()
        msg["Subject"] = notification.subject
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain="agent-factory")
        msg["X-Agent-Factory-Alert"] = notification.key
        msg["X-Agent-Factory-Severity"] = notification.severity.value
        msg.set_content(f"{notification.body}\n\nAlert key: {notification.key} ({notification.event})\n")
        return msg

    def send(self, notification: Notification) -> None:
        """Hand the message to the SMTP server; raise `AlertError` (password-free) if it is not accepted."""
        msg = self.message(notification)
        context = ssl.create_default_context()
        try:
            if self.use_ssl:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.starttls and not self.use_ssl:
                    smtp.starttls(context=context)
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError:
            raise AlertError(f"smtp {self.host}:{self.port} rejected the login of {self.user}") from None
        except smtplib.SMTPException as exc:
            raise AlertError(scrub(f"smtp {self.host}:{self.port}: {exc}", self.password or "")[:300]) from None
        except ConnectionRefusedError:
            raise AlertError(f"smtp {self.host}:{self.port}: connection refused") from None
        except TimeoutError:
            raise AlertError(f"smtp {self.host}:{self.port}: timed out") from None
        except OSError as exc:
            raise AlertError(f"smtp {self.host}:{self.port}: {exc.strerror or type(exc).__name__}") from None
