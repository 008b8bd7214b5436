"""KnowledgeBase on real servers: idempotent upserts, count, ranked search, soft delete, bad input."""

from __future__ import annotations

import pytest

from agent_factory.memory import InvalidInputError, KnowledgeAtom, KnowledgeBase
from agent_factory.memory.ids import atom_row_id


def atom(atom_id: str, **fields) -> KnowledgeAtom:
    values = {"atom_type": "concept", "title": f"Title {atom_id}", "content": "Plain content."}
    values.update(fields)
    return KnowledgeAtom(atom_id, **values)


@pytest.fixture
def kb(db) -> KnowledgeBase:
    return KnowledgeBase(db)


def test_upsert_is_idempotent_and_get_round_trips(kb, db):
    original = atom("a-1", atom_type="procedure", summary="How to reset.", manufacturer="ABB",
                    keywords=["reset", "drive"], source_url="https://example.com/a-1", quality_score=0.75)
    assert kb.upsert(original) == "a-1"
    first = kb.get("a-1")
    assert kb.upsert(original) == "a-1"
    second = kb.get("a-1")
    assert kb.count() == 1
    assert first == second == original
    assert second.updated_at == first.updated_at  # an unchanged upsert writes nothing
    assert db.execute_query("SELECT id FROM knowledge_atoms", fetch_mode="one")[0] == atom_row_id("a-1")

    changed = atom("a-1", atom_type="procedure", title="New title")
    kb.upsert(changed)
    assert kb.get("a-1") == changed
    assert kb.count() == 1


def test_upsert_many_in_one_go_last_duplicate_wins(kb):
    written = kb.upsert_many([atom("a"), {"atom_id": "b", "atom_type": "fault", "title": "B", "content": "b"},
                              atom("a", title="A again")])
    assert written == 2
    assert kb.count() == 2
    assert kb.get("a").title == "A again"
    assert kb.count("fault") == 1 and kb.count("concept") == 1 and kb.count("pattern") == 0
    assert kb.upsert_many([]) == 0


def test_upsert_many_with_one_bad_atom_writes_none(kb):
    with pytest.raises(ValueError, match=r"atoms\[1\].atom_type"):
        kb.upsert_many([atom("good"), atom("bad", atom_type="rumour")])
    assert kb.count() == 0


def test_search_ranks_a_title_match_above_a_content_only_match(kb):
    kb.upsert_many([
        atom("content-only", title="Drive maintenance", content="Check the pump for cavitation noise."),
        atom("title", title="Pump cavitation", content="Bubbles collapse near the impeller."),
        atom("unrelated", title="Relay wiring", content="Terminal layout."),
    ])
    hits = kb.search("pump cavitation")
    assert [h.atom_id for h in hits] == ["title", "content-only"]
    assert hits[0].rank > hits[1].rank > 0
    assert [h.atom_id for h in kb.search("pump", limit=1)] == ["title"]
    assert kb.search("pump", atom_type="fault") == []
    assert kb.search("the and of") == []  # stop words only
    assert {h.atom_id for h in kb.search('"relay wiring" or impeller')} == {"title", "unrelated"}
    assert [h.atom_id for h in kb.search("pump -cavitation")] == []


def test_delete_is_soft_and_upsert_brings_it_back(kb, db):
    kb.upsert(atom("gone", title="Pump seal"))
    assert kb.delete("gone") is True
    assert kb.delete("gone") is False
    assert kb.get("gone") is None
    assert kb.count() == 0
    assert kb.search("pump seal") == []
    assert db.execute_query("SELECT count(*) FROM knowledge_atoms", fetch_mode="one")[0] == 1
    kb.upsert(atom("gone", title="Pump seal"))
    assert kb.get("gone") is not None


def test_get_of_unknown_atom_is_none(kb):
    assert kb.get("missing") is None


@pytest.mark.parametrize("call, match", [
    (lambda kb: kb.upsert(atom("x", atom_type="rumour")), "atom.atom_type"),
    (lambda kb: kb.upsert(atom("", title="t")), "atom.atom_id"),
    (lambda kb: kb.upsert(atom("x" * 256)), "atom.atom_id"),
    (lambda kb: kb.upsert(atom("x", title="")), "atom.title"),
    (lambda kb: kb.upsert(atom("x", title="a\x00b")), "atom.title"),
    (lambda kb: kb.upsert(atom("x", content=None)), "atom.content"),
    (lambda kb: kb.upsert(atom("x", quality_score=1.5)), "quality_score"),
    (lambda kb: kb.upsert(atom("x", quality_score=float("nan"))), "quality_score"),
    (lambda kb: kb.upsert(atom("x", keywords="pump")), "keywords"),
    (lambda kb: kb.upsert(atom("x", keywords=["ok", "\x00"])), r"keywords\[1\]"),
    (lambda kb: kb.upsert({"atom_id": "x", "atom_type": "concept", "title": "t"}), "missing content"),
    (lambda kb: kb.upsert({"atom_id": "x", "atom_type": "concept", "title": "t", "content": "c", "colour": 1}),
     "unknown keys"),
    (lambda kb: kb.upsert("not an atom"), "atom must be"),
    (lambda kb: kb.upsert_many(atom("x")), "atoms must be a list"),
    (lambda kb: kb.get(""), "atom_id"),
    (lambda kb: kb.delete(None), "atom_id"),
    (lambda kb: kb.count("rumour"), "atom_type"),
    (lambda kb: kb.search(""), "query"),
    (lambda kb: kb.search("pump\x00"), "query"),
    (lambda kb: kb.search("pump", limit=0), "limit"),
    (lambda kb: kb.search("pump", atom_type="rumour"), "atom_type"),
])
def test_bad_input_raises_before_any_sql(call, match):
    kb = KnowledgeBase()  # no DatabaseManager: any database use would create one
    with pytest.raises(InvalidInputError, match=match):
        call(kb)
    assert kb._db is None
