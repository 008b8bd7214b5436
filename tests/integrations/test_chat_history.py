"""AgentFactoryChatMessageHistory on real servers: round trips with tool messages, clear, concurrency, bad input."""

from __future__ import annotations

import asyncio
import threading

import pytest
from langchain_core.messages import (
    AIMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)

from agent_factory.errors import InvalidInputError
from agent_factory.integrations.langchain import AgentFactoryChatMessageHistory
from agent_factory.memory import PostgresMemoryStorage

CONVERSATION = [
    SystemMessage("You are a maintenance assistant."),
    HumanMessage("What is the torque of bolt M8?", id="h-1"),
    AIMessage("", tool_calls=[{"name": "lookup_torque", "args": {"size": "M8"}, "id": "call-1"}],
              usage_metadata={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}),
    ToolMessage("25 Nm", tool_call_id="call-1", name="lookup_torque", artifact={"table": "din-912"}),
    FunctionMessage("ok", name="legacy_function"),
    AIMessage([{"type": "text", "text": "It is "}, {"type": "text", "text": "25 Nm."}], name="helper"),
    ChatMessage("Noted.", role="assistant"),
]


@pytest.fixture
def history(db) -> AgentFactoryChatMessageHistory:
    return AgentFactoryChatMessageHistory("chat-1", user_id="alice", db=db)


def test_a_round_trip_returns_messages_equal_to_those_added(history, db):
    history.add_messages(CONVERSATION)
    assert history.messages == CONVERSATION
    fresh = AgentFactoryChatMessageHistory("chat-1", user_id="alice", db=db)
    assert fresh.messages == CONVERSATION
    assert fresh.messages[2].tool_calls[0]["id"] == "call-1"

    # The same session through the memory API: roles mapped, text stored, the rest in metadata.
    session = PostgresMemoryStorage(db).load_session("chat-1")
    assert session.user_id == "alice"
    assert [m.role for m in session.messages] == ["system", "user", "assistant", "user", "user", "assistant",
                                                  "assistant"]
    assert session.messages[0].metadata == {}  # a plain message keeps nothing extra
    assert session.messages[3].content == "25 Nm"
    assert session.messages[3].metadata["langchain"]["tool_call_id"] == "call-1"
    assert session.messages[5].content == "It is 25 Nm."
    assert [s.message_count for s in PostgresMemoryStorage(db).list_sessions("alice")] == [7]


def test_messages_written_through_the_memory_api_read_as_plain_messages(history, db):
    storage = PostgresMemoryStorage(db)
    history.add_user_message("hello")
    storage.append_messages("chat-1", [{"role": "assistant", "content": "hi", "metadata": {"source": "api"}}])
    assert history.messages == [HumanMessage("hello"), AIMessage("hi")]


def test_clear_tombstones_the_messages_and_keeps_the_session(history, db):
    history.add_messages(CONVERSATION[:3])
    history.clear()
    assert history.messages == []
    summary = PostgresMemoryStorage(db).list_sessions("alice")
    assert [(s.session_id, s.message_count) for s in summary] == [("chat-1", 0)]
    with db.provider_connection("neon") as conn:
        tombstones = conn.execute("SELECT count(*) FROM session_memories WHERE session_id = 'chat-1' "
                                  "AND message_index IS NOT NULL AND deleted_at IS NOT NULL").fetchone()[0]
    assert tombstones == 3
    history.add_messages([HumanMessage("again")])
    assert history.messages == [HumanMessage("again")]
    AgentFactoryChatMessageHistory("never-used", user_id="alice", db=db).clear()  # nothing to clear: no error


def test_a_deleted_session_comes_back_with_only_the_new_messages(history, db):
    history.add_messages(CONVERSATION[:2])
    assert PostgresMemoryStorage(db).delete_session("chat-1")
    assert history.messages == []
    history.add_messages([HumanMessage("new start")])
    assert history.messages == [HumanMessage("new start")]


