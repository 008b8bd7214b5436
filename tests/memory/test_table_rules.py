"""session_memories refuses, by itself, rows the library would never write: a writer that bypasses the library
(an operator's SQL, a restored file, another tool) meets the same rules (migration 0010: two domains and two
CHECK constraints)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from agent_factory.memory.ids import session_row_id

pytestmark = pytest.mark.real_server

INSERT = """INSERT INTO session_memories (id, session_id, user_id, memory_type, message_index, message_count, content)
VALUES (%(id)s, %(session_id)s, %(user_id)s, %(memory_type)s, %(message_index)s, %(message_count)s, '{}')"""


def good_message(**changes: object) -> dict[str, object]:
    return {"id": uuid.uuid4(), "session_id": "s-rules", "user_id": "u-rules", "memory_type": "message_user",
            "message_index": 0, "message_count": None, **changes}


def refused(conn: psycopg.Connection, sql: str, params: dict[str, object]) -> str:
    """Run `sql` in a savepoint; return the check that refused it (the test fails if nothing did)."""
    with pytest.raises(psycopg.errors.CheckViolation) as caught, conn.transaction():
        conn.execute(sql, params)
    return caught.value.diag.constraint_name or ""


@pytest.mark.parametrize("provider", ["neon", "supabase"])  # PostgreSQL 16 and 15
def test_rows_outside_the_rules_are_refused_and_good_ones_kept(db, provider):
    with db.provider_connection(provider) as conn:
        try:
            for field, bad in [("session_id", ""), ("session_id", "s" * 256), ("user_id", ""),
                               ("user_id", "u" * 256)]:
                assert refused(conn, INSERT, good_message(**{field: bad})) == "af_name_length", (field, bad)
            for field in ("message_index", "message_count"):
                assert refused(conn, INSERT, good_message(**{field: -1})) == "af_count_not_negative", field
            assert refused(conn, INSERT, good_message(memory_type="message_robot")) == \
                "session_memories_memory_type_check"
            # the metadata row's id is the one derived from its session id, and no other
            metadata = good_message(memory_type="session_metadata", message_index=None, message_count=0)
            assert refused(conn, INSERT, metadata) == "session_memories_metadata_id_check"
            conn.execute(INSERT, {**metadata, "id": session_row_id("s-rules")})
            with conn.transaction():  # a message's id is free
                conn.execute(INSERT, good_message(session_id="s" * 255, user_id="u", message_count=3))
            # an UPDATE meets the same rules as an INSERT
            assert refused(conn, "UPDATE session_memories SET message_count = %(n)s WHERE id = %(id)s",
                           {"n": -1, "id": session_row_id("s-rules")}) == "af_count_not_negative"
            assert refused(conn, "UPDATE session_memories SET session_id = %(s)s WHERE id = %(id)s",
                           {"s": "s-other", "id": session_row_id("s-rules")}) == "session_memories_metadata_id_check"
            kept = conn.execute("SELECT memory_type, length(session_id), message_count FROM session_memories "
                                "WHERE session_id IN ('s-rules', %s) ORDER BY 1", ("s" * 255,)).fetchall()
            assert kept == [("message_user", 255, 3), ("session_metadata", 7, 0)]
        finally:
            conn.rollback()


def test_the_changed_at_stamp_trigger_survives_0010_as_it_was(db):
    """0010 drops and recreates the stamp trigger to change its columns' types: same definition, still ALWAYS."""
    with db.provider_connection("neon") as conn:
        definition, enabled = conn.execute(
            "SELECT pg_get_triggerdef(oid), tgenabled FROM pg_trigger "
            "WHERE tgrelid = 'session_memories'::regclass AND tgname = 'session_memories_stamp_changed_at'").fetchone()
        conn.rollback()
    assert enabled == "A"
    assert definition.startswith("CREATE TRIGGER session_memories_stamp_changed_at BEFORE UPDATE OF id, session_id, "
                                 "user_id, memory_type, message_index, content, metadata, created_at, updated_at, "
                                 "deleted_at, write_id ON public.session_memories FOR EACH ROW WHEN (")
    assert definition.endswith("EXECUTE FUNCTION af_stamp_changed_at()")
