"""Fixtures and helpers of the sync tests: the local providers emptied (watermarks too) and a raw writer.

`write` plays a client of migration 0002: each call is one write with its own
`write_id` and the client's clock as `updated_at`, sent to one named provider.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from agent_factory.core import DatabaseManager
from agent_factory.replication import TABLES
from agent_factory.vector import OPTIONAL_COLUMNS

# Columns that differ between providers by design: changed_at is local to each database.
LOCAL_COLUMNS = {"changed_at"}


@pytest.fixture
def sdb(db: DatabaseManager) -> DatabaseManager:
    """The `db` fixture (every table empty on every provider) with the sync watermarks emptied too."""
    empty(db)
    return db


@pytest.fixture(params=["sync", "streams"])
def streaming(request: pytest.FixtureRequest, sdb: DatabaseManager) -> Iterator[str]:
    """Run a test twice: with the sync engine alone, then with the primary also streaming into each backup."""
    from agent_factory.ops.stream import drop_streams, setup_streams

    if request.param == "streams":
        setup_streams(sdb)
    yield request.param
    if request.param == "streams":
        drop_streams(sdb)


def empty(db: DatabaseManager) -> None:
    """Empty every table and the sync watermarks on every provider (the primary first: see `empty_tables`)."""
    from tests.conftest import empty_tables

    empty_tables(db, ("sync_watermarks", *TABLES))


def snapshot(db: DatabaseManager, provider: str, tables: tuple[str, ...] = TABLES) -> dict[str, list[tuple]]:
    """Return every row of every table on one provider, ordered by id.

    All columns but changed_at and the pgvector columns, which only some providers have
    (tests/memory/test_knowledge_semantic.py checks how the sync carries those).
    """
    out: dict[str, list[tuple]] = {}
    with db.provider_connection(provider) as conn:
        for table in tables:
            cols = [r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum", (table,))]
            skip = {*LOCAL_COLUMNS, *OPTIONAL_COLUMNS.get(table, ())}
            keep = sql.SQL(", ").join(sql.Identifier(c) for c in cols if c not in skip)
            out[table] = [tuple(r) for r in conn.execute(
                sql.SQL("SELECT {} FROM {} ORDER BY id").format(keep, sql.Identifier(table)))]
        conn.rollback()
    return out


def write(db: DatabaseManager, provider: str, table: str, *, at: datetime | None = None, **values: Any) -> uuid.UUID:
    """Write one version of one row on one provider, as a client does: its clock, a new write_id; return the id."""
    row = {"id": values.pop("id", None) or uuid.uuid4(), **values}
    row["updated_at"] = at or datetime.now(timezone.utc)
    row["write_id"] = row.get("write_id") or uuid.uuid4()
    row = {k: Jsonb(v) if isinstance(v, dict) else v for k, v in row.items()}
    cols = list(row)
    statement = sql.SQL("INSERT INTO {t} ({cols}) VALUES ({vals}) ON CONFLICT (id) DO UPDATE SET {sets}").format(
        t=sql.Identifier(table), cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
        vals=sql.SQL(", ").join(sql.Placeholder(c) for c in cols),
        sets=sql.SQL(", ").join(sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in cols if c != "id"))
    with db.provider_connection(provider) as conn:
        conn.execute(statement, row)
        if table == "session_memories":  # the storage keeps a session's derived figures current
            conn.execute("SELECT recompute_session(ARRAY[%s])", (row["session_id"],))
        conn.commit()
    return row["id"]


def setting(db: DatabaseManager, provider: str, key: str, value: str, *, at: datetime | None = None,
            deleted: bool = False) -> uuid.UUID:
    """Write one version of a setting (a deletion with `deleted`) on one provider."""
    from agent_factory.memory.ids import setting_row_id

    when = at or datetime.now(timezone.utc)
    return write(db, provider, "settings", id=setting_row_id(key), at=when, setting_key=key, setting_value=value,
                 deleted_at=when if deleted else None)


def value_of(db: DatabaseManager, provider: str, key: str) -> tuple[str, bool] | None:
    """Return (value, deleted) of a setting row on one provider, or None when there is no row."""
    with db.provider_connection(provider) as conn:
        row = conn.execute("SELECT setting_value, deleted_at IS NOT NULL FROM settings WHERE setting_key = %s",
                           (key,)).fetchone()
        conn.rollback()
    return (row[0], row[1]) if row else None


def one_of_each(db: DatabaseManager, provider: str, tag: str) -> None:
    """Write one row in every table on one provider (a video script and its upload job included)."""
    setting(db, provider, f"key-{tag}", f"value-{tag}")
    write(db, provider, "knowledge_atoms", atom_id=f"atom-{tag}", atom_type="concept", title=f"Atom {tag}",
          content=f"content {tag}", keywords=["a", tag], quality_score=0.5)
    write(db, provider, "research_staging", source_url=f"https://example.com/{tag}", metadata={"tag": tag})
    script = write(db, provider, "video_scripts", title=f"Script {tag}", script="text", atom_ids=[f"atom-{tag}"])
    write(db, provider, "upload_jobs", video_script_id=script, platform="youtube", attempts=1)
    write(db, provider, "agent_messages", sender="a", recipient="b", payload={"tag": tag})
    session(db, provider, f"s-{tag}", ["hello", "world"])
    checkpoint(db, provider, f"thread-{tag}", f"cp-{tag}", value=b"values", pending=b"pending")


def langgraph_id(db: DatabaseManager, provider: str, *parts: str) -> uuid.UUID:
    """Return the row id migration 0004 derives from a LangGraph row's kind and natural key."""
    with db.provider_connection(provider) as conn:
        row = conn.execute("SELECT af_langgraph_id(VARIADIC %s::text[])", (list(parts),)).fetchone()
        conn.rollback()
    assert row is not None
    return row[0]