def test_concurrent_writers_on_one_session_lose_nothing(db):
    writers, per_writer = 6, 15
    errors: list[BaseException] = []

    def write(n: int) -> None:
        history = AgentFactoryChatMessageHistory("shared", user_id="alice", db=db)
        try:
            for i in range(per_writer):
                history.add_messages([HumanMessage(f"w{n}-{i}"), AIMessage(f"r{n}-{i}")])
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    messages = AgentFactoryChatMessageHistory("shared", user_id="alice", db=db).messages
    assert len(messages) == writers * per_writer * 2
    for n in range(writers):  # each writer's messages in its order, each question followed by its answer
        mine = [m.content for m in messages if m.content[1:].startswith(f"{n}-")]
        assert mine == [text for i in range(per_writer) for text in (f"w{n}-{i}", f"r{n}-{i}")]
    for i, message in enumerate(messages):
        if isinstance(message, HumanMessage):
            assert messages[i + 1].content == "r" + message.content[1:]  # one call's messages stay together
    [summary] = PostgresMemoryStorage(db).list_sessions("alice")
    assert summary.message_count == writers * per_writer * 2


def test_async_methods(history):
    async def run() -> list:
        await history.aadd_messages(CONVERSATION[:2])
        first = await history.aget_messages()
        await history.aclear()
        return [first, await history.aget_messages()]

    assert asyncio.run(run()) == [CONVERSATION[:2], []]


def test_bad_input_is_refused_and_nothing_is_written(history, db):
    cases = [
        ([HumanMessage("fine"), "not a message"], r"messages\[1\] must be a LangChain BaseMessage"),
        ([ChatMessage("x", role="critic")], r"messages\[0\].role must be one of"),
        ([RemoveMessage(id="m-1")], r"messages\[0\] is a RemoveMessage"),
        ([HumanMessage("nul \x00 byte")], r"messages\[0\].content contains a NUL byte"),
        ([ToolMessage("r", tool_call_id="c", artifact={1, 2})], r"messages\[0\].metadata\['langchain'\]\['artifact'\]"),
        (HumanMessage("one"), "messages must be a list"),
    ]
    for messages, error in cases:
        with pytest.raises(InvalidInputError, match=error):
            history.add_messages(messages)
    assert history.messages == []
    assert PostgresMemoryStorage(db).load_session("chat-1") is None
    with pytest.raises(InvalidInputError, match="session_id"):
        AgentFactoryChatMessageHistory("", user_id="alice", db=db)


def test_a_session_of_another_user_is_refused(history, db):
    history.add_messages([HumanMessage("mine")])
    intruder = AgentFactoryChatMessageHistory("chat-1", user_id="mallory", db=db)
    for action in (lambda: intruder.add_messages([HumanMessage("theirs")]), lambda: intruder.messages,
                   intruder.clear):
        with pytest.raises(InvalidInputError, match="belongs to another user"):
            action()
    assert history.messages == [HumanMessage("mine")]


def test_a_replayed_add_messages_writes_and_counts_nothing_twice(history, db, monkeypatch):
    """The manager replays a statement whose outcome it could not see: the replay must change nothing."""
    from agent_factory.core.provider import Provider

    real_run = Provider.run
    replayed: list[int] = []

    def run_twice(self, work, **options):
        real_run(self, work, **options)  # as if the connection broke after the commit
        replayed.append(1)
        return real_run(self, work, **options)

    history.add_messages([HumanMessage("before")])
    monkeypatch.setattr(Provider, "run", run_twice)
    history.add_messages([HumanMessage("once"), AIMessage("only once")])
    monkeypatch.undo()
    assert replayed == [1]
    assert history.messages == [HumanMessage("before"), HumanMessage("once"), AIMessage("only once")]
    [summary] = PostgresMemoryStorage(db).list_sessions("alice")
    assert summary.message_count == 3
