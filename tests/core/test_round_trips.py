"""Network round trips per operation, counted by a TCP proxy between the library and the provider."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent_factory.core import DatabaseManager
from agent_factory.local.proxy import CountingProxy
from agent_factory.memory import KnowledgeBase, Message, PostgresMemoryStorage, Session, Settings
from agent_factory.schema import EXPECTED_TABLES
from tests.conftest import make_config


@pytest.fixture
def proxied(env, local, request) -> Iterator[tuple[DatabaseManager, CountingProxy]]:
    """A manager whose primary (neon) is reached through a counting proxy; every table emptied.

    Parametrized indirectly, the parameter is the proxy's added delay per round trip (default none).
    """
    target = conninfo_to_dict(local.url("neon"))
    delay = getattr(request, "param", 0.0)
    with CountingProxy(str(target["host"]), int(target["port"]), delay=delay) as proxy:
        url = make_conninfo(local.url("neon"), host="127.0.0.1", port=proxy.port)
        db = DatabaseManager(make_config(env, NEON_DB_URL=url, DATABASE_POOL_MIN_SIZE="1",
                                         DATABASE_POOL_MAX_SIZE="1"))
        try:
            with db.provider_connection("neon") as conn:
                conn.execute("TRUNCATE " + ", ".join(EXPECTED_TABLES) + " CASCADE")
                conn.commit()
            yield db, proxy
        finally:
            db.close()


def count(proxy: CountingProxy, operation: Callable[[], object]) -> int:
    """Run `operation` twice (the first warms the pool and prepares), return the round trips of the second."""
    operation()
    proxy.reset()
    operation()
    return proxy.round_trips


def test_execute_query_select_is_one_round_trip(proxied):
    db, proxy = proxied
    assert count(proxy, lambda: db.execute_query("SELECT 1", fetch_mode="one")) == 1


def test_memory_operations_are_one_round_trip_each(proxied):
    db, proxy = proxied
    storage = PostgresMemoryStorage(db)
    session = Session(user_id="alice", messages=[Message("user", "hello")])
    storage.save_session(session)
    assert db.active_provider == "neon"

    measured = {
        "save_session": count(proxy, lambda: storage.save_session(session)),
        "load_session": count(proxy, lambda: storage.load_session(session.session_id)),
        "append_messages": count(proxy, lambda: storage.append_messages(
            session.session_id, [{"role": "assistant", "content": "hi"}])),
        "list_sessions": count(proxy, lambda: storage.list_sessions("alice")),
        "save_memory_atom": count(proxy, lambda: storage.save_memory_atom(
            session.session_id, "alice", "decision", {"text": "x"})),
        "query_memory_atoms": count(proxy, lambda: storage.query_memory_atoms(session_id=session.session_id)),
    }
    knowledge, settings = KnowledgeBase(db), Settings(db)
    atom = {"atom_id": "a-1", "atom_type": "concept", "title": "t", "content": "c"}
    measured["knowledge.upsert"] = count(proxy, lambda: knowledge.upsert(atom))
    measured["knowledge.get"] = count(proxy, lambda: knowledge.get("a-1"))
    measured["settings.set"] = count(proxy, lambda: settings.set("k", "v"))
    measured["settings.get"] = count(proxy, lambda: (settings.clear_cache(), settings.get("k")))
    measured["delete_session"] = count(proxy, lambda: storage.delete_session(session.session_id))
    assert measured == dict.fromkeys(measured, 1)


def test_a_multi_statement_write_keeps_its_transaction(proxied):
    """`execute_query` of a write keeps its semantics: BEGIN, the statement and COMMIT."""
    db, proxy = proxied
    trips = count(proxy, lambda: db.execute_query(
        "UPDATE settings SET description = 'x' WHERE setting_key = 'none'", fetch_mode="none"))
    assert trips == 3


@pytest.mark.parametrize("proxied", [0.02], indirect=True)
def test_every_call_is_one_round_trip_including_the_one_that_prepares(proxied):
    """psycopg prepares a statement on its sixth run on a connection: that call is one round trip too.

    Over a 20 ms link, so that only a turn the client waits for counts (not the server's early answer
    to a pipelined statement, which a proxy without delay may see before the client's Sync).
    """
    db, proxy = proxied
    storage = PostgresMemoryStorage(db)
    session = Session(user_id="alice", messages=[Message("user", "hello")])
    storage.save_session(session)
    operations: dict[str, Callable[[], object]] = {
        "save_session": lambda: storage.save_session(session),
        "load_session": lambda: storage.load_session(session.session_id),
        "append_messages": lambda: storage.append_messages(session.session_id, [{"role": "user", "content": "x"}]),
        "list_sessions": lambda: storage.list_sessions("alice"),
        "query_memory_atoms": lambda: storage.query_memory_atoms(session_id=session.session_id),
    }
    trips: dict[str, list[int]] = {name: [] for name in operations}
    for _ in range(8):  # one pooled connection: runs 1-8 of each statement on it
        for name, operation in operations.items():
            proxy.reset()
            operation()
            trips[name].append(proxy.round_trips)
    assert trips == {name: [1] * 8 for name in operations}
