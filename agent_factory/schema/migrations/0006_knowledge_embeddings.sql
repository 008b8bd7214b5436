-- 0006: embeddings of knowledge atoms, for semantic and hybrid search (agent_factory/memory/knowledge.py).
--
-- Only where the server has pgvector (the extension is enabled by `agent-factory local up`, or by the
-- provider's admin: CREATE EXTENSION vector): elsewhere the table keeps no embedding column and search
-- there is full-text only. The sync copies the column only between providers that both have it
-- (agent_factory/replication/tables.py, OPTIONAL_COLUMNS).
--
-- The column is an untyped `vector`: each atom's embedding keeps its model's size, so changing the
-- model needs no migration. An HNSW index needs a fixed size, so the index is an expression index
-- per size, partial on `vector_dims(embedding)`; searches use the same expression. This one serves
-- 1536 dimensions (the source system's vector(1536)); docs/INTEGRATIONS.md shows the statement that
-- adds one for another size.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
        ALTER TABLE knowledge_atoms ADD COLUMN IF NOT EXISTS embedding vector;
        CREATE INDEX IF NOT EXISTS knowledge_atoms_embedding_1536_idx ON knowledge_atoms
            USING hnsw ((embedding::vector(1536)) vector_cosine_ops)
            WHERE vector_dims(embedding) = 1536 AND deleted_at IS NULL;
    END IF;
END $$;
