"""Identifiers with control characters and limits beyond a bigint: InvalidInputError before any SQL, nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from agent_factory.memory import InvalidInputError, KnowledgeBase, PostgresMemoryStorage, Session
from agent_factory.memory.validation import MAX_LIMIT, check_id, check_limit

from .conftest import fingerprint

CONTROL_IDS = {
    "newline": "alice\nINFO forged log line",
    "carriage return": "alice\r",
    "tab": "al\tice",
    "escape": "\x1b[31mred",
    "DEL": "alice\x7f",
    "C1 after non-ASCII": "zoë\x85",
}


@pytest.mark.parametrize("value", list(CONTROL_IDS.values()), ids=list(CONTROL_IDS))
def test_control_characters_in_ids_are_refused(value: str) -> None:
    with pytest.raises(InvalidInputError, match="session_id contains the control character"):
        check_id(value, "session_id")


@pytest.mark.parametrize("value", ["alice", "zoë", "用户-42", "a b", "user@example.com", "x" * 255])
def test_printable_ids_pass(value: str) -> None:
    assert check_id(value, "user_id") == value


@pytest.mark.parametrize("value", list(CONTROL_IDS.values()), ids=list(CONTROL_IDS))
def test_storage_refuses_control_characters_and_writes_nothing(storage: Any, value: str) -> None:
    before = fingerprint(storage)
    with pytest.raises(InvalidInputError, match="user_id"):
        storage.save_session(_session(user_id=value))
    with pytest.raises(InvalidInputError, match="session_id"):
        storage.save_session(_session(session_id=value))
    with pytest.raises(InvalidInputError, match="session_id"):
        storage.load_session(value)
    with pytest.raises(InvalidInputError, match="user_id"):
        storage.list_sessions(value)
    with pytest.raises(InvalidInputError, match="user_id"):
        storage.save_memory_atom("s-1", value, "log", {"a": 1})
    assert fingerprint(storage) == before


def _session(**overrides: str) -> Session:
    session = Session("alice", session_id="s-1", messages=[{"role": "user", "content": "hello"}])
    for name, value in overrides.items():
        object.__setattr__(session, name, value)
    return session


def test_limits_beyond_bigint_are_invalid_input() -> None:
    assert check_limit(MAX_LIMIT) == MAX_LIMIT == 2**63 - 1
    with pytest.raises(InvalidInputError, match="bigint"):
        check_limit(MAX_LIMIT + 1)


def test_storage_and_knowledge_refuse_a_limit_beyond_bigint_before_any_sql(storage: Any) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        storage.query_memory_atoms(limit=2**63)
    with pytest.raises(InvalidInputError, match="limit"):
        storage.query_memory_atoms(limit=10**30)
    fresh = PostgresMemoryStorage()  # no manager yet: one would be made on first database use
    with pytest.raises(InvalidInputError, match="limit"):
        fresh.query_memory_atoms(limit=2**63)
    assert fresh._db is None


def test_a_bigint_limit_itself_reaches_the_server_fine(db) -> None:
    storage = PostgresMemoryStorage(db)
    storage.save_session(_session())
    storage.save_memory_atom("s-1", "alice", "log", {"a": 1})
    assert [a.content for a in storage.query_memory_atoms(session_id="s-1", memory_type="log", limit=MAX_LIMIT)] \
        == [{"a": 1}]
    with pytest.raises(InvalidInputError, match="limit"):
        KnowledgeBase(db).search("valve", limit=2**63)
