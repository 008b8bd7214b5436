"""The memory contract: every test runs on InMemoryStorage and on PostgresMemoryStorage (real servers)."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from agent_factory.memory import InvalidInputError, Message, Session, SessionNotFoundError, SessionOwnerError

from agent_factory.memory.base import prepare_messages, prepare_session
from agent_factory.memory.ids import new_stamp

from .conftest import fingerprint, make_rows_newer, stored_rows


def conversation(user_id: str = "alice", count: int = 3, **kwargs) -> Session:
    session = Session(user_id, **kwargs)
    for i in range(count):
        session.add_message(("user", "assistant", "system")[i % 3], f"message {i}", {"turn": i} if i % 2 else None)
    return session


def test_round_trip_keeps_everything(storage):
    session = Session("alice", metadata={"topic": "pumps", "tags": ["a", "b"], "nested": {"x": 1.5, "y": None}})
    session.add_message("system", "You are helpful.")
    session.add_message("user", "Héllo ✓ 日本語 🚀", {"lang": "mixed"})
    session.messages.append(Message("assistant", "Hi!", {"tokens": 3}))
    session.messages.append({"role": "user", "content": "a dict message", "metadata": {"via": "dict"},  # type: ignore[arg-type]
                             "timestamp": datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))})
    storage.save_session(session)

    loaded = storage.load_session(session.session_id)
    assert loaded is not None
    expected = Session(session.user_id, session.session_id, session.messages, session.metadata,
                       session.created_at, session.last_active)
    assert loaded == expected
    assert all(isinstance(m, Message) for m in loaded.messages)
    assert loaded.messages[3].content == "a dict message"
    assert loaded.created_at.utcoffset() is not None and loaded.last_active.utcoffset() is not None


def test_load_of_unknown_session_is_none(storage):
    assert storage.load_session("no-such-session") is None


def test_saving_twice_never_duplicates_and_writes_nothing_new(storage):
    session = conversation(count=5)
    storage.save_session(session)
    before = storage.query_memory_atoms(session_id=session.session_id)
    storage.save_session(session)
    storage.save_session(session)
    after = storage.query_memory_atoms(session_id=session.session_id)
    assert after == before  # same rows, same updated_at: an unchanged save writes nothing
    assert stored_rows(storage, session.session_id) == [(None, "session_metadata", False)] + [
        (i, f"message_{('user', 'assistant', 'system')[i % 3]}", False) for i in range(5)
    ]
    assert storage.load_session(session.session_id) == session


def test_order_of_200_messages_is_preserved(storage):
    session = Session("bob")
    for i in range(200):
        session.add_message("user" if i % 2 == 0 else "assistant", f"#{i:03d}")
    storage.save_session(session)
    loaded = storage.load_session(session.session_id)
    assert [m.content for m in loaded.messages] == [f"#{i:03d}" for i in range(200)]
    assert [m.role for m in loaded.messages] == ["user" if i % 2 == 0 else "assistant" for i in range(200)]


def test_changed_messages_are_updated_and_removed_ones_soft_deleted(storage):
    session = conversation(count=5)
    storage.save_session(session)
    session.messages[1].content = "edited"
    del session.messages[3:]
    storage.save_session(session)

    loaded = storage.load_session(session.session_id)
    assert [m.content for m in loaded.messages] == ["message 0", "edited", "message 2"]
    rows = stored_rows(storage, session.session_id)
    assert [r for r in rows if r[2]] == [(3, "message_user", True), (4, "message_assistant", True)]
    live = storage.query_memory_atoms(session_id=session.session_id)
    assert sorted(a.message_index for a in live if a.message_index is not None) == [0, 1, 2]

    session.add_message("assistant", "back at position 3")
    storage.save_session(session)
    loaded = storage.load_session(session.session_id)
    assert [m.content for m in loaded.messages][-1] == "back at position 3"
    assert len(stored_rows(storage, session.session_id)) == 7  # a new message is a new row; tombstones stay


def test_messages_get_time_ordered_ids_that_they_keep(storage):
    session = conversation(count=3)
    assert all(m.id is None for m in session.messages)
    storage.save_session(session)
    ids = [m.id for m in session.messages]  # given by the save, on the caller's messages
    assert all(uuid.UUID(i).version == 7 for i in ids) and ids == sorted(ids)
    loaded = storage.load_session(session.session_id)
    assert [m.id for m in loaded.messages] == ids
    loaded.add_message("user", "fourth")
    storage.save_session(loaded)
    reloaded = storage.load_session(session.session_id)
    assert [m.id for m in reloaded.messages][:3] == ids and reloaded.messages[3].id > ids[2]
    assert len(stored_rows(storage, session.session_id)) == 5  # nothing rewritten under a new id


def test_moved_or_repeated_messages_get_new_ids_and_keep_the_list_order(storage):
    session = conversation(count=3)
    storage.save_session(session)
    first = session.messages[0]
    session.messages = [session.messages[2], session.messages[1], first, first]
    storage.save_session(session)
    loaded = storage.load_session(session.session_id)
    assert [m.content for m in loaded.messages] == ["message 2", "message 1", "message 0", "message 0"]
    assert len({m.id for m in loaded.messages}) == 4


def test_the_same_messages_saved_into_two_sessions_are_separate_rows(storage):
    source = conversation(count=3)
    storage.save_session(source)
    copy = Session("bob", messages=storage.load_session(source.session_id).messages)
    storage.save_session(copy)
    copy.messages[0].content = "changed in the copy"
    storage.save_session(copy)
    assert [m.content for m in storage.load_session(source.session_id).messages] == [
        "message 0", "message 1", "message 2"]
    assert [m.content for m in storage.load_session(copy.session_id).messages] == [
        "changed in the copy", "message 1", "message 2"]
    rows = storage.query_memory_atoms(session_id=copy.session_id)
    assert {a.id for a in rows}.isdisjoint(a.id for a in storage.query_memory_atoms(session_id=source.session_id))


def test_a_message_id_that_is_not_a_uuid_is_refused(storage):
    session = conversation(count=1)
    session.messages[0].id = "not-a-uuid"
    before = fingerprint(storage)
    with pytest.raises(ValueError, match=r"session\.messages\[0\]\.id"):
        storage.save_session(session)
    assert fingerprint(storage) == before


def test_append_messages_adds_after_the_last_in_order(storage):
    session = conversation(count=2)
    storage.save_session(session)
    total = storage.append_messages(session.session_id, [
        {"role": "user", "content": "third"},
        Message("assistant", "fourth", {"k": "v"}),
        {"role": "system", "content": "fifth", "metadata": {"n": 5}},
    ])
    assert total == 5
    assert storage.append_messages(session.session_id, [{"role": "user", "content": "sixth"}]) == 6
    loaded = storage.load_session(session.session_id)
    assert [m.content for m in loaded.messages] == ["message 0", "message 1", "third", "fourth", "fifth", "sixth"]
    assert loaded.messages[3].metadata == {"k": "v"}
    assert loaded.last_active >= session.last_active
    assert [s.message_count for s in storage.list_sessions("alice")] == [6]


def test_append_after_a_shortening_save_continues_after_the_last_live_message(storage):
    session = conversation(count=4)
    storage.save_session(session)
    del session.messages[2:]
    storage.save_session(session)
    assert storage.append_messages(session.session_id, [{"role": "user", "content": "new third"}]) == 3
    assert [m.content for m in storage.load_session(session.session_id).messages] == [
        "message 0", "message 1", "new third"]


def test_append_to_a_missing_or_deleted_session_raises_and_writes_nothing(storage):
    before = fingerprint(storage)
    with pytest.raises(SessionNotFoundError, match="nope"):
        storage.append_messages("nope", [{"role": "user", "content": "x"}])
    assert fingerprint(storage) == before

    session = conversation()
    storage.save_session(session)
    storage.delete_session(session.session_id)
    before = fingerprint(storage)
    with pytest.raises(LookupError):
        storage.append_messages(session.session_id, [{"role": "user", "content": "x"}])
    assert fingerprint(storage) == before


def test_append_with_one_bad_message_appends_none(storage):
    session = conversation(count=2)
    storage.save_session(session)
    before = fingerprint(storage)
    with pytest.raises(ValueError, match=r"messages\[1\]\.role"):
        storage.append_messages(session.session_id, [{"role": "user", "content": "fine"},
                                                     {"role": "robot", "content": "bad"}])
    assert fingerprint(storage) == before
    assert len(storage.load_session(session.session_id).messages) == 2


def test_delete_then_load_is_none_and_resave_brings_it_back(storage):
    session = conversation(count=3)
    storage.save_session(session)
    atom_id = storage.save_memory_atom(session.session_id, "alice", "decision", {"choice": "A"})

    assert storage.delete_session(session.session_id) is True
    assert storage.load_session(session.session_id) is None
    assert storage.delete_session(session.session_id) is False
    assert storage.list_sessions() == []
    assert storage.query_memory_atoms(session_id=session.session_id) == []
    assert all(deleted for _, _, deleted in stored_rows(storage, session.session_id))  # soft: rows kept

    del session.messages[2:]
    storage.save_session(session)
    loaded = storage.load_session(session.session_id)
    assert loaded == session
    live = storage.query_memory_atoms(session_id=session.session_id)
    assert atom_id not in {a.id for a in live}  # its atoms stay deleted
    assert sorted(a.message_index for a in live if a.message_index is not None) == [0, 1]


def test_delete_of_unknown_session_is_false(storage):
    assert storage.delete_session("never-saved") is False


def test_list_sessions_filters_by_user_and_orders_by_last_active(storage):
    now = datetime.now(timezone.utc)
    old = Session("alice", created_at=now - timedelta(hours=2), last_active=now - timedelta(hours=1))
    new = Session("alice", metadata={"title": "latest"}, created_at=now - timedelta(minutes=5), last_active=now)
    other = Session("bob", last_active=now - timedelta(minutes=30))
    for s in (old, new, other):
        storage.save_session(s)
    new.add_message("user", "hi")
    storage.save_session(new)

    summaries = storage.list_sessions("alice")
    assert [s.session_id for s in summaries] == [new.session_id, old.session_id]
    assert summaries[0].message_count == 1 and summaries[0].metadata == {"title": "latest"}
    assert summaries[0].created_at == new.created_at and summaries[0].last_active == new.last_active
    assert [s.session_id for s in storage.list_sessions()] == [new.session_id, other.session_id, old.session_id]
    assert storage.list_sessions("carol") == []


def test_list_sessions_pages_by_key_without_skips_or_repeats(storage):
    now = datetime.now(timezone.utc)
    made = []
    for i in range(25):  # groups of sessions share a last_active: ties are ordered by session id
        session = Session("alice" if i % 5 else "bob", session_id=f"s-{i:02d}",
                          last_active=now - timedelta(minutes=i // 3))
        storage.save_session(session)
        made.append(session)
    everything = storage.list_sessions(limit=1000)
    assert [(s.last_active, s.session_id) for s in everything] == sorted(
        ((s.last_active, s.session_id) for s in made), reverse=True)
    pages, before = [], None
    while True:
        page = storage.list_sessions(limit=10, before=before)
        if not page:
            break
        pages.append(page)
        before = page[-1]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [s for p in pages for s in p] == everything
    alice = storage.list_sessions("alice", limit=7)
    assert alice == [s for s in everything if s.user_id == "alice"][:7]
    assert storage.list_sessions("alice", limit=7, before=alice[-1]) == [
        s for s in everything if s.user_id == "alice"][7:14]
    assert len(storage.list_sessions()) == 25  # the default limit is 100
    with pytest.raises(ValueError, match="before"):
        storage.list_sessions(before="s-03")


def test_list_sessions_orders_by_the_instant_within_a_minute_and_across_pages(storage):
    """Several sessions active in each minute, pages ending inside a minute: the order is last_active's."""
    start = datetime(2026, 12, 5, 12, 0, 50, 123456, tzinfo=timezone.utc)
    made = [Session("alice", session_id=f"m-{i:02d}", last_active=start + timedelta(seconds=13 * i))
            for i in (7, 2, 11, 0, 5, 9, 1, 10, 3, 8, 6, 4)]
    for session in made:
        storage.save_session(session)
    expected = sorted(made, key=lambda s: s.last_active, reverse=True)
    pages, before = [], None
    while page := storage.list_sessions("alice", limit=5, before=before):
        pages.append([s.session_id for s in page])
        before = page[-1]
    assert pages == [[s.session_id for s in expected[i:i + 5]] for i in (0, 5, 10)]


