"""Show connection targets without credentials, and take secrets out of free text.

Every place that names a database in a message, log line, repr or file goes
through `describe_url`, which keeps only `host:port/dbname`. `scrub` removes
passwords (and the secret values a caller knows) from text we write;
`scrub_foreign` also removes API tokens and keys from text nobody vetted
(stored errors and summaries the status page shows). These are the only
redaction rules.
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

# API credentials in text whose secrets we do not know: a Telegram bot token in an API URL, and the value after
# token/secret/routing_key/api_key/key/authorization (with or without quotes or "Bearer").
_TOKENS = [
    (re.compile(r"(bot)\d+:[A-Za-z0-9_-]+"), r"\1***"),
    (re.compile(r"((?:token|secret|routing_key|api_key|apikey|key|authorization)[\"']?\s*[=:]\s*[\"']?)"
                r"(?:bearer\s+)?[^\s,;\"'&]+", re.IGNORECASE), r"\1***"),
]


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


def scrub_foreign(text: str) -> str:
    """Remove passwords (as `scrub`) and API tokens, keys and bearer credentials from text of unknown origin."""
    text = scrub(text)
    for pattern, replacement in _TOKENS:
        text = pattern.sub(replacement, text)
    return text
