-- 0003: what `agent_factory.replication` (the `sync` merge) needs on every provider.
--
-- changed_at: when this row last changed *on this database*, stamped by the
-- server's own clock (clock_timestamp()) by a trigger on every insert and on every
-- update that changes something (an update that rewrites the same values keeps
-- it), including the writes a sync makes. It is never copied between providers and
-- never decides a conflict (updated_at does): it only tells a sync which rows
-- changed since its last run, so rows merged into a provider with old updated_at
-- values still travel on to the next provider. Rows that existed before this
-- migration get '-infinity' (no table rewrite) and are found by the first sync.
--
-- sync_watermarks: per (source, target, table), kept in the TARGET database:
-- every row version the source had with changed_at < synced_through (source
-- clock) is merged here; when after_id is set, a sync was interrupted after the
-- row (synced_through, after_id) in (changed_at, id) order and resumes there.

CREATE OR REPLACE FUNCTION agent_factory_stamp_changed_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The trigger's arguments name the table's generated columns: NEW does not hold them yet.
    IF TG_OP = 'UPDATE' AND to_jsonb(NEW) - coalesce(TG_ARGV, '{}') = to_jsonb(OLD) - coalesce(TG_ARGV, '{}') THEN
        RETURN NEW;  -- the same values written again: nothing for a sync to carry
    END IF;
    NEW.changed_at := clock_timestamp();
    RETURN NEW;
END
$$;

DO $$
DECLARE
    t text;
    generated text;
BEGIN
    FOREACH t IN ARRAY ARRAY['session_memories', 'knowledge_atoms', 'settings', 'research_staging',
                             'video_scripts', 'upload_jobs', 'agent_messages'] LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS changed_at timestamptz NOT NULL '
                       'DEFAULT ''-infinity''', t);
        EXECUTE format('ALTER TABLE %I ALTER COLUMN changed_at SET DEFAULT clock_timestamp()', t);
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (changed_at, id)', t || '_changed_idx', t);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t || '_stamp_changed_at', t);
        SELECT coalesce(string_agg(quote_literal(attname), ', ' ORDER BY attnum), '') INTO generated
        FROM pg_attribute WHERE attrelid = t::regclass AND attnum > 0 AND attgenerated <> '';
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %I FOR EACH ROW '
                       'EXECUTE FUNCTION agent_factory_stamp_changed_at(%s)', t || '_stamp_changed_at', t, generated);
    END LOOP;
END
$$;

CREATE TABLE IF NOT EXISTS sync_watermarks (
    source         text NOT NULL,
    target         text NOT NULL,
    table_name     text NOT NULL,
    synced_through timestamptz NOT NULL,
    after_id       uuid,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, target, table_name)
);