def test_a_session_owner_never_changes_and_a_refused_save_writes_nothing(storage):
    session = conversation("alice", count=2)
    storage.save_session(session)
    before = fingerprint(storage)
    hijack = conversation("bob", count=1, session_id=session.session_id)
    with pytest.raises(SessionOwnerError, match=f"session '{session.session_id}' belongs to another user, "
                                                "not to user_id 'bob'") as info:
        storage.save_session(hijack)
    assert isinstance(info.value, InvalidInputError) and "alice" not in str(info.value)
    assert fingerprint(storage) == before
    assert storage.load_session(session.session_id) == session
    assert storage.delete_session(session.session_id) is True
    after_delete = fingerprint(storage)
    with pytest.raises(SessionOwnerError):
        storage.save_session(hijack)  # a deleted session still has its owner
    assert fingerprint(storage) == after_delete
    storage.save_session(session)  # its owner may bring it back
    assert storage.load_session(session.session_id) == session


def test_memory_atoms_must_name_the_session_owner(storage):
    session = conversation("alice", count=1)
    storage.save_session(session)
    before = fingerprint(storage)
    with pytest.raises(SessionOwnerError, match="not to user_id 'bob'"):
        storage.save_memory_atom(session.session_id, "bob", "context", {"n": 1})
    assert fingerprint(storage) == before
    atom_id = storage.save_memory_atom(session.session_id, "alice", "context", {"n": 1})
    assert [a.id for a in storage.query_memory_atoms(memory_type="context")] == [atom_id]
    storage.save_memory_atom("not-stored-here", "bob", "context", {"n": 2})  # no session: nothing to own it


