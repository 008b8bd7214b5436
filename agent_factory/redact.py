"""Show connection targets without credentials.

Every place that names a database in a message, log line, repr or file goes
through `describe_url`, which keeps only `host:port/dbname`.
"""

from __future__ import annotations

import re

from psycopg.conninfo import conninfo_to_dict

# postgres://, postgresql:// and SQLAlchemy's postgresql+psycopg:// (any +driver). The password runs to the
# last "@" before the host: an unencoded "@" inside it stays hidden too (it cannot hold an unencoded "/").
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?(?:\+\w+)?://[^:/@\s]*:)([^\s/]*)@", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# JSON (and Python repr) fields whose key mentions a password: "password": "...", 'db_password': 42.
_JSON_PASSWORD = re.compile(
    r"""((["'])[^"'\s]*password[^"'\s]*\2\s*:\s*)("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,}\]]+)""",
    re.IGNORECASE,
)


def describe_url(url: str) -> str:
    """Return `host:port/dbname` for a PostgreSQL URL or conninfo string, never its password."""
    try:
        params = conninfo_to_dict(url)
    except Exception:
        return "<unparseable database URL>"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or "postgres"
    return f"{host}:{port}/{dbname}"


def url_password(url: str) -> str | None:
    """Return the password of a PostgreSQL URL or conninfo string, or None; raise `psycopg.ProgrammingError`."""
    password = conninfo_to_dict(url).get("password")
    return None if password is None else str(password)


def scrub(text: str, *secrets: str) -> str:
    """Remove passwords from free text: URL, key=value and JSON forms, plus any known secret values."""
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _JSON_PASSWORD.sub(lambda m: m.group(1) + ('"***"' if m.group(3)[0] in "\"'" else "***"), text)
    text = _KV_PASSWORD.sub(r"\1***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
