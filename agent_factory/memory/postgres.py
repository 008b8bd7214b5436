"""`PostgresMemoryStorage`: the memory API on `DatabaseManager`, one statement per call.

Every write runs in one `db.run_in_transaction(work, idempotent=True)`: one
transaction, normally one statement, so one round trip besides BEGIN/COMMIT.
Writes are safe to replay after a failover, on the same or another provider:
rows are keyed by deterministic ids (see `ids`) and written with
`INSERT ... ON CONFLICT`, so a replay rewrites the same rows. Every read is
one statement in `db.run_read` (autocommit: no BEGIN/COMMIT round trips).

Concurrency: `save_session`, `append_messages` and `delete_session` first lock
the session's metadata row, so writers of one session take turns.
`append_messages` takes the next positions from the locked row's
`message_count`. A save or delete whose statement snapshot predates a
concurrent writer's commit (it waited for that writer's lock) cannot see the
rows that writer added; it detects this by comparing the metadata row version
in its snapshot with the version it locked, and runs its statement once more,
in the same transaction, with a fresh snapshot. That costs a second round
trip only in that race.

Replays: `save_session`, `delete_session` and the upserts write the same rows
however often they run. `append_messages` tags its batch with a `batch_id`
kept in the metadata row, so running it again right after it committed (a
replay on the same provider) appends nothing and returns the current count.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ..core.database_manager import DatabaseManager
from ..errors import SessionNotFoundError
from ._database import LazyDatabase
from .base import MemoryStorage, PreparedMessages, PreparedSession, session_from_rows, summary_from_row
from .ids import message_row_id_sql
from .session import MemoryAtom, Message, Session, SessionSummary

logger = logging.getLogger(__name__)

# The messages of one call, as rows: columns sent as binary arrays (cheap to adapt),
# metadata as one jsonb array; `ord` counts from 1.
_MESSAGE_ROWS = """ROWS FROM (
        unnest(%(types)b::text[]), unnest(%(contents)b::text[]), unnest(%(stamps)b::timestamptz[]),
        jsonb_array_elements(%(metadata)s)
    ) WITH ORDINALITY AS e(memory_type, body, stamp, metadata, ord)"""

_UPSERT_MESSAGE = """
    ON CONFLICT (session_id, message_index) WHERE message_index IS NOT NULL DO UPDATE
    SET user_id = excluded.user_id, memory_type = excluded.memory_type, content = excluded.content,
        metadata = excluded.metadata, created_at = excluded.created_at, updated_at = now(), deleted_at = NULL
    WHERE t.deleted_at IS NOT NULL
       OR (t.user_id, t.memory_type, t.content, t.metadata, t.created_at) IS DISTINCT FROM
          (excluded.user_id, excluded.memory_type, excluded.content, excluded.metadata, excluded.created_at)"""

# The metadata row version in this statement's snapshot (`seen`) and the latest
# version, after waiting for its lock (`locked`): they differ when another
# writer committed in between.
_LOCK_SESSION = """
    seen AS (
        SELECT xmin::text AS version FROM session_memories
        WHERE session_id = %(session_id)s AND memory_type = 'session_metadata'
    ), locked AS (
        SELECT xmin::text AS version FROM session_memories
        WHERE session_id = %(session_id)s AND memory_type = 'session_metadata'
        FOR UPDATE
    )"""

SAVE_SESSION_SQL = f"""
WITH {_LOCK_SESSION}, meta AS (
    INSERT INTO session_memories AS t (id, session_id, user_id, memory_type, content, metadata, created_at)
    SELECT %(row_id)s, %(session_id)s, %(user_id)s, 'session_metadata', %(content)s, %(session_metadata)s,
           %(created_at)s
    FROM (SELECT count(*) FROM locked) AS after_lock
    ON CONFLICT (session_id) WHERE memory_type = 'session_metadata' DO UPDATE
    SET user_id = excluded.user_id, content = excluded.content, metadata = excluded.metadata,
        created_at = excluded.created_at, updated_at = now(), deleted_at = NULL
    WHERE t.deleted_at IS NOT NULL
       OR (t.user_id, t.content, t.metadata, t.created_at) IS DISTINCT FROM
          (excluded.user_id, excluded.content, excluded.metadata, excluded.created_at)
    RETURNING xmax::text = '0' AS inserted
), messages AS (
    INSERT INTO session_memories AS t
        (id, session_id, user_id, memory_type, message_index, content, metadata, created_at)
    SELECT {message_row_id_sql("%(session_id)s::text", "e.ord - 1")}, %(session_id)s, %(user_id)s,
           e.memory_type, (e.ord - 1)::int,
           jsonb_build_object('role', substr(e.memory_type, 9), 'content', e.body), e.metadata, e.stamp
    FROM {_MESSAGE_ROWS}
    {_UPSERT_MESSAGE}
), removed AS (
    UPDATE session_memories SET deleted_at = now(), updated_at = now()
    WHERE session_id = %(session_id)s AND message_index >= %(count)s AND deleted_at IS NULL
)
SELECT (SELECT version FROM seen), (SELECT version FROM locked), (SELECT inserted FROM meta)
"""

# `batch_id` (one per call, kept in the metadata row as `last_append`) makes a
# replay of the session's latest append, after it committed, a no-op that
# returns the current count (a replay follows its first run at once).
APPEND_MESSAGES_SQL = f"""
WITH head AS (
    UPDATE session_memories AS t
    SET content = t.content || jsonb_build_object(
            'message_count', (t.content->>'message_count')::int + %(count)s::int,
            'last_active', %(now)s::text, 'last_append', %(batch_id)s::text),
        updated_at = now()
    WHERE t.session_id = %(session_id)s AND t.memory_type = 'session_metadata' AND t.deleted_at IS NULL
      AND (t.content->>'last_append') IS DISTINCT FROM %(batch_id)s::text
    RETURNING t.user_id, (t.content->>'message_count')::int - %(count)s::int AS base
), added AS (
    INSERT INTO session_memories AS t
        (id, session_id, user_id, memory_type, message_index, content, metadata, created_at)
    SELECT {message_row_id_sql("%(session_id)s::text", "head.base + e.ord - 1")}, %(session_id)s, head.user_id,
           e.memory_type, (head.base + e.ord - 1)::int,
           jsonb_build_object('role', substr(e.memory_type, 9), 'content', e.body), e.metadata, e.stamp
    FROM head CROSS JOIN {_MESSAGE_ROWS}
    {_UPSERT_MESSAGE}
)
SELECT base + %(count)s::int FROM head
UNION ALL
SELECT (content->>'message_count')::int FROM session_memories
WHERE session_id = %(session_id)s AND memory_type = 'session_metadata' AND deleted_at IS NULL
  AND content->>'last_append' = %(batch_id)s::text
