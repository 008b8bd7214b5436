"""`PostgresMemoryStorage`: the memory API on `DatabaseManager`, one round trip per call.

Reads run in `db.run_read` and single-statement writes in `db.run_statement`
(autocommit: a single statement is atomic, no BEGIN/COMMIT round trips).
Every write is safe to replay, on the same or another provider: its row ids
and its `WriteStamp` are made once per call, rows are written with
`INSERT ... ON CONFLICT`, and a row is only replaced by a newer version
(last writer wins by (updated_at, write_id); a trigger enforces it too).

Concurrency: `save_session`, `append_messages` and `delete_session` lock the
session's metadata row first, so writers of one session take turns. A save
or delete whose statement snapshot predates a concurrent writer's commit (it
waited for that writer's lock) cannot see the rows that writer added; it
detects this by comparing the metadata row version in its snapshot with the
version it locked, and runs its statement once more with a fresh snapshot:
a second round trip, only in that race.

During a failover, `append_messages` to a session the serving backup has
never seen raises `SessionNotOnProviderError` and writes nothing (the
session was created on the primary after the last sync): appending without
the session's metadata would fork it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ..core.database_manager import DatabaseManager
from ..errors import DatabaseError, SessionNotFoundError, SessionNotOnProviderError
from ._arrays import TextArray, TimestamptzArray, UuidArray
from ._database import LazyDatabase
from ._execute import execute
from .base import (
    DELETED_USER,
    MemoryStorage,
    PageCursor,
    PreparedMessages,
    PreparedSession,
    check_owner,
    session_from_rows,
    summary_from_row,
)
from .ids import WriteStamp, message_id_sql, session_mask, session_row_id
from .session import MemoryAtom, Message, Session, SessionSummary
from .validation import MESSAGE_ROLES

logger = logging.getLogger(__name__)

# session_id and user_id are of domain af_name, message_count of af_count (migration 0010). A parameter in
# the select list of an INSERT ... SELECT takes its column's type, and in a comparison or IN list text:
# where one is used in both, the select list casts it (::text, ::int), else the server refuses the
# statement ("inconsistent types deduced").

# The messages of one call, as rows: columns sent as binary arrays (cheap to adapt),
# metadata as one jsonb array; `ord` counts from 1.
_MESSAGE_ROWS = """ROWS FROM (
        unnest(%(ids)b::uuid[]), unnest(%(types)b::text[]), unnest(%(contents)b::text[]),
        unnest(%(stamps)b::timestamptz[]), jsonb_array_elements(%(metadata)s)
    ) WITH ORDINALITY AS e(id, memory_type, body, stamp, metadata, ord)"""

# This write wins against row `t` (last writer wins, ties broken by write_id).
_NEWER = "(t.updated_at, t.write_id) < (%(updated_at)s::timestamptz, %(write_id)s::uuid)"

# Row `t` is newer than this write (a replay of this write, at the same version, is not).
_NEWER_HERE = "(t.updated_at, t.write_id) > (%(updated_at)s::timestamptz, %(write_id)s::uuid)"

# The metadata row version in this statement's snapshot (`seen`) and the latest
# version, after waiting for its lock (`locked`): they differ when another
# writer committed in between.
_LOCK_SESSION = f"""
    seen AS (
        SELECT xmin::text AS version FROM session_memories WHERE id = %(row_id)s
    ), locked AS (
        SELECT xmin::text AS version, updated_at, write_id, user_id FROM session_memories WHERE id = %(row_id)s
        FOR UPDATE
    ), current AS (
        -- a write older than the session's metadata row is stale as a whole: it changes nothing
        SELECT NOT EXISTS (SELECT FROM locked AS t WHERE {_NEWER_HERE}) AS applies
    )"""

# A session's owner never changes: when the locked metadata row has another user_id (a tombstone
# written where the session never was aside), nothing is written and the owner is returned.
SAVE_SESSION_SQL = f"""
WITH {_LOCK_SESSION}, owned AS (
    SELECT NOT EXISTS (SELECT FROM locked WHERE user_id NOT IN (%(user_id)s, '{DELETED_USER}')) AS ok
), meta AS (
    INSERT INTO session_memories AS t (id, session_id, user_id, memory_type, content, metadata, created_at,
                                       updated_at, write_id, message_count, last_active)
    SELECT %(row_id)s, %(session_id)s::text, %(user_id)s::text, 'session_metadata', %(content)s, %(session_metadata)s,
           %(created_at)s, %(updated_at)s, %(write_id)s, %(count)s::int, %(last_active)s
    FROM (SELECT count(*) FROM locked) AS after_lock
    WHERE (SELECT ok FROM owned)
    ON CONFLICT (id) DO UPDATE
    SET user_id = excluded.user_id, content = excluded.content, metadata = excluded.metadata,
        created_at = excluded.created_at, updated_at = excluded.updated_at, write_id = excluded.write_id,
        deleted_at = NULL, message_count = excluded.message_count, last_active = excluded.last_active
    WHERE {_NEWER}
      AND (t.deleted_at IS NOT NULL
           OR (t.user_id, t.content, t.metadata, t.created_at, t.message_count, t.last_active) IS DISTINCT FROM
              (excluded.user_id, excluded.content, excluded.metadata, excluded.created_at, excluded.message_count,
               excluded.last_active))
    RETURNING xmax::text = '0' AS inserted
), messages AS (
    INSERT INTO session_memories AS t (id, session_id, user_id, memory_type, message_index, content, metadata,
                                       created_at, updated_at, write_id)
    SELECT e.id, %(session_id)s::text, %(user_id)s::text, e.memory_type, (e.ord - 1)::int,
           jsonb_build_object('role', substr(e.memory_type, 9), 'content', e.body), e.metadata, e.stamp,
           %(updated_at)s, %(write_id)s
    FROM {_MESSAGE_ROWS}
    WHERE (SELECT applies FROM current) AND (SELECT ok FROM owned)
    ON CONFLICT (id) DO UPDATE
    SET user_id = excluded.user_id, memory_type = excluded.memory_type, message_index = excluded.message_index,
        content = excluded.content, metadata = excluded.metadata, created_at = excluded.created_at,
        updated_at = excluded.updated_at, write_id = excluded.write_id, deleted_at = NULL
    WHERE {_NEWER} AND t.session_id = excluded.session_id
      AND (t.deleted_at IS NOT NULL
           OR (t.user_id, t.memory_type, t.content, t.metadata, t.created_at) IS DISTINCT FROM
              (excluded.user_id, excluded.memory_type, excluded.content, excluded.metadata, excluded.created_at))
), removed AS (
    UPDATE session_memories AS t
    SET deleted_at = %(updated_at)s, updated_at = %(updated_at)s, write_id = %(write_id)s
    WHERE t.session_id = %(session_id)s AND t.message_index IS NOT NULL AND t.deleted_at IS NULL
      AND t.id <> ALL(%(ids)b::uuid[]) AND {_NEWER} AND (SELECT applies FROM current) AND (SELECT ok FROM owned)
)
SELECT (SELECT version FROM seen), (SELECT version FROM locked), (SELECT inserted FROM meta),
       (SELECT user_id FROM locked)
