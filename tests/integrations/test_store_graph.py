"""A real StateGraph with deterministic nodes uses AgentFactoryStore through LangGraph's injection."""

from __future__ import annotations

from typing import TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore

from agent_factory.integrations.langgraph import AgentFactoryStore
from tests.integrations.embedder import HashingEmbeddings

pytestmark = pytest.mark.real_server


class State(TypedDict):
    user: str
    fact: str
    recalled: str


def remember(state: State, *, store: BaseStore) -> dict:
    store.put(("memories", state["user"]), state["fact"][:12], {"text": state["fact"]})
    return {}


def recall(state: State, *, store: BaseStore) -> dict:
    found = store.search(("memories", state["user"]), query="when does the pump trip", limit=1)
    return {"recalled": found[0].value["text"] if found else ""}


def test_graph_nodes_write_and_search_the_store(db):
    store = AgentFactoryStore(db, index={"dims": 64, "embed": HashingEmbeddings(64), "fields": ["text"]})
    builder = StateGraph(State)
    builder.add_node("remember", remember)
    builder.add_node("recall", recall)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "recall")
    builder.add_edge("recall", END)
    graph = builder.compile(store=store)
    graph.invoke({"user": "alice", "fact": "alice likes green tea", "recalled": ""})
    out = graph.invoke({"user": "alice", "fact": "pump P-101 trips at 80 C", "recalled": ""})
    assert out["recalled"] == "pump P-101 trips at 80 C"
    assert {i.key for i in store.search(("memories", "alice"))} == {"alice likes ", "pump P-101 t"}
