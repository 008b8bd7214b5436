-- 0007: last writer wins for rows a logical-replication stream applies (docs/CONTINUITY.md, "Streams").
--
-- A subscription's apply worker runs with session_replication_role = replica: ordinary
-- (ENABLE ORIGIN) triggers do not fire for the rows it writes. So, on every table that merges:
-- * the last-writer-wins guard (af_lww_guard) and the changed_at stamp fire ALWAYS: a stream never
--   moves a row back to an older (updated_at, write_id), and changed_at stays "when this row last
--   changed on this database" (the sync's watermarks, the monitor's merge into the primary);
-- * af_stream_insert (REPLICA only, BEFORE INSERT): a replicated INSERT whose id is already here
--   (a row the sync engine copied, or one written here during a failover) becomes an UPDATE of
--   the data columns, which the guard lets through only when it is newer, and is not inserted;
--   without it the apply worker would fail on the primary key and retry for ever;
-- * af_stream_delete (REPLICA only, BEFORE DELETE): a replicated physical DELETE removes a row
--   only when it is a tombstone here (the application deletes by tombstone; a physical delete
--   only purges tombstones, e.g. `verify`'s scratch session); a live row here is kept;
-- * session_memories_stream_derived (REPLICA only, AFTER INSERT OR UPDATE): streams do not carry
--   the derived message_count/last_active (the publication's column lists leave them out, as the
--   sync does): a new message row adds itself to its session's figures, anything else (a metadata
--   row, a tombstone, an update) runs recompute_session for the session it touches.
-- The apply worker runs with an empty search_path: these functions keep the schema's (FROM CURRENT).
-- af_stream_prepare() applies all of this to the tables present; `stream setup` calls it again
-- on each subscriber, so a table created later (pgvector's optional ones) is covered too.

CREATE OR REPLACE FUNCTION af_stream_insert() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    found boolean;
    cols text;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT FROM %I.%I WHERE id = $1)', TG_TABLE_SCHEMA, TG_TABLE_NAME)
        INTO found USING NEW.id;
    IF NOT found THEN
        RETURN NEW;
    END IF;
    -- The data columns (not changed_at, generated or derived ones); the guard decides.
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
    FROM pg_attribute
    WHERE attrelid = TG_RELID AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
      AND attname NOT IN ('id', 'changed_at', 'message_count', 'last_active');
    EXECUTE format('UPDATE %I.%I AS t SET (%s) = (SELECT %s FROM (SELECT ($1).*) AS s) WHERE t.id = ($1).id',
                   TG_TABLE_SCHEMA, TG_TABLE_NAME, cols, cols) USING NEW;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION af_stream_delete() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.deleted_at IS NULL THEN
        RETURN NULL;  -- a live row here is newer than the tombstone the publisher purged
    END IF;
    RETURN OLD;
END $$;

CREATE OR REPLACE FUNCTION af_stream_derived() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
-- The common cases (a streamed save or append: new rows) are kept O(1) per row with static statements,
-- whose plans PL/pgSQL caches for the apply worker's session. recompute_session (a multi-statement SQL
-- function, planned on every call) is left to the rare cases: updates, tombstones, a deleted session.
DECLARE
    metadata_id uuid;
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.message_count, NEW.last_active) IS DISTINCT FROM (OLD.message_count, OLD.last_active)
    THEN
        RETURN NULL;  -- our own update of the derived columns (below, or recompute_session's)
    END IF;
    IF TG_OP = 'INSERT' AND NEW.message_index IS NOT NULL THEN
        IF NEW.deleted_at IS NOT NULL THEN
            RETURN NULL;  -- a tombstoned message counts for nothing
        END IF;
        -- A new live message changes its session's figures by exactly itself.
        metadata_id := substr(encode(sha256(convert_to('agent_factory/session/' || NEW.session_id, 'UTF8')),
                                     'hex'), 1, 32)::uuid;
        UPDATE session_memories AS m
        SET message_count = m.message_count + 1,
            last_active = CASE WHEN NEW.updated_at > m.updated_at
                               THEN greatest(m.last_active, NEW.updated_at) ELSE m.last_active END
        WHERE m.id = metadata_id AND m.deleted_at IS NULL AND m.message_count IS NOT NULL;
        IF FOUND OR NOT EXISTS (SELECT FROM session_memories WHERE id = metadata_id) THEN
            RETURN NULL;  -- added; or the metadata row has not arrived yet and counts when it does
        END IF;
        -- A deleted session (recompute_session tombstones its older rows) or one without figures.
    ELSIF TG_OP = 'INSERT' AND NEW.memory_type = 'session_metadata' AND NEW.deleted_at IS NULL THEN
        -- A new session: its figures from the messages already here (usually none).
        UPDATE session_memories AS m
        SET message_count = d.n,
            last_active = greatest(coalesce((m.content->>'last_active')::timestamptz, m.created_at), d.newest)
        FROM (SELECT count(*)::int AS n, max(r.updated_at) FILTER (WHERE r.updated_at > NEW.updated_at) AS newest
              FROM session_memories AS r
              WHERE r.session_id = NEW.session_id AND r.message_index IS NOT NULL AND r.deleted_at IS NULL) AS d
        WHERE m.id = NEW.id;
        RETURN NULL;
    END IF;
    -- An update (a newer version, a tombstone) or a deleted session: rebuild the figures.
    PERFORM recompute_session(ARRAY[NEW.session_id]);
    RETURN NULL;
END $$;

-- Set the triggers above on every table that has a last-writer-wins guard; idempotent.
CREATE OR REPLACE FUNCTION af_stream_prepare() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    t text;
    n integer := 0;
BEGIN
    FOR t IN
        SELECT c.relname FROM pg_trigger g
        JOIN pg_class c ON c.oid = g.tgrelid
        WHERE c.relnamespace = current_schema()::regnamespace AND NOT g.tgisinternal
          AND g.tgfoid = 'af_lww_guard'::regproc
        ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I', t, t || '_lww');
        IF EXISTS (SELECT FROM pg_trigger WHERE tgrelid = t::regclass AND tgname = t || '_stamp_changed_at') THEN
            EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I', t, t || '_stamp_changed_at');
        END IF;
        IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = t::regclass AND tgname = t || '_stream_insert') THEN
            EXECUTE format('CREATE TRIGGER %I BEFORE INSERT ON %I FOR EACH ROW EXECUTE FUNCTION af_stream_insert()',
                           t || '_stream_insert', t);
            EXECUTE format('CREATE TRIGGER %I BEFORE DELETE ON %I FOR EACH ROW EXECUTE FUNCTION af_stream_delete()',
                           t || '_stream_delete', t);
        END IF;
        EXECUTE format('ALTER TABLE %I ENABLE REPLICA TRIGGER %I', t, t || '_stream_insert');
        EXECUTE format('ALTER TABLE %I ENABLE REPLICA TRIGGER %I', t, t || '_stream_delete');
        n := n + 1;
    END LOOP;
    IF to_regclass('session_memories') IS NOT NULL THEN
        IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'session_memories'::regclass
                                                AND tgname = 'session_memories_stream_derived') THEN
            CREATE TRIGGER session_memories_stream_derived AFTER INSERT OR UPDATE ON session_memories
                FOR EACH ROW EXECUTE FUNCTION af_stream_derived();
        END IF;
        ALTER TABLE session_memories ENABLE REPLICA TRIGGER session_memories_stream_derived;
    END IF;
    RETURN n;
END $$;

SELECT af_stream_prepare();
