"""KnowledgeBase with embeddings on real servers: semantic and hybrid search, reindex, bad vectors, sync.

The local providers mix PostgreSQL 16 with pgvector (neon, railway) and Debian's
PostgreSQL 15 without it (supabase). The embedder is the deterministic
`HashingEmbeddings`: its synonyms make "car" and "automobile" the same token, so
an atom about automobiles is near a query about cars while sharing no word with it.
"""

from __future__ import annotations

import re

import pytest

from agent_factory.memory import InvalidInputError, KnowledgeAtom, KnowledgeBase
from agent_factory.replication import sync_pair
from tests.integrations.embedder import HashingEmbeddings

SYNONYMS = {"car": "automobile", "cars": "automobile", "automobiles": "automobile"}


class SynonymEmbeddings(HashingEmbeddings):
    """`HashingEmbeddings` that counts synonyms as one word, as a real model places them near each other."""

    def _embed(self, text: str) -> list[float]:
        return super()._embed(" ".join(SYNONYMS.get(w, w) for w in re.findall(r"[a-z0-9]+", text.lower())))


def embedder() -> HashingEmbeddings:
    return SynonymEmbeddings(dims=64)


def atom(atom_id: str, title: str, content: str, **fields) -> KnowledgeAtom:
    return KnowledgeAtom(atom_id, fields.pop("atom_type", "concept"), title, content, **fields)


ATOMS = [
    atom("servicing", "Automobile servicing", "Change the automobile oil every year."),
    atom("parking", "Car parks", "Where to leave a car in town.", atom_type="reference"),
    atom("relay", "Relay wiring", "Terminal layout of the control relay."),
]


@pytest.fixture
def kb(db) -> KnowledgeBase:
    return KnowledgeBase(db, embed=embedder())


def embeddings_on(db, provider: str) -> dict[str, int | None]:
    with db.provider_connection(provider) as conn:
        rows = conn.execute("SELECT atom_id, vector_dims(embedding) FROM knowledge_atoms").fetchall()
    return dict(rows)


def test_hybrid_search_finds_the_atom_a_text_search_misses(kb):
    kb.upsert_many(ATOMS)
    text = kb.search("car", mode="text")
    assert [a.atom_id for a in text] == ["parking"]
    assert text[0].matched_by == "text"

    hybrid = kb.search("car", mode="hybrid")
    found = {a.atom_id: a for a in hybrid}
    assert found["servicing"].matched_by == "semantic"  # no word in common: only the embedding finds it
    assert found["parking"].matched_by == "both"
    # Reciprocal rank fusion, k=60, of the two rankings each search gives alone.
    by_text = [a.atom_id for a in kb.search("car", mode="text")]
    by_meaning = [a.atom_id for a in kb.search("car", mode="semantic")]
    fused = {atom_id: sum(1 / (60 + ranking.index(atom_id) + 1) for ranking in (by_text, by_meaning)
                          if atom_id in ranking) for atom_id in {*by_text, *by_meaning}}
    assert {a.atom_id: a.rank for a in hybrid} == pytest.approx(fused, rel=1e-5)
    assert [a.atom_id for a in hybrid] == sorted(fused, key=lambda i: (-fused[i], i))
    assert hybrid[0].atom_id == "parking"  # found by both rankings: the greatest fused score
    assert kb.search("car") == hybrid  # auto: hybrid, as the embedder is set and neon has pgvector


def test_semantic_search_ranks_by_cosine_similarity(kb):
    kb.upsert_many(ATOMS)
    results = kb.search("automobiles", mode="semantic")
    assert {a.atom_id for a in results[:2]} == {"servicing", "parking"} and results[2].atom_id == "relay"
    assert all(a.matched_by == "semantic" for a in results)
    assert 1 >= results[0].rank >= results[1].rank > results[2].rank  # cosine similarity, best first
    assert [a.atom_id for a in kb.search("automobiles", mode="semantic", limit=2)] == [a.atom_id for a in results[:2]]
    assert [a.atom_id for a in kb.search("car", mode="semantic", atom_type="reference")] == ["parking"]


