"""A real LangGraph `StateGraph` on `AgentFactorySaver` and `AgentFactoryStore` through a SIGKILL of the primary,
failover and fail-back."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from itertools import pairwise
from typing import Annotated, TypedDict

import pytest

pytest.importorskip("langgraph.graph", reason="needs the langgraph extra")

from langgraph.graph import END, START, StateGraph

from agent_factory.integrations.langgraph import AgentFactorySaver, AgentFactoryStore
from agent_factory.replication import sync_pair
from tests.conftest import wait_until

from .embedder import HashingEmbeddings

INDEX = {"dims": 64, "embed": HashingEmbeddings(64), "fields": ["text"]}


class State(TypedDict):
    steps: Annotated[list[str], operator.add]


def build_graph(saver: AgentFactorySaver, hook: Callable[[str, int], None] = lambda thread, n: None,
                store: AgentFactoryStore | None = None):
    """Three deterministic nodes a -> b -> c; each appends '<node>:<input>' to the steps; `hook` runs in b.

    With a store, c also files a note per turn under ("notes", thread): key = the turn's tag.
    """
    def node(name: str):
        def run(state: State, config, *, store=None) -> dict:
            tag = state["steps"][-1].split(":")[-1]
            if name == "b":
                hook(config["configurable"]["thread_id"], len(state["steps"]))
            if name == "c" and store is not None:
                store.put(("notes", config["configurable"]["thread_id"]), tag, {"text": f"turn {tag} finished"})
            return {"steps": [f"{name}:{tag}"]}
        return run

    graph = StateGraph(State)
    for name in ("a", "b", "c"):
        graph.add_node(name, node(name))
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return graph.compile(checkpointer=saver, store=store)


def expected_steps(thread: str, turns: int) -> list[str]:
    out = []
    for turn in range(turns):
        tag = f"{thread}-{turn}"
        out += [f"in:{tag}", f"a:{tag}", f"b:{tag}", f"c:{tag}"]
    return out


@pytest.mark.timeout(300)
def test_graph_threads_resume_on_the_backup_and_history_is_whole_after_fail_back(make_db, db, local):
    manager = make_db(DATABASE_HEALTH_TTL="0.3", DATABASE_FAILBACK_CHECKS="2")
    saver = AgentFactorySaver(manager)
    killed: list[str] = []

    def kill_mid_thread(thread: str, seen: int) -> None:
        # In thread t1's third turn, inside node b: the warm backups hold everything so far
        # (what the monitor's sync does), then the primary dies before b's writes are saved.
        if thread == "t1" and seen == 10 and not killed:
            for backup in ("supabase", "railway"):
                assert sync_pair(manager, "neon", backup, margin_s=0).ok
            local.kill("neon")
            killed.append(thread)

    graph = build_graph(saver, kill_mid_thread, AgentFactoryStore(manager, index=INDEX))
    turns = {"t0": 4, "t1": 4, "t2": 3}
    for thread, count in turns.items():
        config = {"configurable": {"thread_id": thread}}
        for turn in range(count):
            payload = {"steps": [f"in:{thread}-{turn}"]}
            if turn % 2:
                asyncio.run(graph.ainvoke(payload, config, durability="sync"))
            else:
                graph.invoke(payload, config, durability="sync")
        if thread == "t1":
            assert killed and manager.active_provider != "neon", "the thread went on without a failover"
            state = graph.get_state(config)
            assert state.values["steps"] == expected_steps(thread, count), "the thread did not resume on the backup"
    assert manager.active_provider != "neon"

    local.start("neon")
    assert wait_until(lambda: manager.active_provider == "neon", 60), "no fail-back"
    # One more turn on every thread, on the primary again.
    for thread in turns:
        graph.invoke({"steps": [f"in:{thread}-{turns[thread]}"]}, {"configurable": {"thread_id": thread}})
        turns[thread] += 1

    fresh = make_db()
    assert fresh.active_provider == "neon"
    check = build_graph(AgentFactorySaver(fresh))
    for thread, count in turns.items():
        config = {"configurable": {"thread_id": thread}}
        history = list(check.get_state_history(config))[::-1]  # oldest first
        assert history[-1].values["steps"] == expected_steps(thread, count)
        # Every step exactly once, in order: one checkpoint per superstep, numbered -1, 0, 1, ...
        # each the child of the one before, each adding exactly the next step.
        assert [s.metadata["step"] for s in history] == list(range(-1, len(history) - 1))
        for before, after in pairwise(history):
            assert after.parent_config["configurable"]["checkpoint_id"] == \
                before.config["configurable"]["checkpoint_id"]
            grown = after.values.get("steps", [])
            assert grown[:len(before.values.get("steps", []))] == before.values.get("steps", [])
        assert len(history) == 5 * count  # per turn: before the input, the input, then one per node

    # The store's notes, written on neon and on the backup during the failover, are all on the primary.
    store = AgentFactoryStore(fresh, index=INDEX)
    store.reindex()  # notes written on a backup without pgvector arrive without vectors: embed them here
    for thread, count in turns.items():
        notes = {item.key: item.value["text"] for item in store.search(("notes", thread), limit=100)}
        assert notes == {f"{thread}-{turn}": f"turn {thread}-{turn} finished" for turn in range(count)}
    [best] = store.search(("notes",), query="turn t1-2 finished", limit=1)  # written on the backup
    assert best.key == "t1-2" and best.score is not None
