"""AgentFactoryStore's contract (LangGraph BaseStore, as PostgresStore keeps it) on the real local providers."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from agent_factory.errors import InvalidInputError
from agent_factory.integrations.langgraph import AgentFactoryStore
from agent_factory.integrations.langgraph.store_sql import item_id
from tests.integrations.embedder import HashingEmbeddings

pytestmark = pytest.mark.real_server


def rows(db, provider: str, sql: str, params=()):
    with db.provider_connection(provider) as conn:
        out = conn.execute(sql, params).fetchall()
        conn.rollback()
    return out


@pytest.fixture
def store(db):
    return AgentFactoryStore(db)


@pytest.fixture
def indexed(db):
    return AgentFactoryStore(db, index={"dims": 64, "embed": HashingEmbeddings(64), "fields": ["text"]})


def test_put_get_update_delete(store, db):
    store.put(("users", "u1"), "prefs", {"theme": "dark", "n": 1})
    item = store.get(("users", "u1"), "prefs")
    assert item.value == {"theme": "dark", "n": 1} and item.namespace == ("users", "u1") and item.key == "prefs"
    created = item.created_at
    store.put(("users", "u1"), "prefs", {"theme": "light"})
    again = store.get(("users", "u1"), "prefs")
    assert again.value == {"theme": "light"} and again.created_at == created and again.updated_at > item.updated_at
    store.delete(("users", "u1"), "prefs")
    assert store.get(("users", "u1"), "prefs") is None
    # The delete is a tombstone on the serving provider, not a missing row.
    [(deleted_at,)] = rows(db, "neon", "SELECT deleted_at FROM langgraph_store WHERE id = %s",
                           (item_id("users.u1", "prefs"),))
    assert deleted_at is not None
    store.put(("users", "u1"), "prefs", {"theme": "back"})
    assert store.get(("users", "u1"), "prefs").value == {"theme": "back"}


def test_batch_keeps_op_order_and_the_last_put_of_a_key(store):
    from langgraph.store.base import GetOp, PutOp

    results = store.batch([
        PutOp(("a",), "k", {"v": 1}), PutOp(("a",), "k", {"v": 2}), GetOp(("a",), "k"), GetOp(("a",), "missing"),
    ])
    assert results[0] is None and results[1] is None
    assert results[2].value == {"v": 2} and results[3] is None


def test_search_filters_limit_offset(store):
    for n in range(6):
        store.put(("docs", "team" if n % 2 else "solo"), f"d{n}", {"n": n, "kind": "even" if n % 2 == 0 else "odd",
                                                              "tag": f"t{n}"})
    assert {i.key for i in store.search(("docs",), limit=10)} == {f"d{n}" for n in range(6)}
    assert {i.key for i in store.search(("docs", "team"))} == {"d1", "d3", "d5"}
    assert {i.key for i in store.search(("docs",), filter={"kind": "even"})} == {"d0", "d2", "d4"}
    assert {i.key for i in store.search(("docs",), filter={"n": {"$gt": 3}})} == {"d4", "d5"}
    assert {i.key for i in store.search(("docs",), filter={"n": {"$gte": 3, "$lt": 5}})} == {"d3", "d4"}
    assert {i.key for i in store.search(("docs",), filter={"n": {"$lte": 1}})} == {"d0", "d1"}
    assert {i.key for i in store.search(("docs",), filter={"kind": {"$ne": "odd"}})} == {"d0", "d2", "d4"}
    assert {i.key for i in store.search(("docs",), filter={"n": {"$eq": 2}})} == {"d2"}
    # Newest first, paged.
    page1 = [i.key for i in store.search(("docs",), limit=4)]
    page2 = [i.key for i in store.search(("docs",), limit=4, offset=4)]
    assert page1 == ["d5", "d4", "d3", "d2"] and page2 == ["d1", "d0"]
    # A prefix matches whole labels only.
    store.put(("docsx",), "other", {"n": 9})
    assert "other" not in {i.key for i in store.search(("docs",), limit=20)}


def test_list_namespaces_prefix_suffix_depth(store):
    for ns in [("a", "b", "c"), ("a", "b", "d"), ("a", "e"), ("x", "b", "c")]:
        store.put(ns, "k", {"v": 1})
    assert store.list_namespaces() == [("a", "b", "c"), ("a", "b", "d"), ("a", "e"), ("x", "b", "c")]
    assert store.list_namespaces(prefix=("a",)) == [("a", "b", "c"), ("a", "b", "d"), ("a", "e")]
    assert store.list_namespaces(suffix=("c",)) == [("a", "b", "c"), ("x", "b", "c")]
    assert store.list_namespaces(prefix=("*", "b")) == [("a", "b", "c"), ("a", "b", "d"), ("x", "b", "c")]
    assert store.list_namespaces(max_depth=2) == [("a", "b"), ("a", "e"), ("x", "b")]
    assert store.list_namespaces(limit=2, offset=1) == [("a", "b", "d"), ("a", "e")]
    store.delete(("a", "e"), "k")
    assert ("a", "e") not in store.list_namespaces()


@pytest.mark.parametrize("call, match", [
    (lambda s: s.put((), "k", {"v": 1}), "at least one label"),
    (lambda s: s.put(("a", ""), "k", {"v": 1}), "empty"),
    (lambda s: s.put(("a.b",), "k", {"v": 1}), "contains a dot"),
    (lambda s: s.put(("a",), "k", {"v": object()}), "not JSON"),
    (lambda s: s.put(("a",), "k", {"v": float("nan")}), "not JSON"),
    (lambda s: s.search(("a",), limit=0), "limit must be at least 1"),
    (lambda s: s.list_namespaces(limit=0), "limit must be at least 1"),
    (lambda s: s.search(("a",), filter={"v": {"$in": [1]}}), "unsupported filter operator"),
])
def test_bad_input_is_refused_and_nothing_is_written(store, db, call, match):
    with pytest.raises(InvalidInputError, match=match):
        call(store)
    assert rows(db, "neon", "SELECT count(*) FROM langgraph_store") == [(0,)]


def test_a_bad_put_in_a_batch_writes_none_of_it(store, db):
    from langgraph.store.base import PutOp

    with pytest.raises(InvalidInputError):
        store.batch([PutOp(("a",), "good", {"v": 1}), PutOp(("a",), "bad", {"v": {1, 2}})])
    assert rows(db, "neon", "SELECT count(*) FROM langgraph_store") == [(0,)]


def test_wrong_vector_size_is_refused_before_writing(db):
    store = AgentFactoryStore(db, index={"dims": 32, "embed": HashingEmbeddings(64), "fields": ["text"]})
    with pytest.raises(InvalidInputError, match="64 dimensions; the index is configured with 32"):
        store.put(("docs",), "d", {"text": "hello"})
    assert rows(db, "neon", "SELECT count(*) FROM langgraph_store") == [(0,)]


def test_semantic_search_ranks_by_meaning_of_the_indexed_field(indexed, db):
    indexed.put(("docs",), "py", {"text": "python programming tutorial for beginners"})
    indexed.put(("docs",), "ts", {"text": "typescript guide for web developers"})
    indexed.put(("docs",), "cook", {"text": "a recipe for tomato soup"})
    results = indexed.search(("docs",), query="python tutorial")
    assert results[0].key == "py"
    assert results[0].score > results[1].score and all(r.score is not None for r in results)
    assert [r.key for r in indexed.search(("docs",), query="tomato soup recipe", limit=1)] == ["cook"]
    # Filters apply to semantic search too.
    assert indexed.search(("docs",), query="python", filter={"text": {"$eq": "nope"}}) == []
    # A new version replaces the vectors: the old words no longer match best.
    indexed.put(("docs",), "py", {"text": "tomato soup recipe with basil"})
    assert indexed.search(("docs",), query="python tutorial")[0].key != "py"
    # index=False stores no vectors for that version; delete removes the item from search.
    indexed.put(("docs",), "raw", {"text": "python tutorial python tutorial"}, index=False)
    assert "raw" not in [r.key for r in indexed.search(("docs",), query="python tutorial")]
    indexed.delete(("docs",), "cook")
    assert "cook" not in [r.key for r in indexed.search(("docs",), query="tomato soup")]
    # The run-time HNSW index exists for the configured dimensions.
    [(name,)] = rows(db, "neon", "SELECT indexname FROM pg_indexes WHERE indexname = 'af_runtime_store_hnsw_64'")
    assert name == "af_runtime_store_hnsw_64"


def test_embed_may_be_a_plain_callable(db):
    embedder = HashingEmbeddings(16)
    store = AgentFactoryStore(db, index={"dims": 16, "embed": embedder.embed_documents, "fields": ["text"]})
    store.put(("n",), "a", {"text": "red apple"})
    store.put(("n",), "b", {"text": "blue sky"})
    assert store.search(("n",), query="apple")[0].key == "a"


def test_ttl_refresh_on_read_and_sweep_to_tombstones(db):
    store = AgentFactoryStore(db, ttl={"default_ttl": 1.0, "refresh_on_read": True})
    store.put(("t",), "short", {"v": 1}, ttl=0.001)  # 60 ms
    store.put(("t",), "kept", {"v": 2})
    [(before,)] = rows(db, "neon", "SELECT expires_at FROM langgraph_store WHERE key = 'kept'")
    store.get(("t",), "kept")  # refreshes
    [(after,)] = rows(db, "neon", "SELECT expires_at FROM langgraph_store WHERE key = 'kept'")
    assert after >= before
    store.get(("t",), "kept", refresh_ttl=False)
    [(unchanged,)] = rows(db, "neon", "SELECT expires_at FROM langgraph_store WHERE key = 'kept'")
    assert unchanged == after
    deadline = time.monotonic() + 10
    swept = 0
    while swept == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        swept += store.sweep_ttl()
    assert swept == 1
    assert store.get(("t",), "short") is None and store.get(("t",), "kept").value == {"v": 2}
    [(deleted_at, expires_at)] = rows(db, "neon", "SELECT deleted_at, expires_at FROM langgraph_store "
                                                  "WHERE key = 'short'")
    assert deleted_at == expires_at  # the tombstone's version time is the expiry


def test_omit_expired_hides_items_before_the_sweep(db):
    store = AgentFactoryStore(db, ttl={"omit_expired": True})
    store.put(("t",), "gone", {"v": 1}, ttl=0.0005)
    time.sleep(0.2)
    assert store.get(("t",), "gone") is None and store.search(("t",)) == [] and store.list_namespaces() == []


def test_sweeper_thread_starts_and_stops(db):
    store = AgentFactoryStore(db, ttl={"default_ttl": 1.0, "sweep_interval_minutes": 1})
    future = store.start_ttl_sweeper(sweep_interval_minutes=0.001)
    store.put(("t",), "x", {"v": 1}, ttl=0.0005)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and rows(db, "neon", "SELECT count(*) FROM langgraph_store "
                                                            "WHERE deleted_at IS NOT NULL") != [(1,)]:
        time.sleep(0.1)
    assert rows(db, "neon", "SELECT count(*) FROM langgraph_store WHERE deleted_at IS NOT NULL") == [(1,)]
    assert store.stop_ttl_sweeper(timeout=10)
    assert future.done()


def test_async_methods(store):
    async def run():
        await store.aput(("as",), "k", {"v": 1})
        item = await store.aget(("as",), "k")
        found = await store.asearch(("as",))
        spaces = await store.alist_namespaces()
        await store.adelete(("as",), "k")
        return item, found, spaces, await store.aget(("as",), "k")

    item, found, spaces, gone = asyncio.run(run())
    assert item.value == {"v": 1} and [f.key for f in found] == ["k"] and spaces == [("as",)] and gone is None


def test_semantic_search_without_pgvector_falls_back_with_a_warning(make_db, db, caplog):
    # supabase runs Debian's PostgreSQL 15: no pgvector there.
    on_supabase = make_db(DATABASE_PROVIDER="supabase")
    store = AgentFactoryStore(on_supabase, index={"dims": 64, "embed": HashingEmbeddings(64), "fields": ["text"]})
    with caplog.at_level(logging.WARNING):
        store.put(("docs",), "a", {"text": "python tutorial"})
        results = store.search(("docs",), query="python")
    assert [r.key for r in results] == ["a"] and results[0].score is None
    assert "no pgvector" in caplog.text


def test_explicit_ttl_none_means_no_expiry_despite_the_default(db):
    store = AgentFactoryStore(db, ttl={"default_ttl": 5.0})
    store.put(("t",), "default", {"v": 1})
    store.put(("t",), "forever", {"v": 2}, ttl=None)
    got = dict(rows(db, "neon", "SELECT key, ttl_minutes FROM langgraph_store"))
    assert got == {"default": 5.0, "forever": None}


def test_a_store_without_index_tombstones_the_vectors_of_what_it_deletes(indexed, store, db):
    indexed.put(("docs",), "d", {"text": "python tutorial"})
    store.delete(("docs",), "d")
    assert rows(db, "neon", "SELECT count(*) FROM langgraph_store_vectors WHERE deleted_at IS NULL") == [(0,)]
    assert indexed.search(("docs",), query="python") == []