def test_without_an_embedder_search_is_text_and_semantic_modes_are_refused(db):
    kb = KnowledgeBase(db)
    kb.upsert_many(ATOMS)
    assert [(a.atom_id, a.matched_by) for a in kb.search("car")] == [("parking", "text")]
    for mode in ("semantic", "hybrid"):
        with pytest.raises(InvalidInputError, match="needs an embedder"):
            kb.search("car", mode=mode)
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        kb.search("car", mode="fuzzy")


def test_a_vector_of_the_wrong_size_writes_nothing(db):
    with pytest.raises(InvalidInputError, match="64 dimensions; expected 32"):
        KnowledgeBase(db, embed=embedder(), dims=32).upsert(ATOMS[0])
    with pytest.raises(InvalidInputError, match="returned 1 vectors for 3 texts"):
        KnowledgeBase(db, embed=lambda texts: [[1.0, 0.0]]).upsert_many(ATOMS)
    with pytest.raises(InvalidInputError, match="not a finite number"):
        KnowledgeBase(db, embed=lambda texts: [[float("nan")] * 4 for _ in texts]).upsert(ATOMS[0])
    assert KnowledgeBase(db).count() == 0
    with pytest.raises(InvalidInputError, match="embed must be a callable"):
        KnowledgeBase(db, embed="text-embedding-3-small")  # type: ignore[arg-type]


def test_a_plain_callable_embeds_like_an_embeddings_object(db):
    model = embedder()
    kb = KnowledgeBase(db, embed=model.embed_documents)
    kb.upsert_many(ATOMS)
    assert kb.search("car", mode="semantic", limit=1)[0].atom_id in {"servicing", "parking"}
    assert set(embeddings_on(db, "neon").values()) == {64}


def test_reindex_fills_in_missing_embeddings_in_batches(db, kb):
    KnowledgeBase(db).upsert_many([*ATOMS, *(atom(f"extra-{i}", f"Extra {i}", "Filler.") for i in range(4))])
    assert set(embeddings_on(db, "neon").values()) == {None}
    assert kb.reindex(batch_size=2) == 7
    assert set(embeddings_on(db, "neon").values()) == {64}
    assert kb.reindex() == 0
    assert kb.search("car", mode="hybrid")[0].atom_id == "parking"
    with pytest.raises(InvalidInputError, match="reindex needs an embedder"):
        KnowledgeBase(db).reindex()


def test_an_edit_without_an_embedder_drops_the_stale_embedding_and_an_unchanged_one_keeps_it(db, kb):
    kb.upsert_many(ATOMS)
    plain = KnowledgeBase(db)
    plain.upsert(ATOMS[0])  # same data: nothing written
    plain.upsert(atom("relay", "Relay wiring", "A new text."))
    assert embeddings_on(db, "neon") == {"servicing": 64, "parking": 64, "relay": None}
    assert kb.reindex() == 1


def test_sync_carries_embeddings_where_pgvector_is_and_skips_them_where_it_is_not(db, kb):
    kb.upsert_many(ATOMS)
    assert sync_pair(db, "neon", "railway").ok
    assert sync_pair(db, "neon", "supabase").ok
    assert embeddings_on(db, "railway") == {"servicing": 64, "parking": 64, "relay": 64}
    with db.provider_connection("supabase") as conn:
        assert conn.execute("SELECT count(*) FROM knowledge_atoms").fetchone()[0] == 3

    # An atom edited on supabase (no pgvector) comes back to neon without its stale embedding.
    with db.provider_connection("supabase") as conn:
        conn.execute("UPDATE knowledge_atoms SET content = 'Edited.', updated_at = clock_timestamp(), "
                     "write_id = gen_random_uuid() WHERE atom_id = 'relay'")
        conn.commit()
    assert sync_pair(db, "supabase", "neon").ok
    assert embeddings_on(db, "neon")["relay"] is None
    assert kb.get("relay").content == "Edited."
