"""Fixtures of the integration tests."""

from __future__ import annotations

import pytest

from agent_factory.core import DatabaseManager

from ..replication.conftest import empty


@pytest.fixture
def sdb(db: DatabaseManager) -> DatabaseManager:
    """The `db` fixture with the sync watermarks emptied too (syncs start from scratch)."""
    empty(db)
    return db
