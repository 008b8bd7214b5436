"""Property: any interleaving of writes on the three providers and syncs in any order converges to one state."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_factory.memory.ids import session_row_id, setting_row_id
from agent_factory.ops.sync import sync
from agent_factory.replication import sync_pair

from .conftest import empty, message, snapshot, write

PROVIDERS = ("neon", "supabase", "railway")
KEYS = ("k0", "k1")
SESSIONS = ("s0", "s1")

provider = st.sampled_from(PROVIDERS)
# Client clocks: a few values only, so equal updated_at (ties broken by write_id) happen often.
offset = st.integers(min_value=0, max_value=3)
operation = st.one_of(
    st.tuples(st.just("set"), provider, st.sampled_from(KEYS), st.integers(0, 9), offset, st.booleans()),
    st.tuples(st.just("meta"), provider, st.sampled_from(SESSIONS), offset, st.booleans()),
    st.tuples(st.just("msg"), provider, st.sampled_from(SESSIONS), st.integers(0, 9)),
    st.tuples(st.just("sync"), provider, provider),
)


# Each test runs twice: with the sync engine alone, and with the primary streaming into the backups too.
pytestmark = pytest.mark.usefixtures("streaming")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=12))
def test_random_writes_and_syncs_converge(sdb, ops):
    empty(sdb)
    base = datetime.now(timezone.utc) - timedelta(minutes=5)
    winners: dict[str, tuple] = {}  # setting key -> the greatest (updated_at, write_id, value, deleted) written
    for op in ops:
        kind, where = op[0], op[1]
        if kind == "set":
            _, _, key, value, off, deleted = op
            at = base + timedelta(seconds=off)
            write_id = uuid.uuid4()
            write(sdb, where, "settings", id=setting_row_id(key), at=at, write_id=write_id, setting_key=key,
                  setting_value=str(value), deleted_at=at if deleted else None)
            candidate = (at, write_id.bytes, str(value), deleted)
            winners[key] = max(winners.get(key, candidate), candidate)
        elif kind == "meta":
            _, _, session_id, off, deleted = op
            at = base + timedelta(seconds=off)
            write(sdb, where, "session_memories", id=session_row_id(session_id), at=at, session_id=session_id,
                  user_id="u", memory_type="session_metadata", content={}, deleted_at=at if deleted else None)
        elif kind == "msg":
            _, _, session_id, text = op
            message(sdb, where, session_id, f"m{text}")
        elif op[1] != op[2]:
            assert sync_pair(sdb, op[1], op[2], margin_s=0).ok

    assert sync(sdb, all_providers=True).ok
    states = [snapshot(sdb, name) for name in PROVIDERS]
    assert states[0] == states[1] == states[2]
    for key, (_, _, value, deleted) in winners.items():  # the greatest (updated_at, write_id) won everywhere
        assert _setting(sdb, key) == (value, deleted)

    # Idempotent: another full round copies nothing and changes nothing.
    again = sync(sdb, all_providers=True)
    assert again.ok and again.rows_copied == 0
    assert [snapshot(sdb, name) for name in PROVIDERS] == states


def _setting(db, key):
    with db.provider_connection("neon") as conn:
        row = conn.execute("SELECT setting_value, deleted_at IS NOT NULL FROM settings WHERE setting_key = %s",
                           (key,)).fetchone()
        conn.rollback()
    return tuple(row)
