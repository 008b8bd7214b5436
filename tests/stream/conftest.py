"""Fixtures for stream tests: the local providers with every backup following the primary."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from agent_factory.core import DatabaseManager
from agent_factory.ops.stream import drop_streams, setup_streams


@pytest.fixture
def streams(db: DatabaseManager) -> Iterator[DatabaseManager]:
    """`db` (tables emptied everywhere) with a stream from the primary into each backup; dropped afterwards."""
    setup_streams(db)
    yield db
    drop_streams(db)


def visible(db: DatabaseManager, provider: str, query: str, params: tuple[object, ...] = ()) -> Callable[[], bool]:
    """Return a predicate: `query` returns a row on `provider`."""
    def check() -> bool:
        with db.provider_connection(provider) as conn:
            return conn.execute(query, params).fetchone() is not None
    return check
