"""Knowledge search during a failover to a provider without pgvector: text results and a logged reason."""

from __future__ import annotations

import logging

from agent_factory.memory import KnowledgeAtom, KnowledgeBase
from agent_factory.replication import sync_pair
from tests.conftest import wait_for_failovers
from tests.memory.test_knowledge_semantic import ATOMS, embedder


def test_search_on_a_backup_without_pgvector_answers_with_text_and_logs_why(db, local, caplog):
    kb = KnowledgeBase(db, embed=embedder())
    kb.upsert_many(ATOMS)
    assert {a.matched_by for a in kb.search("car")} == {"both", "semantic"}  # neon: hybrid
    assert sync_pair(db, "neon", "supabase", margin_s=0).ok

    local.kill("neon")  # SIGKILL: the manager fails over to supabase, Debian's PostgreSQL 15 without pgvector
    with caplog.at_level(logging.WARNING, logger="agent_factory.memory.knowledge"):
        hybrid = kb.search("car")
        assert db.active_provider == "supabase"
        semantic = kb.search("car", mode="semantic")
    assert wait_for_failovers(db, 1)
    assert [(a.atom_id, a.matched_by) for a in hybrid] == [("parking", "text")]
    assert [(a.atom_id, a.matched_by) for a in semantic] == [("parking", "text")]
    warnings = [r.getMessage() for r in caplog.records if r.name == "agent_factory.memory.knowledge"]
    assert warnings == [
        "knowledge search (auto) served by provider supabase answers with text search only: pgvector missing there",
        "knowledge search (semantic) served by provider supabase answers with text search only: "
        "pgvector missing there",
    ]

    # Writes go on without embeddings; reindex there fills nothing and says why.
    kb.upsert(KnowledgeAtom("new", "concept", "New car", "Written during the failover."))
    with caplog.at_level(logging.WARNING, logger="agent_factory.memory.knowledge"):
        assert kb.reindex() == 0
    assert "knowledge reindex skipped on provider supabase: pgvector missing there" in caplog.text
    assert {a.atom_id for a in kb.search("car", mode="text")} == {"parking", "new"}
