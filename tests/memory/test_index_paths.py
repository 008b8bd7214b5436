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
from agent_factory.ops.verify import PURGE_SESSION_SQL


class _Recorder:
    """A stand-in connection that records what a library work function sends."""

    prepare_threshold = None  # `_execute.execute` then calls `execute` plainly

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


def _plan(conn: psycopg.Connection, sql: str, params: Any) -> str:
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL enable_seqscan = off")
        return "\n".join(row[0] for row in conn.execute("EXPLAIN " + sql, params).fetchall())


@pytest.fixture
def stored(db):
    """A session of three messages and one atom, as the library stores them."""
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
    statements = {
        "load_session": _sent(pg.load_session_work(sid), []),
        "append_messages": _sent(pg.append_messages_work(sid, prepare_messages(sid, [Message("user", "x")], "m"),
                                                         stamp), [(1,)]),
        "save_session": _sent(pg.save_session_work(prepare_session(session)), [("1", "1", False, None)]),
        "delete_session": (pg.DELETE_SESSION_SQL, delete_params),
        "verify purge": (PURGE_SESSION_SQL, (sid,)),
    }
    for name, filters in {"atoms of a session": (sid, None, None), "atoms of a user": (None, "index-user", None),
                          "atoms of a user and type": (None, "index-user", "decision"),
                          "messages of a user and type": (None, "index-user", "message_user")}.items():
        statements[name] = pg.query_memory_atoms_statement(*filters, 100)
    return statements


def test_every_session_keyed_statement_reads_session_memories_by_index(local, stored):
    with psycopg.connect(local.url("neon"), autocommit=True) as conn:
        scans = {name: plan for name, (sql, params) in _statements(stored).items()
                 if "Seq Scan on session_memories" in (plan := _plan(conn, sql, params))}
    assert scans == {}


def test_recompute_session_reaches_a_deleted_sessions_rows_by_index(local, stored):
    with psycopg.connect(local.url("neon"), autocommit=True) as conn:
        body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'recompute_session'").fetchone()[0]
        statements = [part.replace("session_ids", "%(ids)s::text[]") for part in body.split(";") if part.strip()]
        plans = [_plan(conn, sql, {"ids": [stored.session_id]}) for sql in statements]
    assert len(plans) == 2 and not [plan for plan in plans if "Seq Scan on session_memories" in plan]


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
        conn.execute(PURGE_SESSION_SQL, (stored.session_id,))
        left = conn.execute("SELECT count(*) FROM session_memories WHERE session_id = %s",
                            (stored.session_id,)).fetchone()
    assert left == (0,)
