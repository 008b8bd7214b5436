"""Fixtures of the memory tests: the storage under contract, in memory and on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from agent_factory.config import load_config
from agent_factory.core import DatabaseManager
from agent_factory.local import LocalProviders
from agent_factory.memory import InMemoryStorage, MemoryStorage, PostgresMemoryStorage

MEMORY_TABLES = ("session_memories", "knowledge_atoms", "settings")


@pytest.fixture(scope="session")
def shared_db(local: LocalProviders, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseManager]:
    """One DatabaseManager on the local providers for all memory tests (pools stay warm)."""
    config = load_config(env={**local.env(), "AGENT_FACTORY_STATE_DIR": str(tmp_path_factory.mktemp("state"))},
                         env_file=None)
    with DatabaseManager(config) as manager:
        yield manager


@pytest.fixture
def db(shared_db: DatabaseManager) -> DatabaseManager:
    """Override of the suite's `db`: the shared manager, with the memory tables emptied on every provider.

    DELETE on these small tables is much faster than the suite's TRUNCATE of every
    table, which keeps the memory tests quick; the memory tests never kill a provider.
    """
    for name in shared_db.providers:
        with shared_db.provider_connection(name) as conn:
            conn.execute("; ".join(f"DELETE FROM {table}" for table in MEMORY_TABLES))
            conn.commit()
    return shared_db


@pytest.fixture(params=["in_memory", "postgres"])
def storage(request: pytest.FixtureRequest) -> MemoryStorage:
    """Each contract test runs once on `InMemoryStorage` and once on `PostgresMemoryStorage`."""
    if request.param == "in_memory":
        return InMemoryStorage()
    db: DatabaseManager = request.getfixturevalue("db")
    return PostgresMemoryStorage(db)


def fingerprint(storage: MemoryStorage) -> Any:
    """Return a value that changes whenever anything is written to the storage (deleted rows included)."""
    if isinstance(storage, InMemoryStorage):
        with storage._lock:
            return sorted(repr(row) for row in storage._rows.values())
    assert isinstance(storage, PostgresMemoryStorage)
    return storage.db.execute_query(
        "SELECT (SELECT count(*) FROM session_memories), "
        "(SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM session_memories t), "
        "(SELECT md5(coalesce(string_agg(k::text, ',' ORDER BY id), '')) FROM knowledge_atoms k), "
        "(SELECT md5(coalesce(string_agg(s::text, ',' ORDER BY id), '')) FROM settings s)",
        fetch_mode="one",
    )


def stored_rows(storage: MemoryStorage, session_id: str) -> list[tuple[int | None, str, bool]]:
    """Return (message_index, memory_type, deleted) of every stored row of a session, deleted ones too."""
    if isinstance(storage, InMemoryStorage):
        with storage._lock:
            rows = [(r.message_index, r.memory_type, r.deleted_at is not None)
                    for r in storage._rows.values() if r.session_id == session_id]
    else:
        assert isinstance(storage, PostgresMemoryStorage)
        rows = storage.db.execute_query(
            "SELECT message_index, memory_type, deleted_at IS NOT NULL FROM session_memories WHERE session_id = %s",
            (session_id,),
        )
    return sorted(rows, key=lambda r: (-1 if r[0] is None else r[0], r[1]))



def make_rows_newer(storage: MemoryStorage, updated_at: datetime) -> None:
    """Give every stored row the version `updated_at`, as if another writer with a later clock had written it."""
    if isinstance(storage, InMemoryStorage):
        with storage._lock:
            for row in storage._rows.values():
                row.updated_at = updated_at
        return
    assert isinstance(storage, PostgresMemoryStorage)
    storage.db.execute_query("UPDATE session_memories SET updated_at = %s", (updated_at,), fetch_mode="none")
