"""`ConversationLog`: a session's messages as a log that is appended to, read and cleared, one statement each.

The storage behind chat-history adapters (agent_factory.integrations.langchain),
on the same sessions and messages as `PostgresMemoryStorage`:

- `append` creates the session when it is missing here, in the same statement
  that appends. The metadata row it creates is a placeholder, versioned at the
  Unix epoch: any real version of the session (written by `save_session` on
  another provider before a failover, say) wins the merge against it, so
  creating a session on a backup that never saw it overwrites nothing. A
  deleted session is brought back (its old messages stay deleted), as
  `save_session` does.
- `clear` tombstones the session's messages (the session itself, its metadata
  and its memory atoms stay): merged elsewhere, the tombstones win by the usual
  last-writer-wins rule.
- A session belongs to one user: every call names the user, and a session of
  another user raises `InvalidInputError` (nothing written).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ..core.database_manager import DatabaseManager
from ..errors import SessionNotFoundError, SessionOwnerError
from ._database import LazyDatabase
from .base import prepare_messages
from .ids import new_stamp, session_row_id
from .postgres import _LOCK_SESSION, _NEWER, APPEND_AFTER_HEAD, PostgresMemoryStorage, _run_locked, message_params, \
    stamp_params
from .session import Message
from .validation import check_id

logger = logging.getLogger(__name__)

PLACEHOLDER_VERSION = datetime(1970, 1, 1, tzinfo=timezone.utc)  # the version of a session created by `append`

# One statement: create (or bring back) the session, then append after its last message.
# `fresh` counts the messages not written yet: a replay of the same call adds nothing and counts nothing.
# Returns the new message count (NULL: nothing written) and the session's owner as the snapshot had it.
APPEND_SQL = f"""
WITH fresh AS (
    SELECT count(*)::int AS n FROM unnest(%(ids)b::uuid[]) AS i(id)
    WHERE NOT EXISTS (SELECT FROM session_memories AS m WHERE m.id = i.id)
), head AS (
    INSERT INTO session_memories AS t (id, session_id, user_id, memory_type, content, metadata, created_at,
                                       updated_at, write_id, message_count, last_active)
    VALUES (%(row_id)s, %(session_id)s, %(user_id)s, 'session_metadata', %(content)s, '{{}}', %(updated_at)s,
            %(placeholder)s, %(write_id)s, (SELECT n FROM fresh), %(updated_at)s)
    ON CONFLICT (id) DO UPDATE
    SET message_count = CASE WHEN t.deleted_at IS NULL THEN coalesce(t.message_count, 0) ELSE 0 END
                        + (SELECT n FROM fresh),
        last_active = CASE WHEN t.deleted_at IS NULL THEN greatest(t.last_active, excluded.last_active)
                           ELSE excluded.last_active END,
        user_id = excluded.user_id,
        content = CASE WHEN t.deleted_at IS NULL THEN t.content ELSE excluded.content END,
        metadata = CASE WHEN t.deleted_at IS NULL THEN t.metadata ELSE excluded.metadata END,
        created_at = CASE WHEN t.deleted_at IS NULL THEN t.created_at ELSE excluded.created_at END,
        updated_at = CASE WHEN t.deleted_at IS NULL THEN t.updated_at ELSE %(updated_at)s END,
        write_id = CASE WHEN t.deleted_at IS NULL THEN t.write_id ELSE excluded.write_id END,
        deleted_at = NULL
    WHERE CASE WHEN t.deleted_at IS NULL THEN t.user_id = excluded.user_id ELSE {_NEWER} END
    RETURNING t.user_id, t.message_count - (SELECT n FROM fresh) AS base, t.message_count
), added AS (
    {APPEND_AFTER_HEAD}
)
SELECT (SELECT message_count FROM head),
       (SELECT user_id FROM session_memories WHERE id = %(row_id)s AND deleted_at IS NULL)
