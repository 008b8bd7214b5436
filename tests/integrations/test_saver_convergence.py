"""The checkpoint tables under the sync: interleavings of saver calls and syncs converge; split brain converges;
a checkpoint never reaches a provider before the blobs and writes it had on the source."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("langgraph.checkpoint.base", reason="needs the langgraph extra")

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6

from psycopg.types.json import Jsonb

from agent_factory.core import DatabaseManager
from agent_factory.integrations.langgraph import AgentFactorySaver
from agent_factory.integrations.langgraph import _checkpoint_sql as q
from agent_factory.memory.ids import new_stamp
from agent_factory.ops.sync import sync
from agent_factory.replication import sync_pair

from ..replication.conftest import empty, snapshot

PROVIDERS = ("neon", "supabase", "railway")
THREADS = ("t0", "t1")
LG_TABLES = ("langgraph_checkpoint_blobs", "langgraph_checkpoint_writes", "langgraph_checkpoints")


@pytest.fixture
def savers(make_db: Callable[..., DatabaseManager], sdb: DatabaseManager) -> dict[str, AgentFactorySaver]:
    """One saver per provider, each on a manager whose primary is that provider (no traffic elsewhere)."""
    out = {}
    for name in PROVIDERS:
        manager = make_db()
        manager.set_provider(name)
        out[name] = AgentFactorySaver(manager)
    return out


def step(saver: AgentFactorySaver, thread: str, value: int) -> dict:
    """Save the next checkpoint of `thread` on the saver's provider (child of its latest there), with a blob."""
    latest = saver.get_tuple({"configurable": {"thread_id": thread}})
    checkpoint = latest.checkpoint.copy() if latest else empty_checkpoint()
    checkpoint["id"] = str(uuid6(clock_seq=-1))
    version = saver.get_next_version(checkpoint["channel_versions"].get("items"), None)
    checkpoint["channel_values"] = {"items": [value]}
    checkpoint["channel_versions"] = {"items": version}
    config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    if latest:
        config["configurable"]["checkpoint_id"] = latest.config["configurable"]["checkpoint_id"]
    return saver.put(config, checkpoint, {"source": "loop", "step": value}, {"items": version})


def views(savers: dict[str, AgentFactorySaver]) -> list[dict]:
    """Return what each provider's saver shows: per thread, (checkpoint id, parent, values, writes), newest first."""
    out = []
    for saver in savers.values():
        out.append({t: [(c.config["configurable"]["checkpoint_id"],
                         c.parent_config and c.parent_config["configurable"]["checkpoint_id"],
                         c.checkpoint["channel_values"], c.pending_writes)
                        for c in saver.list({"configurable": {"thread_id": t}})] for t in THREADS})
    return out


operation = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(PROVIDERS), st.sampled_from(THREADS), st.integers(0, 9)),
    st.tuples(st.just("writes"), st.sampled_from(PROVIDERS), st.sampled_from(THREADS), st.integers(0, 9)),
    st.tuples(st.just("delete"), st.sampled_from(PROVIDERS), st.sampled_from(THREADS), st.just(0)),
    st.tuples(st.just("prune"), st.sampled_from(PROVIDERS), st.sampled_from(THREADS), st.just(0)),
    st.tuples(st.just("sync"), st.sampled_from(PROVIDERS), st.sampled_from(PROVIDERS), st.just(0)),
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=12))
def test_random_saver_calls_and_syncs_converge(sdb, savers, ops):
    empty(sdb)
    deleted_last: dict[str, bool] = {}  # thread -> whether its last operation anywhere was a delete_thread
    for kind, where, arg, value in ops:
        saver = savers[where]
        if kind == "put":
            step(saver, arg, value)
            deleted_last[arg] = False
        elif kind == "writes":
            latest = saver.get_tuple({"configurable": {"thread_id": arg}})
            if latest:
                saver.put_writes(latest.config, [("items", value)], f"task-{value}")
        elif kind == "delete":
            saver.delete_thread(arg)
            deleted_last[arg] = True
        elif kind == "prune":
            saver.prune([arg])
        elif where != arg:
            assert sync_pair(sdb, where, arg, margin_s=0).ok

    assert sync(sdb, all_providers=True).ok
    states = [snapshot(sdb, name, LG_TABLES) for name in PROVIDERS]
    assert states[0] == states[1] == states[2]
    seen = views(savers)
    assert seen[0] == seen[1] == seen[2]
    for thread, gone in deleted_last.items():
        if gone:  # deleted after every checkpoint written anywhere: deleted everywhere, whatever the merge order
            assert seen[0][thread] == []
    for checkpoints in seen[0].values():  # every visible checkpoint has its value (each put wrote its own blob)
        assert all(list(values) == ["items"] for _, _, values, _ in checkpoints)

    again = sync(sdb, all_providers=True)
    assert again.ok and again.rows_copied == 0


