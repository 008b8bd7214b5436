"""Bad input on every public method: a clear ValueError naming the field, raised before any SQL; nothing written."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from agent_factory.memory import InvalidInputError, Message, PostgresMemoryStorage, Session
from agent_factory.memory.validation import MAX_ID_LENGTH, MAX_JSON_DEPTH, MAX_TEXT_LENGTH

from .conftest import fingerprint

LONG_ID = "x" * (MAX_ID_LENGTH + 1)
LONG_TEXT = "y" * (MAX_TEXT_LENGTH + 1)


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"d": value}
    return value


def changed(**attributes: Any) -> Callable[[Session], Session]:
    """Return a function that makes an invalid copy of the saved session by setting attributes."""
    def make(session: Session) -> Session:
        bad = copy.deepcopy(session)
        for name, value in attributes.items():
            setattr(bad, name, value)
        return bad
    return make


def with_message(message: Any) -> Callable[[Session], Session]:
    def make(session: Session) -> Session:
        bad = copy.deepcopy(session)
        bad.messages.append(message)
        return bad
    return make


SAVE_CASES = {
    "not a session": (lambda s: {"user_id": "alice"}, "session must be a Session"),
    "empty user": (changed(user_id=""), "session.user_id"),
    "blank user": (changed(user_id="   "), "session.user_id"),
    "long user": (changed(user_id=LONG_ID), "session.user_id"),
    "NUL in user": (changed(user_id="al\x00ice"), "session.user_id"),
    "int user": (changed(user_id=42), "session.user_id"),
    "empty session id": (changed(session_id=""), "session.session_id"),
    "long session id": (changed(session_id=LONG_ID), "session.session_id"),
    "None session id": (changed(session_id=None), "session.session_id"),
    "metadata not a dict": (changed(metadata=["a"]), "session.metadata"),
    "NUL in metadata": (changed(metadata={"k": {"deep": ["ok", "b\x00d"]}}), r"session.metadata\['k'\]\['deep'\]\[1\]"),
    "NUL in metadata key": (changed(metadata={"k\x00": 1}), "session.metadata"),
    "NaN in metadata": (changed(metadata={"k": float("nan")}), r"session.metadata\['k'\]"),
    "non-str key": (changed(metadata={1: "x"}), "session.metadata"),
    "non-JSON value": (changed(metadata={"k": object()}), r"session.metadata\['k'\]"),
    "too deep": (changed(metadata=deep(MAX_JSON_DEPTH + 1)), "deeper"),
    "lone surrogate": (changed(metadata={"k": "\ud800"}), "surrogate"),
    "naive created_at": (changed(created_at=datetime(2025, 1, 1)), "session.created_at"),  # noqa: DTZ001
    "messages not a list": (changed(messages="hello"), "session.messages"),
    "bad role": (with_message({"role": "robot", "content": "x"}), r"session.messages\[1\].role"),
    "role missing": (with_message({"content": "x"}), r"session.messages\[1\] is missing 'role'"),
    "content not str": (with_message({"role": "user", "content": 5}), r"session.messages\[1\].content"),
    "content None": (with_message(Message("user", None)), r"session.messages\[1\].content"),  # type: ignore[arg-type]
    "NUL in content": (with_message({"role": "user", "content": "a\x00b"}), "NUL"),
    "content too long": (with_message(Message("user", LONG_TEXT)), "limit"),
    "unknown message key": (with_message({"role": "user", "content": "x", "text": "y"}), "unknown keys"),
    "message metadata NUL": (with_message(Message("user", "x", {"a": "\x00"})), r"messages\[1\].metadata"),
    "message metadata list": (with_message(Message("user", "x", ["a"])), r"messages\[1\].metadata"),  # type: ignore[arg-type]
    "naive message time": (with_message(Message("user", "x", {}, datetime(2025, 1, 1))), "timestamp"),  # noqa: DTZ001
    "message not a dict": (with_message("hello"), r"session.messages\[1\]"),
}

BAD_IDS = {"empty": "", "blank": " \t", "long": LONG_ID, "NUL": "a\x00", "int": 7, "None": None}
OTHER_CASES: dict[str, tuple[Callable[[Any, Session], Any], str]] = {}
for label, bad in BAD_IDS.items():
    OTHER_CASES[f"load {label} id"] = (lambda st, s, bad=bad: st.load_session(bad), "session_id")
    OTHER_CASES[f"delete {label} id"] = (lambda st, s, bad=bad: st.delete_session(bad), "session_id")
    OTHER_CASES[f"append {label} id"] = (
        lambda st, s, bad=bad: st.append_messages(bad, [{"role": "user", "content": "x"}]), "session_id")
    OTHER_CASES[f"atom {label} session"] = (
        lambda st, s, bad=bad: st.save_memory_atom(bad, "alice", "log", {"a": 1}), "session_id")
    OTHER_CASES[f"atom {label} user"] = (
        lambda st, s, bad=bad: st.save_memory_atom(s.session_id, bad, "log", {"a": 1}), "user_id")
    if bad is not None:
        OTHER_CASES[f"list {label} user"] = (lambda st, s, bad=bad: st.list_sessions(bad), "user_id")
        OTHER_CASES[f"query {label} session"] = (
            lambda st, s, bad=bad: st.query_memory_atoms(session_id=bad), "session_id")
        OTHER_CASES[f"query {label} user"] = (lambda st, s, bad=bad: st.query_memory_atoms(user_id=bad), "user_id")
OTHER_CASES.update({
    "append not a list": (lambda st, s: st.append_messages(s.session_id, "hi"), "messages"),
    "append bad role": (lambda st, s: st.append_messages(s.session_id, [{"role": "bot", "content": "x"}]),
                        r"messages\[0\].role"),
    "append content not str": (lambda st, s: st.append_messages(s.session_id, [{"role": "user", "content": b"x"}]),
                               r"messages\[0\].content"),
    "append dict metadata NaN": (lambda st, s: st.append_messages(
        s.session_id, [{"role": "user", "content": "x", "metadata": {"k": float("nan")}}]), r"messages\[0\].metadata"),
    "append dict metadata list": (lambda st, s: st.append_messages(
        s.session_id, [{"role": "user", "content": "x", "metadata": ["a"]}]), r"messages\[0\].metadata"),
    "append dict content too long": (lambda st, s: st.append_messages(
        s.session_id, [{"role": "user", "content": LONG_TEXT}]), "limit"),
    "append dict role not str": (lambda st, s: st.append_messages(
        s.session_id, [{"role": ["user"], "content": "x"}]), r"messages\[0\].role"),
    "append good then NUL": (lambda st, s: st.append_messages(
        s.session_id, [{"role": "user", "content": "ok"}, {"role": "user", "content": "\x00"}]), r"messages\[1\]"),
    "atom unknown type": (lambda st, s: st.save_memory_atom(s.session_id, "alice", "opinion", {}), "memory_type"),
    "atom type None": (lambda st, s: st.save_memory_atom(s.session_id, "alice", None, {}), "memory_type"),
    "atom reserved type": (lambda st, s: st.save_memory_atom(s.session_id, "alice", "session_metadata", {}),
                           "reserved"),
    "atom content str": (lambda st, s: st.save_memory_atom(s.session_id, "alice", "log", "text"), "content"),
    "atom content list": (lambda st, s: st.save_memory_atom(s.session_id, "alice", "log", [1]), "content"),
    "atom content None": (lambda st, s: st.save_memory_atom(s.session_id, "alice", "log", None), "content"),
    "atom content NUL": (lambda st, s: st.save_memory_atom(s.session_id, "alice", "log", {"a": ["\x00"]}),
                         r"content\['a'\]\[0\]"),
    "atom content inf": (lambda st, s: st.save_memory_atom(s.session_id, "alice", "log", {"a": float("inf")}),
                         "content"),
    "atom long string": (lambda st, s: st.save_memory_atom(s.session_id, "alice", "log", {"a": LONG_TEXT}),
                         "limit"),
    "atom metadata str": (lambda st, s: st.save_memory_atom(s.session_id, "alice", "log", {}, "meta"), "metadata"),
    "atom metadata set": (lambda st, s: st.save_memory_atom(s.session_id, "alice", "log", {}, {"a": {1, 2}}),
                          "metadata"),
    "query limit 0": (lambda st, s: st.query_memory_atoms(limit=0), "limit"),
    "query limit negative": (lambda st, s: st.query_memory_atoms(limit=-5), "limit"),
    "query limit str": (lambda st, s: st.query_memory_atoms(limit="10"), "limit"),
    "query limit float": (lambda st, s: st.query_memory_atoms(limit=2.5), "limit"),
    "query limit bool": (lambda st, s: st.query_memory_atoms(limit=True), "limit"),
    "query limit None": (lambda st, s: st.query_memory_atoms(limit=None), "limit"),
    "query unknown type": (lambda st, s: st.query_memory_atoms(memory_type="opinion"), "memory_type"),
})

ALL_CASES = {**{f"save: {k}": (lambda st, s, make=make: st.save_session(make(s)), match)
                for k, (make, match) in SAVE_CASES.items()},
             **OTHER_CASES}


@pytest.fixture
def saved(storage) -> Session:
    session = Session("alice", metadata={"topic": "valves"})
    session.add_message("user", "hello")
    storage.save_session(session)
    storage.save_memory_atom(session.session_id, "alice", "context", {"k": "v"})
    return session


@pytest.mark.parametrize("case", list(ALL_CASES), ids=list(ALL_CASES))
def test_bad_input_raises_value_error_and_writes_nothing(storage, saved, case):
    call, match = ALL_CASES[case]
    before = fingerprint(storage)
    with pytest.raises(ValueError, match=match) as info:
        call(storage, saved)
    assert isinstance(info.value, InvalidInputError)
    assert fingerprint(storage) == before
    assert storage.load_session(saved.session_id) == saved


@pytest.mark.parametrize("case", list(ALL_CASES), ids=list(ALL_CASES))
def test_bad_input_is_refused_before_any_database_use(case):
    storage = PostgresMemoryStorage()  # no DatabaseManager yet: one would be created on first database use
    call, match = ALL_CASES[case]
    session = Session("alice", session_id="s-1", messages=[{"role": "user", "content": "hello"}])
    with pytest.raises(InvalidInputError, match=match):
        call(storage, session)
    assert storage._db is None


@pytest.mark.parametrize("kwargs, match", [
    ({"user_id": ""}, "user_id"),
    ({"user_id": None}, "user_id"),
    ({"user_id": "u", "session_id": " "}, "session_id"),
    ({"user_id": "u", "messages": [{"role": "bot", "content": "x"}]}, r"messages\[0\].role"),
    ({"user_id": "u", "messages": [{"role": "user", "content": 1}]}, r"messages\[0\].content"),
    ({"user_id": "u", "messages": "abc"}, "messages"),
    ({"user_id": "u", "metadata": {"a": "\x00"}}, "metadata"),
    ({"user_id": "u", "created_at": datetime(2025, 1, 1)}, "created_at"),  # noqa: DTZ001 - naive on purpose
])
def test_session_constructor_refuses_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Session(**kwargs)


def test_add_message_refuses_bad_role_and_content():
    session = Session("u")
    with pytest.raises(ValueError, match="role"):
        session.add_message("robot", "x")
    with pytest.raises(ValueError, match="content"):
        session.add_message("user", None)  # type: ignore[arg-type]
    assert session.messages == []


@pytest.mark.parametrize("message", [
    {"role": "user", "content": "plain"}, {"role": "assistant", "content": "", "metadata": None},
    {"role": "system", "content": "with metadata", "metadata": {"a": [1, 2.5, None, {"b": True}]}},
    {"role": "user", "content": "Héllo ✓"}, {"role": "user", "content": "x", "timestamp": "2025-01-02T03:04:05+00:00"},
])
def test_a_dict_message_validates_to_what_coerce_message_makes_of_it(message):
    from agent_factory.memory.base import prepare_messages
    from agent_factory.memory.session import coerce_message

    got = prepare_messages("s", [message], "messages")
    want = coerce_message(message)
    assert (got.memory_types, got.contents, got.metadata) == ([want.memory_type], [want.content], [want.metadata])
    if "timestamp" in message:
        assert got.timestamps == [want.timestamp]