def test_a_tombstone_of_a_session_never_here_has_no_owner(storage):
    storage.delete_session("elsewhere")
    storage.save_memory_atom("elsewhere", "carol", "log", {"n": 1})
    session = conversation("carol", count=1, session_id="elsewhere")
    storage.save_session(session)
    assert storage.load_session("elsewhere") == session


def test_memory_atoms_filters_limit_and_newest_first(storage):
    ids = []
    for i, (sid, uid, kind) in enumerate([("s1", "alice", "context"), ("s1", "alice", "decision"),
                                          ("s2", "alice", "context"), ("s3", "bob", "log"),
                                          ("s3", "bob", "context")]):
        ids.append(storage.save_memory_atom(sid, uid, kind, {"n": i}, {"source": "test"} if i == 0 else None))
        time.sleep(0.002)  # distinct created_at on both storages

    every = storage.query_memory_atoms()
    assert [a.id for a in every] == ids[::-1]
    assert every[-1].content == {"n": 0} and every[-1].metadata == {"source": "test"}
    assert every[0].metadata == {} and every[0].message_index is None
    assert [a.content["n"] for a in storage.query_memory_atoms(session_id="s1")] == [1, 0]
    assert [a.content["n"] for a in storage.query_memory_atoms(user_id="bob")] == [4, 3]
    assert [a.content["n"] for a in storage.query_memory_atoms(memory_type="context")] == [4, 2, 0]
    assert [a.content["n"] for a in storage.query_memory_atoms(user_id="alice", memory_type="context")] == [2, 0]
    assert [a.content["n"] for a in storage.query_memory_atoms(session_id="s3", user_id="alice")] == []
    assert [a.content["n"] for a in storage.query_memory_atoms(limit=2)] == [4, 3]
    assert storage.query_memory_atoms(limit=1)[0].id == ids[-1]