"""

# Tombstones the session's messages written before it, after locking the session's metadata row
# (the rules of DELETE_SESSION_SQL); the third column says the session is absent or the user's.
CLEAR_SQL = f"""
WITH {_LOCK_SESSION}, owner AS (
    SELECT NOT EXISTS (SELECT FROM session_memories WHERE id = %(row_id)s AND deleted_at IS NULL
                       AND user_id <> %(user_id)s) AS ok
), removed AS (
    UPDATE session_memories AS t
    SET deleted_at = %(updated_at)s, updated_at = %(updated_at)s, write_id = %(write_id)s
    WHERE t.session_id = %(session_id)s AND t.message_index IS NOT NULL AND t.deleted_at IS NULL AND {_NEWER}
      AND (SELECT applies FROM current) AND (SELECT ok FROM owner)
    RETURNING 1
), counted AS (
    UPDATE session_memories AS t
    SET message_count = greatest(coalesce(t.message_count, 0) - (SELECT count(*) FROM removed), 0)::int
    WHERE t.id = %(row_id)s AND EXISTS (SELECT FROM removed)
)
SELECT (SELECT version FROM seen), (SELECT version FROM locked), (SELECT ok FROM owner)
"""


class ConversationLog(LazyDatabase):
    """A session's messages, appended to, read and cleared in one round trip each, on a `DatabaseManager`.

    `db=None` uses the process's default manager. Invalid input raises
    `InvalidInputError` before any SQL runs; database failures raise the manager's errors.
    """

    def __init__(self, db: DatabaseManager | None = None) -> None:
        super().__init__(db)

    def __repr__(self) -> str:
        return f"ConversationLog(db={self._db!r})"

    def append(self, session_id: str, user_id: str, messages: Sequence[Message | dict[str, Any]]) -> int:
        """Append messages to the session (created if missing, brought back if deleted); return its message count.

        Safe to replay (the messages' ids are made once per call). Raises
        `InvalidInputError` for bad messages or a session of another user, and
        `SessionNotFoundError` when a deletion newer than this write (by the writers' clocks) stands.
        """
        session_id, user_id = check_id(session_id, "session_id"), check_id(user_id, "user_id")
        prepared = prepare_messages(session_id, messages, "messages")
        stamp = new_stamp()
        params = {"session_id": session_id, "user_id": user_id, "row_id": session_row_id(session_id),
                  "content": Jsonb({"last_active": stamp.updated_at.isoformat()}),
                  "placeholder": PLACEHOLDER_VERSION, **message_params(prepared), **stamp_params(stamp)}

        def work(conn: psycopg.Connection) -> tuple[Any, ...]:
            return conn.execute(APPEND_SQL, params).fetchone()  # type: ignore[return-value]

        count, owner = self.db.run_statement(work, idempotent=True)
        if count is None:
            if owner is not None and owner != user_id:
                raise SessionOwnerError(f"session {session_id} belongs to another user")
            raise SessionNotFoundError(session_id)
        logger.debug("appended %d messages to session %s on provider %s", len(prepared), session_id,
                     self.db.active_provider)
        return int(count)

    def messages(self, session_id: str, user_id: str) -> list[Message]:
        """Return the session's live messages in order ([] if there is no such session).

        Raises `InvalidInputError` for a session of another user.
        """
        session_id, user_id = check_id(session_id, "session_id"), check_id(user_id, "user_id")
        session = PostgresMemoryStorage(self._db).load_session(session_id)
        if session is None:
            return []
        if session.user_id != user_id:
            raise SessionOwnerError(f"session {session_id} belongs to another user")
        return session.messages

    def clear(self, session_id: str, user_id: str) -> None:
        """Delete the session's messages (tombstones); the session and its memory atoms stay.

        Raises `InvalidInputError` for a session of another user (nothing written).
        """
        session_id, user_id = check_id(session_id, "session_id"), check_id(user_id, "user_id")
        params = {"session_id": session_id, "user_id": user_id, "row_id": session_row_id(session_id),
                  **stamp_params(new_stamp())}

        def work(conn: psycopg.Connection) -> bool | None:
            absent_or_own: bool | None = _run_locked(conn, CLEAR_SQL, params, session_id)[2]
            return absent_or_own

        if self.db.run_statement(work, idempotent=True) is False:
            raise SessionOwnerError(f"session {session_id} belongs to another user")
        logger.debug("cleared the messages of session %s on provider %s", session_id, self.db.active_provider)