"""

DELETE_SESSION_SQL = f"""
WITH {_LOCK_SESSION}, removed AS (
    UPDATE session_memories SET deleted_at = now(), updated_at = now()
    WHERE session_id = %(session_id)s AND deleted_at IS NULL
    RETURNING memory_type
)
SELECT (SELECT version FROM seen), (SELECT version FROM locked),
       EXISTS (SELECT FROM removed WHERE memory_type = 'session_metadata')
"""

# Rows come back in index order, the metadata row (index NULL) first. Messages
# return their text only and no empty metadata, to spare parsing JSON.
LOAD_SESSION_SQL = """
SELECT message_index, memory_type, content->>'content', nullif(metadata, '{}'::jsonb), created_at,
       CASE WHEN message_index IS NULL THEN content END, CASE WHEN message_index IS NULL THEN user_id END
FROM session_memories
WHERE session_id = %s AND deleted_at IS NULL AND (message_index IS NOT NULL OR memory_type = 'session_metadata')
ORDER BY message_index NULLS FIRST
"""

LIST_SESSIONS_SQL = """
SELECT session_id, user_id, created_at, content, metadata FROM session_memories
WHERE memory_type = 'session_metadata' AND deleted_at IS NULL{user_filter}
ORDER BY (content->>'last_active')::timestamptz DESC, session_id COLLATE "C"
"""

SAVE_MEMORY_ATOM_SQL = """
INSERT INTO session_memories (id, session_id, user_id, memory_type, content, metadata)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO NOTHING
"""

QUERY_MEMORY_ATOMS_SQL = """
SELECT id::text, session_id, user_id, memory_type, content, metadata, message_index, created_at, updated_at
FROM session_memories WHERE deleted_at IS NULL{filters}
ORDER BY created_at DESC, message_index DESC NULLS LAST, id DESC
LIMIT %s
"""


def message_params(messages: PreparedMessages) -> dict[str, Any]:
    """Return the statement parameters carrying `messages`, with a new `batch_id` for `APPEND_MESSAGES_SQL`.

    Build them once per call, outside the transaction body, so that a replay sends the same batch_id.
    """
    return {"types": messages.memory_types, "contents": messages.contents, "stamps": messages.timestamps,
            "metadata": Jsonb(messages.metadata), "count": len(messages), "batch_id": uuid.uuid4().hex}


class PostgresMemoryStorage(LazyDatabase, MemoryStorage):
    """The memory API on PostgreSQL through a `DatabaseManager` (failover included).

    `db=None` creates a `DatabaseManager()` from the configuration on first use
    (never at construction or import) and closes it in `close()`.
    Database failures raise the `DatabaseManager`'s errors (`QueryError`,
    `AllProvidersDownError`, ...); invalid input raises `InvalidInputError` first.
    """

    def __init__(self, db: DatabaseManager | None = None) -> None:
        LazyDatabase.__init__(self, db)

    def __repr__(self) -> str:
        return f"PostgresMemoryStorage(db={self._db!r})"

    # ---- sessions -------------------------------------------------------------------

    def _save_session(self, session: PreparedSession) -> None:
        work = save_session_work(session)
        self.db.run_in_transaction(work, idempotent=True)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("saved session %s (%d messages) on provider %s", session.session_id,
                         len(session.messages), self.db.active_provider)

    def _load_session(self, session_id: str) -> Session | None:
        def work(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(LOAD_SESSION_SQL, (session_id,)).fetchall()

        rows = self.db.run_read(work)
        if not rows or rows[0][0] is not None:
            return None
        _, _, _, metadata, created_at, content, user_id = rows[0]
        count = int(content.get("message_count", len(rows) - 1))
        messages = [Message(memory_type[8:], text or "", meta or {}, stamp)
                    for index, memory_type, text, meta, stamp, _, _ in rows[1:] if index < count]
        return session_from_rows(session_id, user_id, created_at, content, metadata, messages)

    def _delete_session(self, session_id: str) -> bool:
        params = {"session_id": session_id}

        def work(conn: psycopg.Connection) -> bool:
            seen, locked, existed = conn.execute(DELETE_SESSION_SQL, params).fetchone()  # type: ignore[misc]
            if seen != locked:  # a writer committed after our snapshot: delete what it added too
                logger.debug("session %s changed concurrently; deleting again in the same transaction", session_id)
                conn.execute(DELETE_SESSION_SQL, params)
            return bool(existed)

        existed = self.db.run_in_transaction(work, idempotent=True)
        logger.debug("deleted session %s (existed: %s) on provider %s", session_id, existed,
                     self.db.active_provider)
        return existed

    def _list_sessions(self, user_id: str | None) -> list[SessionSummary]:
        sql = LIST_SESSIONS_SQL.format(user_filter="" if user_id is None else " AND user_id = %s")
        params = () if user_id is None else (user_id,)

        def work(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        return [summary_from_row(*row) for row in self.db.run_read(work)]

    def _append_messages(self, session_id: str, messages: PreparedMessages, now: str) -> int:
        total = self.db.run_in_transaction(append_messages_work(session_id, messages, now), idempotent=True)
        if total is None:
            raise SessionNotFoundError(session_id)
        return total

    # ---- memory atoms -------------------------------------------------------------------

    def _save_memory_atom(self, row_id: uuid.UUID, session_id: str, user_id: str, memory_type: str,
                          content: dict[str, Any], metadata: dict[str, Any]) -> None:
        params = (row_id, session_id, user_id, memory_type, Jsonb(content), Jsonb(metadata))

        def work(conn: psycopg.Connection) -> None:
            conn.execute(SAVE_MEMORY_ATOM_SQL, params)

        self.db.run_in_transaction(work, idempotent=True)

    def _query_memory_atoms(self, session_id: str | None, user_id: str | None, memory_type: str | None,
                            limit: int) -> list[MemoryAtom]:
        filters: list[str] = []
        params: list[Any] = []
        for column, value in (("session_id", session_id), ("user_id", user_id), ("memory_type", memory_type)):
            if value is not None:
                filters.append(f" AND {column} = %s")
                params.append(value)
        params.append(limit)
        sql = QUERY_MEMORY_ATOMS_SQL.format(filters="".join(filters))

        def work(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        return list(map(MemoryAtom._make, self.db.run_read(work)))


def append_messages_work(session_id: str, messages: PreparedMessages,
                         now: str) -> Callable[[psycopg.Connection], int | None]:
    """Return the transaction body that appends `messages` to a session.

    The body returns the new message count, or None if the session is absent or
    deleted. Running it again right after it committed appends nothing.
    """
    params = {"session_id": session_id, "now": now, **message_params(messages)}  # one batch_id for every run

    def work(conn: psycopg.Connection) -> int | None:
        row = conn.execute(APPEND_MESSAGES_SQL, params).fetchone()
        return None if row is None else int(row[0])

    return work


def save_session_work(session: PreparedSession) -> Callable[[psycopg.Connection], None]:
    """Return the transaction body that saves `session`: safe to run any number of times, anywhere."""
    params = {
        "row_id": session.row_id, "session_id": session.session_id, "user_id": session.user_id,
        "created_at": session.created_at, "content": Jsonb(session.content),
        "session_metadata": Jsonb(session.metadata), **message_params(session.messages),
    }

    def work(conn: psycopg.Connection) -> None:
        seen, locked, inserted = conn.execute(SAVE_SESSION_SQL, params).fetchone()  # type: ignore[misc]
        if (seen != locked) if seen is not None else not inserted:
            # Another writer committed after our snapshot was taken: run again with a
            # fresh snapshot (we hold the lock now) so its extra messages are removed.
            logger.debug("session %s changed concurrently; saving it again in the same transaction",
                         session.session_id)
            conn.execute(SAVE_SESSION_SQL, params)

    return work
