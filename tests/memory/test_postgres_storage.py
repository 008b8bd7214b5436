"""PostgresMemoryStorage on real servers: row counts, replays after failover, concurrent writers, lazy setup."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg.types.json import Jsonb

from agent_factory.memory import PostgresMemoryStorage, Session
from agent_factory.memory.base import prepare_messages, prepare_session
from agent_factory.memory.ids import new_stamp, session_row_id
from agent_factory.memory import postgres as pg
from agent_factory.memory.postgres import append_messages_work, save_session_work


def conversation(count: int, user_id: str = "alice") -> Session:
    session = Session(user_id)
    for i in range(count):
        session.add_message("user" if i % 2 == 0 else "assistant", f"turn {i}")
    return session


def row_count(db, session_id: str | None = None, live_only: bool = False) -> int:
    sql = "SELECT count(*) FROM session_memories WHERE true"
    params: list[str] = []
    if session_id is not None:
        sql += " AND session_id = %s"
        params.append(session_id)
    if live_only:
        sql += " AND deleted_at IS NULL"
    return db.execute_query(sql, params, fetch_mode="one")[0]


def provider_rows(db, name: str, session_id: str) -> list[tuple]:
    with db.provider_connection(name) as conn:
        rows = conn.execute(
            "SELECT id, message_index, memory_type, user_id, content, metadata, created_at, deleted_at IS NULL "
            "FROM session_memories WHERE session_id = %s ORDER BY id", (session_id,)).fetchall()
        conn.rollback()
    return rows


def test_saving_twice_keeps_one_row_per_message(db):
    storage = PostgresMemoryStorage(db)
    session = conversation(10)
    storage.save_session(session)
    storage.save_session(session)
    assert row_count(db) == 11
    session.add_message("user", "one more")
    storage.save_session(session)
    storage.save_session(session)
    assert row_count(db) == 12


def test_replayed_save_in_one_transaction_is_harmless(db):
    storage = PostgresMemoryStorage(db)
    session = conversation(5)
    work = save_session_work(prepare_session(session))

    def twice(conn: psycopg.Connection) -> None:
        work(conn)
        work(conn)

    db.run_in_transaction(twice, idempotent=True)
    db.run_in_transaction(work, idempotent=True)
    assert row_count(db) == 6
    assert storage.load_session(session.session_id) == session


def test_replay_on_another_provider_writes_the_same_rows(db):
    """A save replayed after failover lands on the same ids there: providers can be merged without duplicates."""
    session = conversation(4)
    work = save_session_work(prepare_session(session))
    for name in ("neon", "supabase"):
        with db.provider_connection(name) as conn:
            work(conn)
            conn.commit()
    with db.provider_connection("supabase") as conn:  # a second replay on the backup changes nothing
        work(conn)
        conn.commit()
    neon, supabase = provider_rows(db, "neon", session.session_id), provider_rows(db, "supabase", session.session_id)
    assert len(neon) == 5
    assert neon == supabase
    assert session_row_id(session.session_id) in {row[0] for row in neon}


def test_concurrent_saves_of_one_session_never_duplicate(db):
    storage = PostgresMemoryStorage(db)
    session = conversation(30)
    barrier = threading.Barrier(4)

    def save(_: int) -> None:
        barrier.wait()
        for _ in range(10):
            storage.save_session(session)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(save, range(4)))
    assert row_count(db, live_only=True) == 31
    loaded = storage.load_session(session.session_id)
    assert loaded == session and [m.id for m in loaded.messages] == [m.id for m in session.messages]


def test_concurrent_appends_get_distinct_positions_in_order(db):
    storage = PostgresMemoryStorage(db)
    session = Session("alice")
    storage.save_session(session)
    barrier = threading.Barrier(4)

    def append(worker: int) -> None:
        barrier.wait()
        for batch in range(5):
            storage.append_messages(session.session_id, [
                {"role": "user", "content": f"w{worker} b{batch} m{m}"} for m in range(4)])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(append, range(4)))
    loaded = storage.load_session(session.session_id)
    assert len(loaded.messages) == 80
    assert row_count(db, session.session_id) == 81
    for worker in range(4):  # each batch is contiguous and each worker's batches keep their order
        mine = [i for i, m in enumerate(loaded.messages) if m.content.startswith(f"w{worker} ")]
        assert [loaded.messages[i].content for i in mine] == [
            f"w{worker} b{b} m{m}" for b in range(5) for m in range(4)]
        assert all(mine[k + 3] - mine[k] == 3 for k in range(0, 20, 4))


def _wait_until_blocked(db, application_name: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        waiting = db.execute_query(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = %s",
            (application_name,), fetch_mode="one")[0]
        if waiting:
            return
        time.sleep(0.01)
    raise AssertionError("the second writer never waited for the lock")


@pytest.mark.parametrize("second", ["save", "delete"])
def test_writer_waiting_on_a_concurrent_append_sees_its_messages(db, second, caplog):
    """A shortening save (or a delete) that waits for an append removes the appended messages too."""
    caplog.set_level(logging.DEBUG, logger="agent_factory.memory.postgres")
    storage = PostgresMemoryStorage(db)
    session = conversation(4)
    storage.save_session(session)
    shorter = conversation(0)
    shorter.session_id, shorter.messages, shorter.created_at = session.session_id, session.messages[:2], \
        session.created_at

    with db.provider_connection(db.active_provider) as appender:
        batch = prepare_messages(session.session_id, [{"role": "user", "content": "appended"}] * 3, "messages")
        # holds the lock, uncommitted
        assert append_messages_work(session.session_id, batch, new_stamp())(appender) == [(7,)]
        errors: list[BaseException] = []

        def write() -> None:
            try:
                if second == "save":
                    storage.save_session(shorter)
                else:
                    storage.delete_session(session.session_id)
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=write)
        thread.start()
        _wait_until_blocked(db, "agent-factory")
        appender.commit()
        thread.join(timeout=10)
    assert not errors
    assert any("changed concurrently" in r.getMessage() for r in caplog.records)  # the race was detected

    if second == "save":
        assert storage.load_session(session.session_id) == shorter
        assert row_count(db, session.session_id, live_only=True) == 3  # metadata + 2 messages: no stray rows
    else:
        assert storage.load_session(session.session_id) is None
        assert row_count(db, session.session_id, live_only=True) == 0


def test_rows_written_by_other_tools_load_tolerantly(db):
    """A metadata row without last_active and a message without text still load."""
    storage = PostgresMemoryStorage(db)
    session = conversation(1)
    storage.save_session(session)
    db.execute_query(
        "UPDATE session_memories SET content = content - 'last_active', last_active = NULL WHERE session_id = %s "
        "AND memory_type = 'session_metadata'", (session.session_id,), fetch_mode="none")
    db.execute_query(
        "UPDATE session_memories SET content = %s WHERE session_id = %s AND message_index = 0",
        (Jsonb({"role": "user"}), session.session_id), fetch_mode="none")
    loaded = storage.load_session(session.session_id)
    assert loaded.last_active == loaded.created_at
    assert loaded.messages[0].content == ""


def test_replayed_append_appends_once(db):
    storage = PostgresMemoryStorage(db)
    session = conversation(2)
    storage.save_session(session)
    batch = prepare_messages(session.session_id, [{"role": "user", "content": "once"},
                                                  {"role": "assistant", "content": "only"}], "messages")
    work = append_messages_work(session.session_id, batch, new_stamp())

    def twice(conn: psycopg.Connection) -> tuple[list, list]:
        return work(conn), work(conn)

    assert db.run_in_transaction(twice, idempotent=True) == ([(4,)], [(4,)])
    assert db.run_statement(work, idempotent=True) == [(4,)]  # a replay after the commit appends nothing
    with db.provider_connection("supabase") as conn:  # a replay on a provider without the session: no row
        assert work(conn) == []
        conn.rollback()
    assert [m.content for m in storage.load_session(session.session_id).messages] == [
        "turn 0", "turn 1", "once", "only"]
    assert row_count(db, session.session_id) == 5


def test_an_append_runs_one_statement_and_a_replay_falls_back_to_the_replay_safe_one(db, caplog):
    """New messages take the statement without a conflict arbiter; a replay fails it and runs the other."""
    caplog.set_level(logging.DEBUG, logger="agent_factory.memory.postgres")
    storage = PostgresMemoryStorage(db)
    session = conversation(1)
    storage.save_session(session)
    batch = prepare_messages(session.session_id, [{"role": "user", "content": "new"}] * 2, "messages")
    work = append_messages_work(session.session_id, batch, new_stamp())
    sent: list[str] = []

    def traced(conn: psycopg.Connection) -> list:
        original = conn.execute

        def execute(query, params=None, **kwargs):
            sent.append(query)
            return original(query, params, **kwargs)

        conn.execute = execute  # type: ignore[method-assign]
        try:
            return work(conn)
        finally:
            del conn.execute

    assert db.run_statement(traced, idempotent=True) == [(3,)]
    assert sent == [pg.APPEND_NEW_MESSAGES_SQL]
    assert not any("again" in r.getMessage() for r in caplog.records)
    sent.clear()
    assert db.run_statement(traced, idempotent=True) == [(3,)]  # a replay: nothing written twice
    assert sent == [pg.APPEND_NEW_MESSAGES_SQL, pg.APPEND_MESSAGES_SQL]
    assert any("stored already" in r.getMessage() for r in caplog.records)
    assert row_count(db, session.session_id) == 4


def test_a_replay_racing_its_original_waits_and_appends_nothing(db):
    """The replay waits on the session's lock; once the original commits, it finds the messages stored."""
    storage = PostgresMemoryStorage(db)
    session = conversation(2)
    storage.save_session(session)
    batch = prepare_messages(session.session_id, [{"role": "user", "content": "raced"}] * 3, "messages")
    work = append_messages_work(session.session_id, batch, new_stamp())
    with db.provider_connection(db.active_provider) as original:
        assert work(original) == [(5,)]  # uncommitted: holds the session's row lock
        with ThreadPoolExecutor(1) as pool:
            replay = pool.submit(db.run_statement, work, idempotent=True)
            _wait_until_blocked(db, "agent-factory")
            original.commit()
            assert replay.result(timeout=10) == [(5,)]
    assert [m.content for m in storage.load_session(session.session_id).messages] == [
        "turn 0", "turn 1", "raced", "raced", "raced"]
    assert row_count(db, session.session_id) == 6


