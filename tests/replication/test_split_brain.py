"""Split brain: two processes pinned to different providers write the same things; `sync --all` converges them."""

from __future__ import annotations

import pytest

from agent_factory.memory import KnowledgeBase, PostgresMemoryStorage, Session, Settings
from agent_factory.ops.sync import sync

from .conftest import empty, snapshot


# Each test runs twice: with the sync engine alone, and with the primary streaming into the backups too.
pytestmark = pytest.mark.usefixtures("streaming")


@pytest.fixture
def pinned(make_db, sdb):
    """Two managers with failover off, one on neon (the primary) and one on supabase."""
    left = make_db(DATABASE_FAILOVER_ENABLED="false")
    right = make_db(DATABASE_FAILOVER_ENABLED="false")
    right.set_provider("supabase")
    return left, right


def atom(atom_id: str, title: str) -> dict:
    return {"atom_id": atom_id, "atom_type": "concept", "title": title, "content": f"{title}: body"}


def test_split_brain_converges_to_identical_rows_on_every_provider(pinned, sdb):
    left, right = pinned
    ls, rs = PostgresMemoryStorage(left), PostgresMemoryStorage(right)
    lset, rset = Settings(left, ttl=0), Settings(right, ttl=0)
    lkb, rkb = KnowledgeBase(left), KnowledgeBase(right)

    # Before the split: the same session, settings and atoms everywhere.
    ls.save_session(Session("u1", session_id="shared", messages=[{"role": "user", "content": "before"}]))
    ls.save_session(Session("u1", session_id="doomed", messages=[{"role": "user", "content": "x"}]))
    lset.set("theme", "light")
    lset.set("retired", "yes")
    lkb.upsert(atom("a1", "Original"))
    assert sync(sdb, all_providers=True).ok

    # The split: each side writes the same things.
    ls.append_messages("shared", [{"role": "user", "content": "left 1"}])
    rs.append_messages("shared", [{"role": "assistant", "content": "right 1"}])
    rs.append_messages("shared", [{"role": "user", "content": "right 2"}])
    rs.save_session(Session("u2", session_id="right-only", messages=[{"role": "user", "content": "r"}]))
    lset.set("theme", "dark")          # left first ...
    rset.set("theme", "solarized")     # ... right later: right wins
    rset.delete("retired")             # deleted on one side only
    lkb.upsert(atom("a1", "Edited on the right"))
    lkb.upsert(atom("a1", "Edited on the left, later"))
    rkb.upsert(atom("a2", "Only on the right"))
    rs.delete_session("doomed")        # deleted on the right ...
    assert ls.load_session("doomed") is not None  # ... still there on the left, until the merge

    report = sync(sdb, all_providers=True)
    assert report.ok, report.summary()
    assert report.hub == "neon" and len(report.pairs) == 4
    assert report.conflicts_resolved >= 1

    # Every provider holds the same rows (all columns but the local changed_at).
    rows = {name: snapshot(sdb, name) for name in sdb.providers}
    assert rows["neon"] == rows["supabase"] == rows["railway"]

    # ... and they are the right ones, read through the API on each provider.
    for name in sdb.providers:
        db = left if name == "neon" else right
        db.set_provider(name)
        storage, settings, kb = PostgresMemoryStorage(db), Settings(db, ttl=0), KnowledgeBase(db)
        shared = storage.load_session("shared")
        assert shared is not None
        assert [m.content for m in shared.messages] == ["before", "left 1", "right 1", "right 2"]
        assert storage.load_session("doomed") is None
        assert storage.load_session("right-only") is not None
        assert settings.get("theme") == "solarized"
        assert settings.get("retired") is None
        assert kb.get("a1").title == "Edited on the left, later"
        assert kb.get("a2") is not None
        summaries = {s.session_id: s for s in storage.list_sessions()}
        assert summaries["shared"].message_count == 4

    # Idempotent: syncing again changes nothing.
    again = sync(sdb, all_providers=True)
    assert again.ok and again.rows_copied == 0
    assert {name: snapshot(sdb, name) for name in sdb.providers} == rows


def test_deleted_during_the_split_stays_deleted_after_more_writes(pinned, sdb):
    left, right = pinned
    ls, rs = PostgresMemoryStorage(left), PostgresMemoryStorage(right)
    ls.save_session(Session("u1", session_id="s", messages=[{"role": "user", "content": "m1"}]))
    assert sync(sdb, all_providers=True).ok
    rs.delete_session("s")
    assert sync(sdb, all_providers=True).ok
    assert ls.load_session("s") is None
    # An older copy written back from anywhere cannot bring it back: sync again from each side.
    for source, target in [("neon", "supabase"), ("supabase", "neon"), ("railway", "neon")]:
        assert sync(sdb, source, target).ok
    assert ls.load_session("s") is None and rs.load_session("s") is None
    empty(sdb)
