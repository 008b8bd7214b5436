"""Backups carry embeddings to providers with pgvector and restore without them where it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_factory.core import DatabaseManager
from agent_factory.memory import KnowledgeBase
from agent_factory.ops.backup import backup
from agent_factory.ops.restore import restore
from tests.memory.test_knowledge_semantic import ATOMS, embedder


def embeddings(db: DatabaseManager, provider: str) -> dict[str, int | None] | None:
    """Return {atom_id: dims} on a provider, or None when it has no embedding column."""
    with db.provider_connection(provider) as conn:
        has_column = conn.execute("SELECT EXISTS (SELECT FROM pg_attribute WHERE attname = 'embedding' "
                                  "AND attrelid = 'knowledge_atoms'::regclass)").fetchone()[0]
        if not has_column:
            return {row[0]: None for row in conn.execute("SELECT atom_id FROM knowledge_atoms")} or None
        return dict(conn.execute("SELECT atom_id, vector_dims(embedding) FROM knowledge_atoms").fetchall())


@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_a_backup_with_embeddings_restores_with_them_or_without_them(db: DatabaseManager, tmp_path: Path,
                                                                      fmt: str) -> None:
    KnowledgeBase(db, embed=embedder()).upsert_many(ATOMS)
    [made] = backup(db, "neon", fmt=fmt, backup_dir=tmp_path)

    on_railway = restore(db, "railway", made.path, yes=True, backup_dir=tmp_path)  # PostgreSQL 16 with pgvector
    assert on_railway.status == "ok", on_railway.mismatches
    assert embeddings(db, "railway") == {"servicing": 64, "parking": 64, "relay": 64}

    on_supabase = restore(db, "supabase", made.path, yes=True, backup_dir=tmp_path)  # PostgreSQL 15 without
    assert on_supabase.status == "ok", on_supabase.mismatches
    assert "pgvector-only columns (no pgvector on the target)" in on_supabase.skipped
    assert embeddings(db, "supabase") == {"servicing": None, "parking": None, "relay": None}
