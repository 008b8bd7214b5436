"""Show connection targets without credentials.

Every place that names a database in a message, log line, repr or file goes
through `describe_url`, which keeps only `host:port/dbname`.
"""

from __future__ import annotations

import re

from psycopg.conninfo import conninfo_to_dict

_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


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


def scrub(text: str, *secrets: str) -> str:
    """Remove passwords from free text: URL and key=value forms, plus any known secret values."""
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _KV_PASSWORD.sub(r"\1***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
