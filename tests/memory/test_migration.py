"""Migrations over stored data: 0002 on 0001 data keeps every session in order; 0010 keeps every row in place."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from agent_factory.memory import PostgresMemoryStorage
from agent_factory.memory.ids import session_row_id
from agent_factory.schema import apply_schema, load_migrations
from agent_factory.schema.migrations import _CREATE_TRACKING

pytestmark = pytest.mark.real_server


@contextmanager
def scratch_database(local, provider: str = "railway") -> Iterator[str]:
    """Create an empty database as the application role; drop it afterwards."""
    name = f"af_migrate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(local.url(provider), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(local.url(provider), dbname=name)
    finally:
        with psycopg.connect(local.url(provider), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def old_id(kind: str, *parts: str) -> uuid.UUID:
    """The deterministic ids 0001 used (agent_factory/memory/ids.py before 0002)."""
    text = "agent_factory/" + kind + "/" + "/".join(parts)
    return uuid.UUID(bytes=hashlib.sha256(text.encode()).digest()[:16])


def apply_through(conn: psycopg.Connection, version: int) -> None:
    """Apply and record the shipped migrations up to `version`, as `apply_schema` would have then."""
    migrations = [m for m in load_migrations() if m.version <= version]
    assert migrations[-1].version == version
    with conn.transaction():
        conn.execute(_CREATE_TRACKING)
        for migration in migrations:
            conn.execute(migration.sql)  # type: ignore[call-overload]
            conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                         (migration.version, migration.name, migration.checksum))


def write_0001_session(conn: psycopg.Connection, session_id: str, user_id: str, texts: list[str],
                       last_active: datetime, hidden: int = 0) -> None:
    """Write a session as 0001's storage did: a metadata row plus one row per position.

    Rows are inserted in a shuffled order so that physical order proves nothing.
    `hidden` extra live rows past message_count (a reader of 0001 never showed them).
    """
    created = last_active - timedelta(hours=1)
    content = {"last_active": last_active.isoformat(), "message_count": len(texts), "last_append": "abc"}
    conn.execute(
        "INSERT INTO session_memories (id, session_id, user_id, memory_type, content, metadata, created_at) "
        "VALUES (%s, %s, %s, 'session_metadata', %s, %s, %s)",
        (old_id("session", session_id), session_id, user_id, json.dumps(content), json.dumps({"k": session_id}),
         created))
    total = texts + [f"hidden {i}" for i in range(hidden)]
    order = list(range(len(total)))
    order = order[1::2] + order[::2]
    for index in order:
        conn.execute(
            "INSERT INTO session_memories (id, session_id, user_id, memory_type, message_index, content, created_at)"
            " VALUES (%s, %s, %s, 'message_user', %s, %s, %s)",
            (old_id("message", session_id, str(index)), session_id, user_id, index,
             json.dumps({"role": "user", "content": total[index]}), created + timedelta(seconds=index)))


def test_0002_on_0001_data_keeps_every_session_in_order(local):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    sessions = {f"s{n}": [f"s{n} message {i}" for i in range(n * 7 % 23)] for n in range(12)}
    with scratch_database(local) as url, psycopg.connect(url) as conn:
        apply_through(conn, 1)
        with conn.transaction():
            for n, (sid, texts) in enumerate(sessions.items()):
                write_0001_session(conn, sid, "alice" if n % 2 else "bob", texts, now - timedelta(minutes=n),
                                   hidden=2 if n == 3 else 0)
            conn.execute("INSERT INTO session_memories (id, session_id, user_id, memory_type, content) "
                         "VALUES (gen_random_uuid(), 's1', 'alice', 'decision', '{\"x\": 1}')")
            conn.execute("INSERT INTO settings (id, setting_key, setting_value) VALUES (gen_random_uuid(), 'k', 'v')")
            conn.execute("UPDATE session_memories SET id = gen_random_uuid() WHERE session_id = 's2' "
                         "AND memory_type = 'session_metadata'")  # written by another tool
        s2_meta = conn.execute("SELECT id FROM session_memories WHERE session_id = 's2' "
                               "AND memory_type = 'session_metadata'").fetchone()[0]
        before_rows = conn.execute("SELECT count(*) FROM session_memories").fetchone()[0]
        updated_before = conn.execute(
            "SELECT id, updated_at FROM session_memories WHERE message_index IS NULL AND id <> %s ORDER BY id",
            (s2_meta,)).fetchall()

        result = apply_schema(conn, "railway")
        assert result.applied == [f"{m.version:04d}_{m.name}" for m in load_migrations()][1:]  # all after 0001

        assert conn.execute("SELECT count(*) FROM session_memories").fetchone()[0] == before_rows
        assert conn.execute(  # rows other than messages keep their ids and versions
            "SELECT id, updated_at FROM session_memories WHERE message_index IS NULL "
            "AND NOT (session_id = 's2' AND memory_type = 'session_metadata') ORDER BY id"
        ).fetchall() == updated_before
        assert conn.execute("SELECT id FROM session_memories WHERE session_id = 's2' AND memory_type = "
                            "'session_metadata'").fetchone()[0] == session_row_id("s2")
        for sid, texts in sessions.items():
            rows = conn.execute(
                "SELECT content->>'content', id FROM session_memories WHERE session_id = %s "
                "AND message_index IS NOT NULL AND deleted_at IS NULL ORDER BY id", (sid,)).fetchall()
            assert [text for text, _ in rows] == texts
            assert all(row_id.version == 7 for _, row_id in rows)
        count, last_active = conn.execute(
            "SELECT message_count, last_active FROM session_memories "
            "WHERE session_id = 's3' AND memory_type = 'session_metadata'").fetchone()
        assert count == len(sessions["s3"]) and last_active == now - timedelta(minutes=3)
        assert conn.execute("SELECT count(*) FROM session_memories WHERE session_id = 's3' "
                            "AND deleted_at IS NOT NULL").fetchone()[0] == 2  # the hidden rows are tombstones
        assert conn.execute("SELECT setting_value FROM settings WHERE setting_key = 'k'").fetchone()[0] == "v"
        conn.commit()

    with scratch_database(local) as url2, psycopg.connect(url2) as conn:
        # The same 0001 data migrated on another provider gets the same message ids: they merge.
        apply_through(conn, 1)
        with conn.transaction():
            write_0001_session(conn, "s5", "alice", sessions["s5"], now - timedelta(minutes=5))
        apply_schema(conn, "railway")
        ids = [r[0] for r in conn.execute("SELECT id FROM session_memories WHERE session_id = 's5' "
                                          "AND message_index IS NOT NULL ORDER BY id")]
        assert ids == [legacy_id("s5", i) for i in range(len(sessions["s5"]))]
        conn.commit()


def legacy_id(session_id: str, index: int) -> uuid.UUID:
    """What 0002 computes for the message at `index` of a 0001 session."""
    h = hashlib.sha256(f"agent_factory/legacy-message/{session_id}/{index}".encode()).hexdigest()
    variant = "89ab"[int(h[3:5], 16) % 4]
    return uuid.UUID(f"{index:012x}7{h[0:3]}{variant}{h[5:20]}")


def test_migrated_sessions_load_and_append_through_the_api(local, make_db):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with scratch_database(local, "neon") as url:
        with psycopg.connect(url) as conn:
            apply_through(conn, 1)
            with conn.transaction():
                write_0001_session(conn, "old", "alice", ["one", "two", "three"], now)
            apply_schema(conn, "neon")
            conn.commit()
        db = make_db(NEON_DB_URL=url, DATABASE_FAILOVER_ENABLED="false")
        storage = PostgresMemoryStorage(db)
        loaded = storage.load_session("old")
        assert [m.content for m in loaded.messages] == ["one", "two", "three"]
        assert loaded.last_active == now and loaded.metadata == {"k": "old"}
        assert storage.append_messages("old", [{"role": "assistant", "content": "four"}]) == 4
        loaded.messages.append(storage.load_session("old").messages[-1])
        loaded.add_message("user", "five")
        storage.save_session(loaded)
        assert [m.content for m in storage.load_session("old").messages] == ["one", "two", "three", "four", "five"]
        assert [(s.session_id, s.message_count) for s in storage.list_sessions("alice")] == [("old", 5)]
        db.close()


def test_0010_keeps_every_row_and_rewrites_no_table(local):
    """0010 changes four columns to domains: the rows stay as they were and the table's file is the same."""
    assert [(m.version, m.name) for m in load_migrations()][-1] == (10, "domain_checks")
    with scratch_database(local, "neon") as url, psycopg.connect(url) as conn:
        apply_through(conn, 9)
        with conn.transaction():
            conn.execute(
                "INSERT INTO session_memories (id, session_id, user_id, memory_type, message_count, content) "
                "VALUES (%s, 'kept', 'alice', 'session_metadata', 2, '{}')", (session_row_id("kept"),))
            conn.execute(
                "INSERT INTO session_memories (id, session_id, user_id, memory_type, message_index, content) "
                "SELECT gen_random_uuid(), 'kept', 'alice', 'message_user', g, jsonb_build_object('n', g) "
                "FROM generate_series(0, 1) AS g")
        rows = "SELECT * FROM session_memories ORDER BY message_index NULLS FIRST"
        table_file = "SELECT pg_relation_filenode('session_memories')"
        before, file_before = conn.execute(rows).fetchall(), conn.execute(table_file).fetchone()
        apply_schema(conn, "neon")
        conn.commit()
        assert conn.execute(rows).fetchall() == before
        assert conn.execute(table_file).fetchone() == file_before
        types = dict(conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
            "'session_memories'::regclass AND attname IN ('session_id', 'user_id', 'message_index', 'message_count')"))
        assert types == {"session_id": "af_name", "user_id": "af_name", "message_index": "af_count",
                         "message_count": "af_count"}
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE contypid IN ('af_name'::regtype, "
                            "'af_count'::regtype) AND convalidated").fetchone() == (2,)
