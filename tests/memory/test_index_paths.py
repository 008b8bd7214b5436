"""Migration 0008: a message enters three indexes, and every session-keyed statement still reads by index.

Each statement is the one the library sends (recorded from its own work
functions), planned on the real server with sequential scans priced out: a
statement with no index path left still plans a `Seq Scan`, which fails here.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from agent_factory.memory import Message, PostgresMemoryStorage, Session
from agent_factory.memory import postgres as pg
from agent_factory.memory.base import prepare_messages, prepare_session
from agent_factory.memory.ids import new_stamp, session_row_id


class _Recorder:
    """A stand-in connection that records what a library work function sends."""

    prepare_threshold = None  # `_execute.execute` then calls `execute` plainly
    autocommit = True  # as `run_statement` and `run_read` run the work

    def __init__(self, answer: list[tuple[Any, ...]]) -> None:
        self.sent: list[tuple[str, Any]] = []
        self._answer = answer

    def execute(self, sql: str, params: Any = None) -> _Recorder:
        self.sent.append((sql, params))
        return self

    def fetchone(self) -> tuple[Any, ...]:
        return self._answer[0]

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._answer


def _sent(work: Any, answer: list[tuple[Any, ...]]) -> tuple[str, Any]:
    recorder = _Recorder(answer)
    work(recorder)
    return recorder.sent[0]


def _full_scans(conn: psycopg.Connection, sql: str, params: Any) -> list[str]:
    """Return the scans of session_memories in the statement's plan that read the whole table or a whole index.

    Sequential scans are priced out first, so a statement left with no index path
    shows one anyway; an index scan without an index condition reads the whole index.
    The table holds other users' sessions too (`FILLER`), analyzed, so that the
    planner chooses as it would on a real table, not as on a handful of rows.
    """
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()[0][0]["Plan"]
    full: list[str] = []
    nodes = [plan]
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", []))
        kind, index = node["Node Type"], node.get("Index Name", "")
        if kind == "Seq Scan" and node.get("Relation Name") == "session_memories":
            full.append(kind)
        elif index.startswith("session_memories") and "Index Cond" not in node:
            full.append(f"{kind} on {index} without a condition")
    return full


# 2,000 sessions of 10 messages of 20 other users, as raw rows (the library would take minutes).
FILLER = """
INSERT INTO session_memories (id, session_id, user_id, memory_type, message_index, content, created_at, updated_at)
SELECT substr(encode(sha256(convert_to('agent_factory/session/filler-' || s, 'UTF8')), 'hex'), 1, 32)::uuid,
       'filler-' || s, 'filler-user-' || s % 20, 'session_metadata', NULL, '{}'::jsonb, now(), now()
FROM generate_series(1, 2000) AS s
UNION ALL
SELECT gen_random_uuid(), 'filler-' || g / 10 + 1, 'filler-user-' || (g / 10 + 1) % 20, 'message_user', g % 10,
       '{"role": "user", "content": "x"}'::jsonb, now(), now()
FROM generate_series(0, 19999) AS g;
ANALYZE session_memories"""


@pytest.fixture
def stored(db, local):
    """A session of three messages and one atom, as the library stores them, among 22,000 other rows."""
    with psycopg.connect(local.url("neon"), autocommit=True) as conn:
        for statement in FILLER.split(";"):
            conn.execute(statement)
    storage = PostgresMemoryStorage(db)
    session = Session("index-user", messages=[Message("user", "hi"), Message("assistant", "hello")])
    storage.save_session(session)
    storage.append_messages(session.session_id, [Message("user", "more")])
    storage.save_memory_atom(session.session_id, "index-user", "decision", {"chosen": "b"})
    return session


def _statements(session: Session) -> dict[str, tuple[str, Any]]:
    sid = session.session_id
    stamp = new_stamp()
    delete_params = {"session_id": sid, "row_id": session_row_id(sid), **pg.stamp_params(stamp)}
    append = _sent(pg.append_messages_work(sid, prepare_messages(sid, [Message("user", "x")], "m"), stamp), [(1,)])
    statements = {
        "load_session": _sent(pg.load_session_work(sid), []),
        "append_messages": append,
        "append_messages, a replay": (pg.APPEND_MESSAGES_SQL, append[1]),
        "save_session": _sent(pg.save_session_work(prepare_session(session)), [("1", "1", False, None)]),
        "delete_session": (pg.DELETE_SESSION_SQL, delete_params),
        "verify purge": (pg.PURGE_SESSION_SQL, (sid,)),
    }
    for name, filters in {"atoms of a session": (sid, None, None), "atoms of a user": (None, "index-user", None),
                          "atoms of a user and type": (None, "index-user", "decision"),
                          "messages of a user and type": (None, "index-user", "message_user")}.items():
        statements[name] = pg.query_memory_atoms_statement(*filters, 100)
    return statements


def test_every_session_keyed_statement_reads_session_memories_by_index(local, stored):
    with psycopg.connect(local.url("neon"), autocommit=True) as conn:
        scans = {name: full for name, (sql, params) in _statements(stored).items()
                 if (full := _full_scans(conn, sql, params))}
    assert scans == {}


def test_recompute_session_reaches_a_deleted_sessions_rows_by_index(local, stored):
    with psycopg.connect(local.url("neon"), autocommit=True) as conn:
        body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'recompute_session'").fetchone()[0]
        statements = [part.replace("session_ids", "%(ids)s::text[]") for part in body.split(";") if part.strip()]
        full = [_full_scans(conn, sql, {"ids": [stored.session_id]}) for sql in statements]
    assert full == [[], [], []]


def test_a_live_message_enters_three_indexes_and_a_tombstone_is_reachable_by_session(local, db, stored):
    with psycopg.connect(local.url("neon"), autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT c.relname, coalesce(pg_get_expr(i.indpred, i.indrelid), 'true') FROM pg_index AS i "
            "JOIN pg_class AS c ON c.oid = i.indexrelid WHERE i.indrelid = 'session_memories'::regclass").fetchall()

        def holding(kind: str) -> set[str]:
            return {name for name, predicate in indexes if conn.execute(
                f"SELECT EXISTS (SELECT FROM session_memories WHERE session_id = %s AND {kind} AND ({predicate}))",
                (stored.session_id,)).fetchone()[0]}

        live = "message_index IS NOT NULL AND deleted_at IS NULL"
        assert holding(live) == {"session_memories_pkey", "session_memories_messages_idx",
                                 "session_memories_changed_idx"}
        PostgresMemoryStorage(db).delete_session(stored.session_id)  # the messages become tombstones
        assert "session_memories_session_idx" in holding("message_index IS NOT NULL AND deleted_at IS NOT NULL")
        conn.execute(pg.PURGE_SESSION_SQL, (stored.session_id,))
        left = conn.execute("SELECT count(*) FROM session_memories WHERE session_id = %s",
                            (stored.session_id,)).fetchone()
    assert left == (0,)


@pytest.mark.parametrize("session_id", ["s", "a session ✓ 日本語", "x" * 255])
def test_the_servers_session_row_id_is_the_librarys(local, session_id):
    with psycopg.connect(local.url("neon")) as conn:
        assert conn.execute("SELECT af_session_row_id(%s)", (session_id,)).fetchone()[0] == session_row_id(session_id)