def checkpoint(db: DatabaseManager, provider: str, thread: str, checkpoint_id: str, *, value: bytes | None = None,
               pending: bytes | None = None, at: datetime | None = None, deleted: bool = False) -> uuid.UUID:
    """Write a LangGraph checkpoint on one provider: its channel blob, a pending write, then the checkpoint row."""
    when = at or datetime.now(timezone.utc)
    gone = when if deleted else None
    versions = {}
    if value is not None:
        versions["ch"] = f"v-{checkpoint_id}"
        write(db, provider, "langgraph_checkpoint_blobs",
              id=langgraph_id(db, provider, "blob", thread, "", "ch", versions["ch"]), at=when, thread_id=thread,
              checkpoint_ns="", channel="ch", version=versions["ch"], type="bytes", blob=value, deleted_at=gone)
    if pending is not None:
        write(db, provider, "langgraph_checkpoint_writes",
              id=langgraph_id(db, provider, "write", thread, "", checkpoint_id, "task", "0"), at=when,
              thread_id=thread, checkpoint_ns="", checkpoint_id=checkpoint_id, task_id="task", idx=0,
              channel="ch", type="bytes", blob=pending, deleted_at=gone)
    return write(
        db, provider, "langgraph_checkpoints", id=langgraph_id(db, provider, "checkpoint", thread, "", checkpoint_id),
        at=when, thread_id=thread, checkpoint_ns="", checkpoint_id=checkpoint_id,
        checkpoint={"v": 4, "id": checkpoint_id, "channel_values": {}, "channel_versions": versions},
        metadata={"step": 0}, deleted_at=gone)


def session(db: DatabaseManager, provider: str, session_id: str, texts: list[str], *,
            user_id: str = "user-1") -> None:
    """Write a session's metadata row and one message row per text on one provider."""
    from agent_factory.memory.ids import session_row_id

    write(db, provider, "session_memories", id=session_row_id(session_id), session_id=session_id, user_id=user_id,
          memory_type="session_metadata", content={})
    for i, text in enumerate(texts):
        message(db, provider, session_id, text, index=i, user_id=user_id)


def message(db: DatabaseManager, provider: str, session_id: str, text: str, *, index: int = 0,
            user_id: str = "user-1") -> uuid.UUID:
    """Append one message row (UUIDv7-like time-ordered id) on one provider."""
    return write(db, provider, "session_memories", id=uuid7(), session_id=session_id, user_id=user_id,
                 memory_type="message_user", message_index=index, content={"role": "user", "content": text})


def uuid7() -> uuid.UUID:
    """Return a time-ordered UUID (version 7 layout)."""
    import os
    import time

    ms = time.time_ns() // 1_000_000
    raw = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(raw))


def message_count(db: DatabaseManager, provider: str, session_id: str) -> int | None:
    with db.provider_connection(provider) as conn:
        row = conn.execute("SELECT message_count FROM session_memories WHERE session_id = %s "
                           "AND memory_type = 'session_metadata'", (session_id,)).fetchone()
        conn.rollback()
    return row[0] if row else None