"""

# The messages, after the `base` messages of the session row `head` (user_id, base), under its user.
_INSERT_AFTER_HEAD = f"""INSERT INTO session_memories AS t (id, session_id, user_id, memory_type, message_index,
                                       content, metadata, created_at, updated_at, write_id)
    SELECT e.id, %(session_id)s::text, head.user_id, e.memory_type, (head.base + e.ord - 1)::int,
           jsonb_build_object('role', substr(e.memory_type, 9), 'content', e.body), e.metadata, e.stamp,
           %(updated_at)s, %(write_id)s
    FROM head CROSS JOIN {_MESSAGE_ROWS}"""
# The same, leaving a message that is stored already (a replay) as it is.
APPEND_AFTER_HEAD = f"""{_INSERT_AFTER_HEAD}
    ON CONFLICT (id) DO NOTHING"""

# Returns the new message count; NULL if the session is deleted here; no row if it was never here.
# A replay inserts nothing (the ids exist) and returns the current count.
APPEND_MESSAGES_SQL = f"""
WITH head AS (
    SELECT user_id, coalesce(message_count, 0) AS base FROM session_memories
    WHERE id = %(row_id)s AND deleted_at IS NULL
    FOR UPDATE
), added AS (
    {APPEND_AFTER_HEAD}
    RETURNING 1
), counted AS (
    UPDATE session_memories AS t
    SET message_count = coalesce(t.message_count, 0) + (SELECT count(*) FROM added),
        last_active = greatest(t.last_active, %(updated_at)s)
    FROM head
    WHERE t.id = %(row_id)s
    RETURNING t.message_count
)
SELECT message_count FROM counted
UNION ALL
SELECT NULL WHERE NOT EXISTS (SELECT FROM head) AND EXISTS (SELECT FROM session_memories WHERE id = %(row_id)s)
"""

# The first try, for messages none of which is stored yet. Without a conflict arbiter the insert is a
# plain one (ON CONFLICT makes each row a speculative insertion: a token lock and one more WAL record),
# so every message is inserted and the count is known before: the counters are updated first, which
# locks the session's row (after a concurrent append commits, the update reads its count), and the
# messages go after the count it had. No row is locked and then updated. A message already stored
# fails the statement with a unique violation, having written nothing (the counters included), and
# APPEND_MESSAGES_SQL runs: a replay costs a second round trip, an append one.
APPEND_NEW_MESSAGES_SQL = f"""
WITH counted AS (
    UPDATE session_memories AS t
    SET message_count = coalesce(t.message_count, 0) + %(count)s::int,
        last_active = greatest(t.last_active, %(updated_at)s)
    WHERE t.id = %(row_id)s AND t.deleted_at IS NULL
    RETURNING t.user_id, t.message_count
), head AS (
    SELECT user_id, message_count - %(count)s::int AS base FROM counted
), added AS (
    {_INSERT_AFTER_HEAD}
)
SELECT message_count FROM counted
UNION ALL
SELECT NULL WHERE NOT EXISTS (SELECT FROM counted) AND EXISTS (SELECT FROM session_memories WHERE id = %(row_id)s)
"""

# A session unknown here gets a tombstone metadata row: a copy merged from elsewhere stays deleted.
DELETE_SESSION_SQL = f"""
WITH {_LOCK_SESSION}, meta AS (
    INSERT INTO session_memories AS t (id, session_id, user_id, memory_type, content, created_at,
                                       updated_at, write_id, deleted_at)
    SELECT %(row_id)s, %(session_id)s::text, '{DELETED_USER}', 'session_metadata', '{{}}', %(updated_at)s,
           %(updated_at)s, %(write_id)s, %(updated_at)s
    FROM (SELECT count(*) FROM locked) AS after_lock
    ON CONFLICT (id) DO UPDATE
    SET deleted_at = excluded.deleted_at, updated_at = excluded.updated_at, write_id = excluded.write_id
    WHERE t.deleted_at IS NULL AND {_NEWER}
    RETURNING xmax::text = '0' AS inserted
), removed AS (
    UPDATE session_memories AS t
    SET deleted_at = %(updated_at)s, updated_at = %(updated_at)s, write_id = %(write_id)s
    WHERE t.session_id = %(session_id)s AND t.id <> %(row_id)s AND t.deleted_at IS NULL AND {_NEWER}
      AND (t.message_index IS NOT NULL OR t.message_index IS NULL)  -- both indexes: see PURGE_SESSION_SQL
      AND (SELECT applies FROM current)
)
SELECT (SELECT version FROM seen), (SELECT version FROM locked), (SELECT inserted FROM meta)
"""

# The metadata row first, then the messages in id order. Messages return their
# text only and no empty metadata, to spare parsing JSON.
LOAD_SESSION_SQL = f"""
SELECT CASE WHEN message_index IS NOT NULL THEN {message_id_sql("id", "%(mask)s::bigint")} END,
       memory_type, content->>'content', nullif(metadata, '{{}}'::jsonb), created_at,
       CASE WHEN message_index IS NULL THEN user_id END, CASE WHEN message_index IS NULL THEN last_active END