def test_messages_are_memory_rows_too(storage):
    session = conversation(count=3)
    storage.save_session(session)
    rows = storage.query_memory_atoms(session_id=session.session_id)
    assert [(a.memory_type, a.message_index) for a in rows] == [
        ("message_system", 2), ("message_assistant", 1), ("message_user", 0), ("session_metadata", None)]
    assert rows[0].content == {"role": "system", "content": "message 2"}
    assert rows[0].created_at == session.messages[2].timestamp
    users = storage.query_memory_atoms(session_id=session.session_id, memory_type="message_user")
    assert [a.content["content"] for a in users] == ["message 0"]


def test_atoms_with_a_message_type_stay_out_of_the_session(storage):
    session = conversation(count=1)
    storage.save_session(session)
    storage.save_memory_atom(session.session_id, "alice", "message_user", {"note": "not a turn"})
    assert len(storage.load_session(session.session_id).messages) == 1


def test_context_manager_closes(storage):
    with storage as same:
        assert same is storage


def test_a_save_or_delete_older_than_the_stored_session_changes_nothing(storage):
    session = conversation(count=2)
    storage.save_session(session)
    make_rows_newer(storage, datetime(2100, 1, 1, tzinfo=timezone.utc))  # another writer, with a later clock
    before = fingerprint(storage)
    session.metadata = {"stale": True}
    session.messages[0].content = "stale edit"
    del session.messages[1]
    storage.save_session(session)
    assert storage.delete_session(session.session_id) is False
    assert fingerprint(storage) == before
    loaded = storage.load_session(session.session_id)
    assert loaded.metadata == {} and [m.content for m in loaded.messages] == ["message 0", "message 1"]
    assert storage.append_messages(session.session_id, [{"role": "user", "content": "added"}]) == 3  # adds rows


