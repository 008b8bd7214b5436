-- 0004: LangGraph checkpoints (agent_factory.integrations.langgraph.AgentFactorySaver), mergeable
-- like the memory tables (docs/CONTINUITY.md, docs/INTEGRATIONS.md "Checkpointer").
--
-- Three tables, as langgraph-checkpoint-postgres lays them out (checkpoints, channel blobs,
-- pending writes), plus what a merge needs on every row:
-- * id: derived from the natural key by af_langgraph_id() (the same on every provider);
-- * updated_at (the writing client's clock) and write_id: last writer wins (af_lww_guard);
-- * deleted_at: every delete is a tombstone; reads filter them;
-- * changed_at: the sync's local change stamp (migration 0003's trigger and index).
--   (No (updated_at, id) index: the sync reads by changed_at, last writer wins looks rows up by id.)
-- A thread deletion also leaves a thread marker: a tombstone checkpoint row with
-- checkpoint_ns = '' and checkpoint_id = ''. Reads hide every checkpoint of the thread
-- written (client clock) before the marker, so rows of the thread merged later from a
-- provider that had not seen the deletion stay deleted.

-- The id of a row from its kind and natural key: the first 16 bytes of the SHA-256 of the
-- key as a JSON array (unambiguous whatever the parts contain).
CREATE OR REPLACE FUNCTION af_langgraph_id(VARIADIC parts text[]) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT substr(encode(sha256(convert_to('agent_factory/langgraph/' || array_to_json(parts)::text, 'UTF8')),
                         'hex'), 1, 32)::uuid
$$;

CREATE TABLE langgraph_checkpoint_blobs (
    id            uuid PRIMARY KEY,  -- af_langgraph_id('blob', thread_id, checkpoint_ns, channel, version)
    thread_id     text NOT NULL,
    checkpoint_ns text NOT NULL DEFAULT '',
    channel       text NOT NULL,
    version       text NOT NULL,
    type          text NOT NULL,
    blob          bytea,
    updated_at    timestamptz NOT NULL,
    write_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    deleted_at    timestamptz,
    changed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT langgraph_checkpoint_blobs_id_check
        CHECK (id = af_langgraph_id('blob', thread_id, checkpoint_ns, channel, version))
);
CREATE UNIQUE INDEX langgraph_checkpoint_blobs_key ON langgraph_checkpoint_blobs (thread_id, checkpoint_ns, channel, version);

CREATE TABLE langgraph_checkpoint_writes (
    id            uuid PRIMARY KEY,  -- af_langgraph_id('write', thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
    thread_id     text NOT NULL,
    checkpoint_ns text NOT NULL DEFAULT '',
    checkpoint_id text NOT NULL,
    task_id       text NOT NULL,
    task_path     text NOT NULL DEFAULT '',
    idx           integer NOT NULL,
    channel       text NOT NULL,
    type          text,
    blob          bytea NOT NULL,
    updated_at    timestamptz NOT NULL,
    write_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    deleted_at    timestamptz,
    changed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT langgraph_checkpoint_writes_id_check
        CHECK (id = af_langgraph_id('write', thread_id, checkpoint_ns, checkpoint_id, task_id, idx::text))
);
CREATE UNIQUE INDEX langgraph_checkpoint_writes_key
    ON langgraph_checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx);

CREATE TABLE langgraph_checkpoints (
    id                   uuid PRIMARY KEY,  -- af_langgraph_id('checkpoint', thread_id, checkpoint_ns, checkpoint_id)
    thread_id            text NOT NULL,
    checkpoint_ns        text NOT NULL DEFAULT '',
    checkpoint_id        text NOT NULL,
    parent_checkpoint_id text,
    checkpoint           jsonb NOT NULL,
    metadata             jsonb NOT NULL DEFAULT '{}',
    updated_at           timestamptz NOT NULL,
    write_id             uuid NOT NULL DEFAULT gen_random_uuid(),
    deleted_at           timestamptz,
    changed_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT langgraph_checkpoints_id_check
        CHECK (id = af_langgraph_id('checkpoint', thread_id, checkpoint_ns, checkpoint_id))
);
CREATE UNIQUE INDEX langgraph_checkpoints_key ON langgraph_checkpoints (thread_id, checkpoint_ns, checkpoint_id);
-- delete_for_runs
CREATE INDEX langgraph_checkpoints_run_idx ON langgraph_checkpoints ((metadata ->> 'run_id'))
    WHERE deleted_at IS NULL;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['langgraph_checkpoint_blobs', 'langgraph_checkpoint_writes',
                             'langgraph_checkpoints'] LOOP
        EXECUTE format('CREATE INDEX %I ON %I (changed_at, id)', t || '_changed_idx', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION af_lww_guard()',
                       t || '_lww', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %I FOR EACH ROW '
                       'EXECUTE FUNCTION agent_factory_stamp_changed_at()', t || '_stamp_changed_at', t);
    END LOOP;
END
$$;
