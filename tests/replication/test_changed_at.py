"""changed_at after migration 0008: stamped on data changes only, by the server's clock, on streams too."""

from __future__ import annotations

from datetime import datetime, timezone

from agent_factory.memory import Message, PostgresMemoryStorage, Session
from agent_factory.memory.ids import session_row_id
from agent_factory.replication import sync_pair


def _changed_at(db, row_id):
    with db.provider_connection("neon") as conn:
        value = conn.execute("SELECT changed_at FROM session_memories WHERE id = %s", (row_id,)).fetchone()[0]
        conn.rollback()
    return value


def test_an_append_changes_the_new_messages_not_the_sessions_row_and_the_sync_copies_only_them(sdb):
    storage = PostgresMemoryStorage(sdb)
    session = Session("stamp-user", messages=[Message("user", "first")])
    storage.save_session(session)
    assert sync_pair(sdb, "neon", "supabase", margin_s=0).ok
    before = _changed_at(sdb, session_row_id(session.session_id))

    assert storage.append_messages(session.session_id, [Message("user", "a"), Message("assistant", "b")]) == 3
    assert _changed_at(sdb, session_row_id(session.session_id)) == before  # only its derived figures changed
    result = sync_pair(sdb, "neon", "supabase", margin_s=0)
    assert result.ok and result.rows_copied == 2
    with sdb.provider_connection("supabase") as conn:
        count = conn.execute("SELECT message_count FROM session_memories WHERE id = %s",
                             (session_row_id(session.session_id),)).fetchone()[0]
        conn.rollback()
    assert count == 3  # recomputed on the backup from the copied messages

    session.metadata = {"topic": "changed"}
    storage.save_session(session)
    assert _changed_at(sdb, session_row_id(session.session_id)) > before  # a data change is stamped


def test_a_changed_at_given_by_a_writer_is_replaced_by_the_servers_clock(sdb):
    storage = PostgresMemoryStorage(sdb)
    session = Session("stamp-user")
    storage.save_session(session)
    old, future = datetime(2001, 1, 1, tzinfo=timezone.utc), datetime(2999, 1, 1, tzinfo=timezone.utc)
    with sdb.provider_connection("neon") as conn:
        now = conn.execute("SELECT now()").fetchone()[0]
        for atom_id, given in (("00000000-0000-7000-8000-000000000001", old),
                               ("00000000-0000-7000-8000-000000000002", future)):
            conn.execute("INSERT INTO session_memories (id, session_id, user_id, memory_type, content, changed_at) "
                         "VALUES (%s, %s, 'stamp-user', 'decision', '{}', %s)", (atom_id, session.session_id, given))
        stamped = [row[0] for row in conn.execute(
            "SELECT changed_at FROM session_memories WHERE session_id = %s AND memory_type = 'decision' ORDER BY id",
            (session.session_id,)).fetchall()]
        conn.commit()
    assert len(stamped) == 2 and all(now <= value < future for value in stamped)


def test_the_stamping_and_guard_triggers_fire_for_a_streams_apply_worker_too(sdb):
    with sdb.provider_connection("supabase") as conn:
        states = dict(conn.execute(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'session_memories'::regclass "
            "AND (tgname LIKE 'session_memories_stamp_changed_at%%' OR tgname = 'session_memories_lww')").fetchall())
        conn.rollback()
    assert states == {"session_memories_stamp_changed_at": "A", "session_memories_stamp_changed_at_insert": "A",
                      "session_memories_lww": "A"}


def test_an_older_update_is_skipped_by_the_guard_and_a_newer_one_applies(sdb):
    storage = PostgresMemoryStorage(sdb)
    session = Session("stamp-user", metadata={"v": 1})
    storage.save_session(session)
    row_id = session_row_id(session.session_id)
    with sdb.provider_connection("neon") as conn:
        older = conn.execute("UPDATE session_memories SET metadata = '{\"v\": 0}', "
                             "updated_at = updated_at - interval '1 second' WHERE id = %s", (row_id,)).rowcount
        newer = conn.execute("UPDATE session_memories SET metadata = '{\"v\": 2}', "
                             "updated_at = updated_at + interval '1 second' WHERE id = %s", (row_id,)).rowcount
        conn.commit()
    assert (older, newer) == (0, 1)
    assert storage.load_session(session.session_id).metadata == {"v": 2}
