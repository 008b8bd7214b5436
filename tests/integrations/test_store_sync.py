"""Store rows under the merge machinery: random interleavings, split brain, and a failover with fail-back."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_factory.integrations.langgraph import AgentFactoryStore
from agent_factory.ops.sync import sync
from agent_factory.replication import sync_pair
from tests.conftest import wait_for_failovers
from tests.integrations.embedder import HashingEmbeddings
from tests.replication.conftest import empty, snapshot

pytestmark = pytest.mark.real_server

PROVIDERS = ("neon", "supabase", "railway")
STORE_TABLES = ("langgraph_store",)
provider = st.sampled_from(PROVIDERS)
operation = st.one_of(
    st.tuples(st.just("put"), provider, st.sampled_from(("k0", "k1")), st.integers(0, 9)),
    st.tuples(st.just("delete"), provider, st.sampled_from(("k0", "k1")), st.just(0)),
    st.tuples(st.just("sync"), provider, provider, st.just(0)),
)


@pytest.fixture
def sdb(db):
    """The `db` fixture with every synced table and the sync watermarks emptied on every provider."""
    empty(db)
    return db


@pytest.fixture
def pinned(make_db, sdb):
    """One store per provider, each pinned there (failover off)."""
    stores = {}
    for name in PROVIDERS:
        db = make_db(DATABASE_FAILOVER_ENABLED="false")
        db.set_provider(name)
        stores[name] = AgentFactoryStore(db)
    return stores


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=10))
def test_random_store_writes_and_syncs_converge(sdb, pinned, ops):
    empty(sdb)
    for kind, where, what, value in ops:
        if kind == "put":
            pinned[where].put(("ns",), what, {"v": value})
        elif kind == "delete":
            pinned[where].delete(("ns",), what)
        elif where != what:
            assert sync_pair(sdb, where, what).ok
    assert sync(sdb, all_providers=True).ok
    assert sync(sdb, all_providers=True).ok
    states = [snapshot(sdb, name, STORE_TABLES) for name in PROVIDERS]
    assert states[0] == states[1] == states[2]


def test_split_brain_store_converges_last_writer_wins(sdb, pinned):
    left, right = pinned["neon"], pinned["supabase"]
    left.put(("users", "u1"), "prefs", {"theme": "light"})
    left.put(("users", "u1"), "doomed", {"x": 1})
    assert sync(sdb, all_providers=True).ok
    left.put(("users", "u1"), "prefs", {"theme": "dark"})     # left first ...
    right.put(("users", "u1"), "prefs", {"theme": "solar"})   # ... right later: right wins
    right.delete(("users", "u1"), "doomed")                   # deleted on one side only
    right.put(("users", "u2"), "only-right", {"y": 2})
    assert sync(sdb, all_providers=True).ok
    for name in PROVIDERS:
        assert pinned[name].get(("users", "u1"), "prefs").value == {"theme": "solar"}
        assert pinned[name].get(("users", "u1"), "doomed") is None
        assert pinned[name].get(("users", "u2"), "only-right").value == {"y": 2}
    assert snapshot(sdb, "neon", STORE_TABLES) == snapshot(sdb, "railway", STORE_TABLES)


def test_vectors_travel_between_providers_that_have_pgvector(sdb, make_db):
    neon, railway = make_db(DATABASE_FAILOVER_ENABLED="false"), make_db(DATABASE_FAILOVER_ENABLED="false")
    railway.set_provider("railway")
    index = {"dims": 64, "embed": HashingEmbeddings(64), "fields": ["text"]}
    AgentFactoryStore(neon, index=index).put(("docs",), "py", {"text": "python tutorial"})
    AgentFactoryStore(neon, index=index).put(("docs",), "soup", {"text": "tomato soup"})
    result = sync_pair(sdb, "neon", "railway")
    assert result.ok and {t.table: t.rows_copied for t in result.tables}["langgraph_store_vectors"] == 2
    assert AgentFactoryStore(railway, index=index).search(("docs",), query="tomato")[0].key == "soup"
    # supabase has no pgvector: the items go there, the vectors are left out without error.
    to_supabase = sync_pair(sdb, "neon", "supabase")
    assert to_supabase.ok and "langgraph_store_vectors" not in {t.table for t in to_supabase.tables}


def test_store_items_written_during_a_failover_are_on_the_primary_after_fail_back(db, local):
    store = AgentFactoryStore(db, index={"dims": 64, "embed": HashingEmbeddings(64), "fields": ["text"]})
    store.put(("docs",), "before", {"text": "written before the crash"})
    local.kill("neon")
    store.put(("docs",), "during", {"text": "written during the failover"})
    assert db.active_provider == "supabase"
    # supabase has no pgvector: filtered items by recency ("before" was never synced there).
    assert [(r.key, r.score) for r in store.search(("docs",), query="failover")] == [("during", None)]
    local.start("neon")
    deadline = time.monotonic() + 20
    while db.active_provider != "neon" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.active_provider == "neon"
    wait_for_failovers(db, 2)
    with db.provider_connection("neon") as conn:
        keys = {r[0] for r in conn.execute("SELECT key FROM langgraph_store WHERE deleted_at IS NULL")}
        conn.rollback()
    assert keys == {"before", "during"}
    # The version written on supabase has no vectors; reindex() embeds it on the primary.
    assert store.reindex() == 1
    assert store.search(("docs",), query="during the failover")[0].key == "during"