FROM session_memories
WHERE session_id = %(session_id)s AND deleted_at IS NULL
  AND (message_index IS NOT NULL OR id = %(row_id)s)  -- session_memories_messages_idx | the metadata row's key
ORDER BY message_index IS NOT NULL, id
"""

# Keyset paging, served backwards by session_memories_recent_idx / _user_recent_idx: newest minute first,
# the sessions of one minute sorted by last_active (an Incremental Sort). The order is last_active's.
LIST_SESSIONS_SQL = """
SELECT session_id, user_id, created_at, last_active, message_count, metadata FROM session_memories
WHERE memory_type = 'session_metadata' AND deleted_at IS NULL{filters}
ORDER BY last_active_minute DESC, last_active DESC, session_id COLLATE "C" DESC
LIMIT %s
"""
# Sessions listed after `before` (last_active, session_id); the index reads the minutes up to its minute
# (the expression of migration 0009's last_active_minute).
LIST_SESSIONS_BEFORE = """
  AND last_active_minute <= date_bin('1 minute', %s::timestamptz, timestamptz '2000-01-01 00:00:00+00')
  AND (last_active, session_id COLLATE "C") < (%s::timestamptz, %s::text COLLATE "C")"""

# How far the last sync from a source into this database reached (agent_factory.replication's watermarks).
SYNCED_THROUGH_SQL = """
SELECT synced_through FROM sync_watermarks
WHERE source = %s AND target = %s AND table_name = 'session_memories' AND synced_through > '-infinity'
"""

# Written only when `user_id` owns the session (or the session is not here); returns the session's owner.
SAVE_MEMORY_ATOM_SQL = f"""
WITH owner AS (
    SELECT user_id FROM session_memories WHERE id = %(session_row)s
), atom AS (
    INSERT INTO session_memories (id, session_id, user_id, memory_type, content, metadata, created_at, updated_at,
                                  write_id)
    SELECT %(id)s, %(session_id)s::text, %(user_id)s::text, %(memory_type)s, %(content)s, %(metadata)s, %(updated_at)s,
           %(updated_at)s, %(write_id)s
    WHERE NOT EXISTS (SELECT FROM owner WHERE user_id NOT IN (%(user_id)s, '{DELETED_USER}'))
    ON CONFLICT (id) DO NOTHING
)
SELECT (SELECT user_id FROM owner)
"""

# Every row of a session, tombstones included, physically removed (verify's scratch session). Since
# migration 0008 two indexes together hold a session's rows: live messages session_memories_messages_idx,
# every other row session_memories_session_idx. A statement over all of a session's rows names each
# index's predicate in an OR (here; `removed` in DELETE_SESSION_SQL, whose live rows need two arms),
# so that the planner reads both (a bitmap OR) instead of the table.
PURGE_SESSION_SQL = """DELETE FROM session_memories WHERE session_id = %s
  AND ((message_index IS NOT NULL AND deleted_at IS NULL) OR message_index IS NULL OR deleted_at IS NOT NULL)"""

MESSAGE_MEMORY_TYPES = frozenset("message_" + role for role in MESSAGE_ROLES)  # the types a message row has

# query_memory_atoms: the rows that are not messages (atoms, metadata rows), and live messages (those
# of a user found through the user's sessions: user_idx holds no message, migration 0008); each part
# newest first. A message's position is derived: how many live messages of its session come before it.
_ATOM_ROWS = """
    (SELECT id::text, session_id, user_id, memory_type, content, metadata, NULL::int AS position,
            created_at, updated_at, id AS row_id, false AS is_message
     FROM session_memories AS t WHERE deleted_at IS NULL AND message_index IS NULL{filters}
     ORDER BY t.created_at DESC, t.id DESC LIMIT %(limit)s)"""
_MESSAGE_ROWS_OF = """
    (SELECT t.id::text, t.session_id, t.user_id, t.memory_type, t.content, t.metadata,
            (SELECT count(*) FROM session_memories AS p
             WHERE p.session_id = t.session_id AND p.message_index IS NOT NULL AND p.deleted_at IS NULL
               AND p.id < t.id)::int,
            t.created_at, t.updated_at, t.id, true
     FROM {source}
     ORDER BY t.created_at DESC, t.id DESC LIMIT %(limit)s)"""
_LIVE_MESSAGES = "session_memories AS t WHERE deleted_at IS NULL AND message_index IS NOT NULL{filters}"
# A user's live messages: for each of the user's sessions (user_idx), its messages (messages_idx). The
# OFFSET 0 keeps that order of the join whatever the planner estimates (the other way reads every message).
_USER_LIVE_MESSAGES = """(SELECT m.session_id FROM session_memories AS m
           WHERE m.user_id = %(user_id)s AND m.message_index IS NULL AND m.memory_type = 'session_metadata') AS s
     CROSS JOIN LATERAL (SELECT * FROM session_memories AS t
           WHERE t.session_id = s.session_id AND deleted_at IS NULL AND message_index IS NOT NULL{filters}
           OFFSET 0) AS t"""
QUERY_MEMORY_ATOMS_SQL = """
SELECT id, session_id, user_id, memory_type, content, metadata, position, created_at, updated_at FROM ({parts}
) AS rows
ORDER BY created_at DESC, is_message DESC, row_id DESC
LIMIT %(limit)s
"""

def message_params(messages: PreparedMessages) -> dict[str, Any]:
    """Return the statement parameters carrying `messages` (their ids were made once, in `prepare_*`)."""
    return {"ids": UuidArray(messages.ids), "types": TextArray(messages.memory_types),
            "contents": TextArray(messages.contents), "stamps": TimestamptzArray(messages.timestamps),
            "metadata": Jsonb(messages.metadata), "count": len(messages)}


def stamp_params(stamp: WriteStamp) -> dict[str, Any]:
    """Return the statement parameters carrying a write's version."""
    return {"updated_at": stamp.updated_at, "write_id": stamp.write_id}


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
        owner = self.db.run_statement(save_session_work(session), idempotent=True)
        check_owner(session.session_id, owner, session.user_id)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("saved session %s (%d messages) on provider %s", session.session_id,
                         len(session.messages), self.db.active_provider)

    def _load_session(self, session_id: str) -> Session | None:
        rows = self.db.run_read(load_session_work(session_id))
        if not rows or rows[0][1] != "session_metadata":
            return None
        _, _, _, metadata, created_at, user_id, last_active = rows[0]
        messages = [Message(memory_type[8:], text or "", meta or {}, stamp, message_id)
                    for message_id, memory_type, text, meta, stamp, _, _ in rows[1:]]
        return session_from_rows(session_id, user_id, created_at, last_active, metadata, messages)

    def _delete_session(self, session_id: str, stamp: WriteStamp) -> bool:
        params = {"session_id": session_id, "row_id": session_row_id(session_id), **stamp_params(stamp)}

        def work(conn: psycopg.Connection) -> bool:
            inserted = _run_locked(conn, DELETE_SESSION_SQL, params, session_id)[2]
            return inserted is False  # an existing live session was tombstoned

        existed = self.db.run_statement(work, idempotent=True)
        logger.debug("deleted session %s (existed: %s) on provider %s", session_id, existed,
                     self.db.active_provider)
        return existed

    def _list_sessions(self, user_id: str | None, limit: int, before: PageCursor | None) -> list[SessionSummary]:
        filters: list[str] = []
        params: list[Any] = []
        if user_id is not None:
            filters.append(" AND user_id = %s")
            params.append(user_id)
        if before is not None:
            filters.append(LIST_SESSIONS_BEFORE)
            params.extend((before.last_active, before.last_active, before.session_id))
        params.append(limit)
        sql = LIST_SESSIONS_SQL.format(filters="".join(filters))

        def work(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
            return execute(conn, sql, params).fetchall()

        return [summary_from_row(*row) for row in self.db.run_read(work)]

    def _append_messages(self, session_id: str, messages: PreparedMessages, stamp: WriteStamp) -> int:
        rows = self.db.run_statement(append_messages_work(session_id, messages, stamp), idempotent=True)
        if rows:
            total = rows[0][0]
            if total is not None:
                return int(total)
            raise SessionNotFoundError(session_id)  # deleted
        serving, primary = self.db.active_provider, self.db.primary_provider
        if serving != primary:
            raise SessionNotOnProviderError(session_id, serving, primary, self._synced_through(primary, serving))
        raise SessionNotFoundError(session_id)

    def _synced_through(self, primary: str, serving: str) -> datetime | None:
        """Return how far the last sync from `primary` into `serving` reached (None if unknown).

        Reads the sync's watermark (kept in the serving database); an error path, so a second round trip.
        """
        def work(conn: psycopg.Connection) -> datetime | None:
            row = conn.execute(SYNCED_THROUGH_SQL, (primary, serving)).fetchone()
            return row[0] if row else None

        try:
            return self.db.run_read(work)
        except DatabaseError as exc:  # no sync has run here (or its table does not exist yet)
            logger.debug("no sync watermark from %s on provider %s: %s", primary, serving, exc)
            return None

    # ---- memory atoms -------------------------------------------------------------------

    def _save_memory_atom(self, row_id: uuid.UUID, session_id: str, user_id: str, memory_type: str,
                          content: dict[str, Any], metadata: dict[str, Any], stamp: WriteStamp) -> None:
        params = {"id": row_id, "session_row": session_row_id(session_id), "session_id": session_id,
                  "user_id": user_id, "memory_type": memory_type, "content": Jsonb(content),
                  "metadata": Jsonb(metadata), **stamp_params(stamp)}

        def work(conn: psycopg.Connection) -> str | None:
            row = execute(conn, SAVE_MEMORY_ATOM_SQL, params).fetchone()
            return row[0] if row else None

        check_owner(session_id, self.db.run_statement(work, idempotent=True), user_id)

    def _query_memory_atoms(self, session_id: str | None, user_id: str | None, memory_type: str | None,
                            limit: int) -> list[MemoryAtom]:
        sql, params = query_memory_atoms_statement(session_id, user_id, memory_type, limit)

        def work(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
            return execute(conn, sql, params).fetchall()

        return list(map(MemoryAtom._make, self.db.run_read(work)))


def _run_locked(conn: psycopg.Connection, sql: str, params: dict[str, Any], session_id: str) -> tuple[Any, ...]:
    """Run a statement that locks the session's metadata row; once more if a writer committed meanwhile.

    Returns the statement's row: (version seen, version locked, whether the
    metadata row was inserted (None: not written), ...), of the last run.
    """
    row: tuple[Any, ...] = execute(conn, sql, params).fetchone()  # type: ignore[assignment]
    seen, locked, inserted = row[:3]
    if (seen != locked) if seen is not None else not inserted:
        # Another writer committed after our snapshot was taken: run again with a fresh
        # snapshot (the same stamp: a replay of this write) so that its rows are covered.
        logger.debug("session %s changed concurrently; writing it again", session_id)
        row = execute(conn, sql, params).fetchone()  # type: ignore[assignment]
    return row


def query_memory_atoms_statement(session_id: str | None, user_id: str | None, memory_type: str | None,
                                 limit: int) -> tuple[str, dict[str, Any]]:
    """Return the statement and parameters of `query_memory_atoms` (the filters given, newest first)."""
    params: dict[str, Any] = {"session_id": session_id, "user_id": user_id, "memory_type": memory_type,
                              "limit": limit}
    filters = "".join(f" AND {column} = %({column})s" for column in ("session_id", "user_id", "memory_type")
                      if params[column] is not None)
    parts = [_ATOM_ROWS.format(filters=filters)]
    if memory_type is None or memory_type in MESSAGE_MEMORY_TYPES:  # else no message can match
        # A user's messages are found through the user's sessions, unless the session is given.
        source = _USER_LIVE_MESSAGES if user_id is not None and session_id is None else _LIVE_MESSAGES
        parts.append(_MESSAGE_ROWS_OF.format(source=source.format(filters=filters)))
    return QUERY_MEMORY_ATOMS_SQL.format(parts="\n    UNION ALL".join(parts)), params


def load_session_work(session_id: str) -> Callable[[psycopg.Connection], list[tuple[Any, ...]]]:
    """Return the statement that reads a session: its metadata row first (none: not here), then its messages."""
    params = {"session_id": session_id, "row_id": session_row_id(session_id), "mask": session_mask(session_id)}

    def work(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
        return execute(conn, LOAD_SESSION_SQL, params).fetchall()

    return work


def append_messages_work(session_id: str, messages: PreparedMessages,
                         stamp: WriteStamp) -> Callable[[psycopg.Connection], list[tuple[Any, ...]]]:
    """Return the statement that appends `messages` to a session (safe to run again: same rows).

    It returns `[(count,)]`, `[(None,)]` if the session is deleted there, `[]` if it never was there.
    """
    params = {"session_id": session_id, "row_id": session_row_id(session_id), **message_params(messages),
              **stamp_params(stamp)}

    def work(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
        if conn.autocommit:  # in a transaction, a failed statement would abort it
            try:
                return execute(conn, APPEND_NEW_MESSAGES_SQL, params).fetchall()
            except psycopg.errors.UniqueViolation:
                logger.debug("appending to session %s again: some of its messages are stored already", session_id)
        return execute(conn, APPEND_MESSAGES_SQL, params).fetchall()

    return work


def save_session_work(session: PreparedSession) -> Callable[[psycopg.Connection], str | None]:
    """Return the statement that saves `session`: safe to run any number of times, anywhere.

    The statement returns the stored session's owner (None: a new session); it
    writes nothing when that is another user (see `check_owner`).
    """
    params = {
        "row_id": session.row_id, "session_id": session.session_id, "user_id": session.user_id,
        "created_at": session.created_at, "content": Jsonb(session.content), "last_active": session.last_active,
        "session_metadata": Jsonb(session.metadata), **message_params(session.messages),
        **stamp_params(session.stamp),
    }

    def work(conn: psycopg.Connection) -> str | None:
        return _run_locked(conn, SAVE_SESSION_SQL, params, session.session_id)[3]  # type: ignore[no-any-return]

    return work