def test_replayed_writes_write_the_same_rows(storage):
    session = conversation(count=3)
    prepared = prepare_session(session)
    storage._save_session(prepared)
    after_save = fingerprint(storage)
    storage._save_session(prepared)
    assert fingerprint(storage) == after_save
    batch = prepare_messages(session.session_id, [{"role": "user", "content": "once"}], "messages")
    stamp = new_stamp()
    assert storage._append_messages(session.session_id, batch, stamp) == 4
    after_append = fingerprint(storage)
    assert storage._append_messages(session.session_id, batch, stamp) == 4
    assert fingerprint(storage) == after_append
    delete_stamp = new_stamp()
    assert storage._delete_session(session.session_id, delete_stamp) is True
    after_delete = fingerprint(storage)
    assert storage._delete_session(session.session_id, delete_stamp) is False
    assert fingerprint(storage) == after_delete


def test_deleting_a_session_never_saved_here_leaves_a_tombstone_a_later_save_overrides(storage):
    assert storage.delete_session("elsewhere") is False
    assert [(i, t, d) for i, t, d in stored_rows(storage, "elsewhere")] == [(None, "session_metadata", True)]
    assert storage.list_sessions() == [] and storage.load_session("elsewhere") is None
    with pytest.raises(SessionNotFoundError):
        storage.append_messages("elsewhere", [{"role": "user", "content": "x"}])
    session = conversation(session_id="elsewhere", count=1)
    storage.save_session(session)
    assert storage.load_session("elsewhere") == session


def test_a_users_rows_are_found_by_user_and_type_their_messages_included(storage):
    carol, dave = f"carol-{uuid.uuid4().hex[:8]}", f"dave-{uuid.uuid4().hex[:8]}"
    first = Session(carol, messages=[Message("user", "a"), Message("assistant", "b")])
    second = Session(carol, messages=[Message("user", "c")])
    others = Session(dave, messages=[Message("user", "x")])
    for session in (first, second, others):
        storage.save_session(session)
    storage.save_memory_atom(first.session_id, carol, "decision", {"chosen": 1})
    storage.save_memory_atom(first.session_id, carol, "message_user", {"an": "atom of a message type"})

    rows = storage.query_memory_atoms(user_id=carol)
    assert sorted((r.memory_type, r.content.get("content", ""), r.message_index or 0) for r in rows) == [
        ("decision", "", 0), ("message_assistant", "b", 1), ("message_user", "", 0),
        ("message_user", "a", 0), ("message_user", "c", 0), ("session_metadata", "", 0), ("session_metadata", "", 0)]
    assert [r.created_at for r in rows] == sorted((r.created_at for r in rows), reverse=True)
    assert storage.query_memory_atoms(user_id=carol, limit=3) == rows[:3]
    typed = storage.query_memory_atoms(user_id=carol, memory_type="message_user")
    assert sorted((r.content.get("content", ""), r.message_index) for r in typed) == [("", None), ("a", 0), ("c", 0)]
    assert [r.memory_type for r in storage.query_memory_atoms(user_id=carol, memory_type="decision")] == ["decision"]
    everyone = {r.content.get("content") for r in storage.query_memory_atoms(memory_type="message_user", limit=1000)}
    assert {"a", "c", "x"} <= everyone
    assert [r.content["content"] for r in storage.query_memory_atoms(session_id=others.session_id)
            if r.memory_type == "message_user"] == ["x"]
