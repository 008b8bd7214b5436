"""Real servers on 127.0.0.1 that capture what the alert channels send.

`CaptureHTTPServer` answers the Telegram Bot API (`/bot<token>/sendMessage`)
and the PagerDuty Events API (`/v2/enqueue`); `CaptureSMTPServer` speaks enough
SMTP (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) for `smtplib`. Both can be
stopped and started again on the same port to play an endpoint that is down.
Neither writes request lines to stderr (they hold the bot token).
"""

from __future__ import annotations

import email
import email.policy
import json
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Request:
    """One captured HTTP request."""

    method: str
    path: str
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Server:
    """Start/stop a socketserver in a thread, keeping its port across restarts."""

    port = 0

    def _make(self) -> socketserver.BaseServer:
        raise NotImplementedError

    def start(self) -> None:
        self._server = self._make()
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Shut down and close the socket: connections are refused until `start`."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class CaptureHTTPServer(_Server):
    """Capture POSTs; answer like Telegram or PagerDuty, or with `fail_status` when set."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.fail_status: int | None = None
        self.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def telegram(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/sendMessage")]

    def pagerduty(self) -> list[Request]:
        return [r for r in self.requests if r.path == "/v2/enqueue"]

    def _make(self) -> socketserver.BaseServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append(Request("POST", self.path, body))
                if owner.fail_status is not None:
                    self._answer(owner.fail_status, {"ok": False, "description": "Unauthorized",
                                                     "message": "Invalid routing key"})
                elif self.path.endswith("/sendMessage"):
                    self._answer(200, {"ok": True, "result": {"message_id": len(owner.requests)}})
                elif self.path == "/v2/enqueue":
                    self._answer(202, {"status": "success", "dedup_key": json.loads(body).get("dedup_key")})
                else:
                    self._answer(404, {"ok": False, "description": "Not Found"})

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request line holds the bot token

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        return server


@dataclass
class Mail:
    """One captured e-mail."""

    sender: str
    recipients: list[str]
    data: bytes
    message: EmailMessage = field(init=False)

    def __post_init__(self) -> None:
        self.message = email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[assignment]


class CaptureSMTPServer(_Server):
    """A small SMTP server keeping every accepted message in `messages`."""

    def __init__(self) -> None:
        self.messages: list[Mail] = []
        self.start()

    def _make(self) -> socketserver.BaseServer:
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self) -> None:
                sender, recipients = "", []
                self.reply("220 capture ESMTP ready")
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    verb = line[:4].decode("ascii", "replace").upper()
                    arg = line[4:].decode("utf-8", "replace").strip()
                    if verb == "EHLO":
                        self.wfile.write(b"250-capture\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n")
                        self.wfile.flush()
                    elif verb == "HELO":
                        self.reply("250 capture")
                    elif verb == "MAIL":
                        sender, recipients = arg.partition(":")[2].split()[0].strip("<>"), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(arg.partition(":")[2].strip().strip("<>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        lines = []
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                            lines.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                        owner.messages.append(Mail(sender, recipients, b"".join(lines)))
                        self.reply("250 OK queued")
                    elif verb in ("RSET", "NOOP"):
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 command not implemented")

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        return Server(("127.0.0.1", self.port), Handler)


@pytest.fixture
def http_capture() -> Iterator[CaptureHTTPServer]:
    """A capturing Telegram + PagerDuty endpoint on 127.0.0.1."""
    server = CaptureHTTPServer()
    yield server
    try:
        server.stop()
    except OSError:
        pass


@pytest.fixture
def smtp_capture() -> Iterator[CaptureSMTPServer]:
    """A capturing SMTP server on 127.0.0.1."""
    server = CaptureSMTPServer()
    yield server
    try:
        server.stop()
    except OSError:
        pass


BOT_TOKEN = "123456:AAH-test-bot-token-never-shown"
ROUTING_KEY = "R0UTINGKEY0000000000000000000000"


def alert_env(http: CaptureHTTPServer, smtp: CaptureSMTPServer) -> dict[str, str]:
    """The alert channel variables pointing at the capture servers."""
    return {
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_CHAT_ID": "-1001234",
        "TELEGRAM_API_BASE": http.base,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "ALERT_EMAIL_FROM": "monitor@example.test",
        "ALERT_EMAIL_TO": "oncall@example.test, sre@example.test",
        "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "PAGERDUTY_EVENTS_URL": f"{http.base}/v2/enqueue",
        "ALERT_DELIVERY_TIMEOUT": "3",
    }
