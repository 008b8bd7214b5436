"""Streams on real local providers: neon (PostgreSQL 16) publishes, supabase (15) and railway (16) subscribe."""

from __future__ import annotations

from agent_factory.core import DatabaseManager
from agent_factory.memory.postgres import PostgresMemoryStorage
from agent_factory.memory.session import Session
from agent_factory.ops.stream import setup_streams, stream_name, stream_states
from tests.conftest import wait_until

BACKUPS = ("supabase", "railway")


def test_names_derive_from_providers() -> None:
    assert stream_name("neon", "supabase") == "af_neon_to_supabase"
    long = stream_name("p" * 31, "s" * 31)
    assert len(long) <= 63 and long.startswith("af_stream_")


def test_a_session_saved_on_the_primary_is_loadable_on_each_backup(streams: DatabaseManager) -> None:
    states = stream_states(streams)
    assert {s.subscriber for s in states} == set(BACKUPS)
    assert all(s.status == "streaming" for s in states), states
    storage = PostgresMemoryStorage(streams)
    session = Session("user-1", messages=[{"role": "user", "content": "hello"}])
    storage.save_session(session)
    storage.append_messages(session.session_id, [{"role": "assistant", "content": "hi"}])
    for backup in BACKUPS:
        def loaded(backup: str = backup) -> bool:
            with streams.provider_connection(backup) as conn:
                row = conn.execute("SELECT message_count FROM session_memories WHERE session_id = %s AND "
                                   "memory_type = 'session_metadata'", (session.session_id,)).fetchone()
            return row is not None and row[0] == 2
        assert wait_until(loaded, 30), f"session not on {backup} with 2 messages"


def test_setup_is_idempotent(streams: DatabaseManager) -> None:
    again = setup_streams(streams)
    assert [s.status for s in again] == ["streaming", "streaming"]
    with streams.provider_connection("neon") as conn:
        names = {r[0] for r in conn.execute("SELECT pubname FROM pg_publication")}
        slots = {r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots")}
    assert names == slots == {stream_name("neon", b) for b in BACKUPS}
