-- 0005: the LangGraph store (agent_factory.integrations.langgraph.AgentFactoryStore; docs/INTEGRATIONS.md, "Store").
--
-- langgraph_store: one row per (namespace, key). The id is derived from them on the
-- client (md5 of 'agent_factory/store/' || prefix || chr(31) || key, as a uuid; the
-- CHECK below holds every writer to it), so the same item written on two providers
-- is the same row and merges by last writer wins on (updated_at, write_id) like
-- every mergeable table (migration 0002). A delete, and an expiry, is a tombstone.
-- expires_at/ttl_minutes: TTL; a refresh on read moves expires_at without making a
-- new version (a read must never override a concurrent write elsewhere), so it stays
-- on the provider that served the read.
--
-- langgraph_store_vectors (only where pgvector is installed; agent_factory/vector.py):
-- one embedding per indexed field of an item version. A vector row carries the
-- item's (updated_at, write_id): search joins on write_id, so only the vectors of
-- the item's current version count, whichever order a sync brings them in. The
-- column has no fixed dimensions; the store makes a partial HNSW cosine index per
-- dimension count at first use (af_runtime_store_hnsw_<dims>, see
-- af_store_vector_index below).

CREATE TABLE langgraph_store (
    id          uuid PRIMARY KEY,
    prefix      text NOT NULL,
    key         text NOT NULL,
    value       jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    write_id    uuid NOT NULL DEFAULT gen_random_uuid(),
    deleted_at  timestamptz,
    expires_at  timestamptz,
    ttl_minutes double precision CHECK (ttl_minutes > 0),
    changed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT langgraph_store_id_check
        CHECK (id = md5('agent_factory/store/' || prefix || chr(31) || key)::uuid)
);
CREATE INDEX langgraph_store_prefix_idx ON langgraph_store (prefix text_pattern_ops) WHERE deleted_at IS NULL;
CREATE INDEX langgraph_store_expires_idx ON langgraph_store (expires_at) WHERE deleted_at IS NULL AND expires_at IS NOT NULL;
CREATE INDEX langgraph_store_updated_idx ON langgraph_store (updated_at, id);
CREATE INDEX langgraph_store_changed_idx ON langgraph_store (changed_at, id);
CREATE TRIGGER langgraph_store_lww BEFORE UPDATE ON langgraph_store
    FOR EACH ROW EXECUTE FUNCTION af_lww_guard();
CREATE TRIGGER langgraph_store_stamp_changed_at BEFORE INSERT OR UPDATE ON langgraph_store
    FOR EACH ROW EXECUTE FUNCTION agent_factory_stamp_changed_at();

-- Create the vector table when the extension is there; callable again after pgvector is
-- installed later (the store calls it when it finds the extension but not the table).
CREATE OR REPLACE FUNCTION af_store_vectors_table() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    ext_schema text;
BEGIN
    SELECT n.nspname INTO ext_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector';
    IF ext_schema IS NULL THEN
        RETURN false;
    END IF;
    IF to_regclass(format('%I.langgraph_store_vectors', current_schema())) IS NOT NULL THEN
        RETURN true;
    END IF;
    EXECUTE format($ddl$
        CREATE TABLE langgraph_store_vectors (
            id         uuid PRIMARY KEY,
            item_id    uuid NOT NULL REFERENCES langgraph_store (id) ON DELETE CASCADE,
            field_name text NOT NULL,
            dims       integer NOT NULL CHECK (dims > 0),
            embedding  %I.vector NOT NULL,
            updated_at timestamptz NOT NULL,
            write_id   uuid NOT NULL,
            deleted_at timestamptz,
            changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            CONSTRAINT langgraph_store_vectors_embedding_dims_check CHECK (%I.vector_dims(embedding) = dims)
        )$ddl$, ext_schema, ext_schema);
    CREATE INDEX langgraph_store_vectors_item_idx ON langgraph_store_vectors (item_id, write_id)
        WHERE deleted_at IS NULL;
    CREATE INDEX langgraph_store_vectors_updated_idx ON langgraph_store_vectors (updated_at, id);
    CREATE INDEX langgraph_store_vectors_changed_idx ON langgraph_store_vectors (changed_at, id);
    CREATE TRIGGER langgraph_store_vectors_lww BEFORE UPDATE ON langgraph_store_vectors
        FOR EACH ROW EXECUTE FUNCTION af_lww_guard();
    CREATE TRIGGER langgraph_store_vectors_stamp_changed_at BEFORE INSERT OR UPDATE ON langgraph_store_vectors
        FOR EACH ROW EXECUTE FUNCTION agent_factory_stamp_changed_at();
    RETURN true;
END $$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
        PERFORM af_store_vectors_table();
    END IF;
END $$;
