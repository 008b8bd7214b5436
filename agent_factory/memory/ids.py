"""Deterministic row ids: the same logical row gets the same UUID on every provider.

A session's metadata row, the row at each message position, a knowledge atom
and a setting are keyed by a UUID derived from their natural key (the first 16
bytes of a SHA-256), so a write replayed after failover, on the same or another
provider, lands on the same row, and rows can be merged between providers
without duplicates. Message row ids are also computed inside SQL statements
(`message_row_id_sql`) when the position is only known to the server
(`append_messages`); both forms give the same UUID.
"""

from __future__ import annotations

import hashlib
import uuid

_PREFIX = "agent_factory/"


def stable_uuid(kind: str, *parts: str) -> uuid.UUID:
    """Return the UUID of the row of `kind` with natural key `parts`."""
    text = _PREFIX + kind + "/" + "/".join(parts)
    return uuid.UUID(bytes=hashlib.sha256(text.encode("utf-8")).digest()[:16])


def session_row_id(session_id: str) -> uuid.UUID:
    """Return the id of a session's `session_metadata` row."""
    return stable_uuid("session", session_id)


def message_row_id(session_id: str, index: int) -> uuid.UUID:
    """Return the id of the row holding message number `index` (from 0) of a session."""
    return stable_uuid("message", session_id, str(index))


def atom_row_id(atom_id: str) -> uuid.UUID:
    """Return the id of a knowledge atom's row."""
    return stable_uuid("atom", atom_id)


def setting_row_id(key: str) -> uuid.UUID:
    """Return the id of a setting's row."""
    return stable_uuid("setting", key)


def message_row_id_sql(session_id: str, index: str) -> str:
    """Return an SQL expression equal to `message_row_id(session_id, index)` for SQL operands."""
    return (
        f"substr(encode(sha256(convert_to('{_PREFIX}message/' || {session_id} || '/' || ({index})::text, "
        f"'UTF8')), 'hex'), 1, 32)::uuid"
    )