def test_sequential_writes_take_one_statement(db, caplog):
    """Without concurrent writers, save and delete never run their statement twice."""
    caplog.set_level(logging.DEBUG, logger="agent_factory.memory.postgres")
    storage = PostgresMemoryStorage(db)
    session = conversation(3)
    storage.save_session(session)
    storage.save_session(session)
    session.add_message("user", "more")
    storage.save_session(session)
    storage.delete_session(session.session_id)
    storage.save_session(session)
    assert not [r for r in caplog.records if "changed concurrently" in r.getMessage()]


class _Counting:
    """A connection stand-in that counts the statements sent through it."""

    def __init__(self, conn: psycopg.Connection, log: list[str]) -> None:
        self._conn, self._log = conn, log

    def execute(self, query, *args, **kwargs):
        self._log.append(query if isinstance(query, str) else repr(query))
        return self._conn.execute(query, *args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def test_every_memory_operation_is_one_statement_in_autocommit(db, monkeypatch):
    """One statement, no BEGIN/COMMIT: one round trip per operation (the pool's checkout aside)."""
    from agent_factory.core.provider import Provider
    from agent_factory.memory import KnowledgeBase, Settings

    calls: list[tuple[bool, int]] = []
    real_run = Provider.run

    def run(self, work, **options):
        log: list[str] = []
        result = real_run(self, lambda conn: work(_Counting(conn, log)), **options)
        calls.append((options.get("autocommit", False), len(log)))
        return result

    monkeypatch.setattr(Provider, "run", run)
    storage, kb, settings = PostgresMemoryStorage(db), KnowledgeBase(db), Settings(db, ttl=0)
    session = conversation(3)
    operations = {
        "save_session": lambda: storage.save_session(session),
        "save_session again": lambda: storage.save_session(session),
        "append_messages": lambda: storage.append_messages(session.session_id, [{"role": "user", "content": "x"}]),
        "load_session": lambda: storage.load_session(session.session_id),
        "list_sessions": lambda: storage.list_sessions("alice"),
        "save_memory_atom": lambda: storage.save_memory_atom(session.session_id, "alice", "log", {"a": 1}),
        "query_memory_atoms": lambda: storage.query_memory_atoms(session_id=session.session_id),
        "kb.upsert": lambda: kb.upsert({"atom_id": "a", "atom_type": "concept", "title": "T", "content": "c"}),
        "kb.search": lambda: kb.search("T"),
        "kb.delete": lambda: kb.delete("a"),
        "settings.set": lambda: settings.set("k", "v"),
        "settings.get": lambda: settings.get("k"),
        "settings.delete": lambda: settings.delete("k"),
        "delete_session": lambda: storage.delete_session(session.session_id),
    }
    for name, operation in operations.items():
        calls.clear()
        operation()
        assert calls == [(True, 1)], name
