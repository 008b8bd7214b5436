"""One DatabaseManager per process by default; a closed manager refuses work."""

from __future__ import annotations

import pytest

from agent_factory.core import close_default_manager, default_manager
from agent_factory.errors import ManagerClosedError
from agent_factory.memory import KnowledgeBase, PostgresMemoryStorage, Settings
from agent_factory.ops.verify import verify


@pytest.fixture
def configured(env, monkeypatch, tmp_path):
    """The process environment points at the local providers; no .env file in the working directory."""
    monkeypatch.chdir(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield
    close_default_manager()


def test_storages_knowledge_settings_and_ops_share_the_process_default(configured):
    storage, knowledge, settings = PostgresMemoryStorage(), KnowledgeBase(), Settings()
    shared = default_manager()
    assert storage.db is shared and knowledge.db is shared and settings.db is shared
    verify()  # ops built without a manager use the default too, and leave it open
    assert not shared.closed
    storage.close()  # a storage never closes the process's manager
    assert not shared.closed and storage.db is shared


def test_a_closed_default_is_replaced(configured):
    first = default_manager()
    first.close()
    second = default_manager()
    assert second is not first and not second.closed
    assert second.execute_query("SELECT 1", fetch_mode="one") == (1,)


def test_a_closed_manager_raises_a_clear_error(make_db):
    db = make_db()
    assert db.execute_query("SELECT 1", fetch_mode="one") == (1,)
    db.close()
    for use in (lambda: db.execute_query("SELECT 1"), lambda: db.health_check_all(),
                lambda: db.provider_connection("neon").__enter__(), lambda: db.transaction().__enter__()):
        with pytest.raises(ManagerClosedError, match="was closed"):
            use()
    # nothing reopened a pool behind the error
    assert all(provider.pool_stats()["pool_size"] == 0 for provider in db._providers.values())
