"""Fixtures for stream tests: the local providers with every backup following the primary."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent_factory.core import DatabaseManager
from agent_factory.ops.stream import drop_streams, setup_streams


@pytest.fixture
def streams(db: DatabaseManager) -> Iterator[DatabaseManager]:
    """`db` (tables emptied everywhere) with a stream from the primary into each backup; dropped afterwards."""
    setup_streams(db)
    yield db
    drop_streams(db)


def caught_up(db: DatabaseManager, timeout: float = 60) -> bool:
    """Wait until every stream has applied all of the primary's WAL (lag 0 bytes); return whether it did."""
    from agent_factory.ops.stream import stream_states
    from tests.conftest import wait_until

    return wait_until(lambda: all(s.lag_bytes == 0 for s in stream_states(db)), timeout)