def test_split_brain_the_same_thread_continued_on_two_providers_converges(sdb, savers):
    base = [step(savers["neon"], "t0", i) for i in range(2)]
    assert sync_pair(sdb, "neon", "supabase", margin_s=0).ok
    # Split brain: both sides believe they serve and continue the thread from the same checkpoint.
    on_neon = step(savers["neon"], "t0", 10)
    on_supabase = step(savers["supabase"], "t0", 20)
    savers["supabase"].put_writes(on_supabase, [("items", 21)], "task-s")
    assert sync(sdb, all_providers=True).ok
    seen = views(savers)
    assert seen[0] == seen[1] == seen[2]
    ids = [c[0] for c in seen[0]["t0"]]
    # Both branches are kept, in the clients' uuid6 order (newest first); both are children of the fork point.
    assert ids == sorted(ids, reverse=True) and len(ids) == 4
    fork = base[-1]["configurable"]["checkpoint_id"]
    branches = {c[0]: c[1] for c in seen[0]["t0"][:2]}
    assert branches == {on_neon["configurable"]["checkpoint_id"]: fork,
                        on_supabase["configurable"]["checkpoint_id"]: fork}
    latest = savers["neon"].get_tuple({"configurable": {"thread_id": "t0"}})
    assert latest.config["configurable"]["checkpoint_id"] == on_supabase["configurable"]["checkpoint_id"]
    assert latest.pending_writes == [("task-s", "items", 21)]


def test_a_deletion_on_the_backup_wins_over_checkpoints_it_never_saw(sdb, savers):
    step(savers["neon"], "t0", 1)
    assert sync_pair(sdb, "neon", "supabase", margin_s=0).ok
    step(savers["neon"], "t0", 2)  # not synced: the backup never sees it
    savers["supabase"].delete_thread("t0")
    assert sync(sdb, all_providers=True).ok
    assert all(list(s.list({"configurable": {"thread_id": "t0"}})) == [] for s in savers.values())
    step(savers["railway"], "t0", 3)  # a later write brings the thread back, on every provider after a sync
    assert sync(sdb, all_providers=True).ok
    assert [len(list(s.list({"configurable": {"thread_id": "t0"}}))) for s in savers.values()] == [1, 1, 1]


def test_a_checkpoint_never_arrives_before_its_blobs(sdb, savers):
    """A put committed while a sync runs (after the blobs were read) waits for the next run, blobs and all."""
    # Committed changes in the three checkpoint tables: the run reads each of them.
    savers["neon"].put_writes(step(savers["neon"], "t1", 0), [("items", 1)], "task")
    stamp = new_stamp()
    blob = savers["neon"].serde.dumps_typed([1, 2, 3])
    params = {"thread": "t0", "ns": "", "cid": str(uuid6(clock_seq=-1)), "parent": None,
              "checkpoint": None, "metadata": None, "channels": ["items"], "versions": ["1"],
              "types": [blob[0]], "blobs": [blob[1]], "at": stamp.updated_at, "wid": stamp.write_id}
    checkpoint = empty_checkpoint()
    checkpoint["id"], checkpoint["channel_versions"] = params["cid"], {"items": "1"}
    params["checkpoint"], params["metadata"] = Jsonb(checkpoint), Jsonb({})
    with sdb.provider_connection("neon") as writer:
        writer.execute(q.PUT, params)  # in flight: not committed when the sync starts

        def commit_after(table) -> None:
            if table.table == "langgraph_checkpoint_writes":
                writer.commit()  # commits after the sync read the blobs, before it reads the checkpoints

        result = sync_pair(sdb, "neon", "supabase", margin_s=0, progress=commit_after)
        assert result.ok
    assert savers["supabase"].get_tuple({"configurable": {"thread_id": "t1"}}) is not None
    on_backup = savers["supabase"].get_tuple({"configurable": {"thread_id": "t0"}})
    assert on_backup is None or on_backup.checkpoint["channel_values"] == {"items": [1, 2, 3]}
    assert on_backup is None  # it waits for the next run, which carries its blob too
    assert sync_pair(sdb, "neon", "supabase", margin_s=0).ok
    on_backup = savers["supabase"].get_tuple({"configurable": {"thread_id": "t0"}})
    assert on_backup is not None and on_backup.checkpoint["channel_values"] == {"items": [1, 2, 3]}
