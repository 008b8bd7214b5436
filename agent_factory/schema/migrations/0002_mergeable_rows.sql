-- 0002: rows that merge between providers (see docs/CONTINUITY.md).
--
-- * Every message has its own time-ordered id (UUIDv7 made by the client, once
--   per call); a session's messages are ordered by id. `message_index` is no
--   longer unique: it marks a row as a message of the session and keeps the
--   position its writer saw (informational); readers derive positions.
-- * Mutable rows: last writer wins by (updated_at, write_id). updated_at is the
--   writing client's clock; write_id (one random uuid per write) breaks ties.
--   A trigger on every table skips an UPDATE that would move a row back to an
--   older (updated_at, write_id), whoever sends it. Deletion is a tombstone.
-- * Derived figures of a session (message_count, last_active) are columns of
--   its metadata row that recompute_session(text[]) rebuilds from the rows.
-- Existing rows keep their data and their order; updated_at is not touched.

-- ---- last writer wins: the tie-break column, the sync's index, the guard ----------------
CREATE OR REPLACE FUNCTION af_lww_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.updated_at, NEW.write_id) < (OLD.updated_at, OLD.write_id) THEN
        RETURN NULL;  -- an older version never overwrites a newer one
    END IF;
    RETURN NEW;
END $$;

ALTER TABLE session_memories ADD COLUMN write_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE knowledge_atoms  ADD COLUMN write_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE settings         ADD COLUMN write_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE research_staging ADD COLUMN write_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE video_scripts    ADD COLUMN write_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE upload_jobs      ADD COLUMN write_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE agent_messages   ADD COLUMN write_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
-- Existing rows share the nil id (the same on every provider); new rows get a random one.
ALTER TABLE session_memories ALTER COLUMN write_id SET DEFAULT gen_random_uuid();
ALTER TABLE knowledge_atoms  ALTER COLUMN write_id SET DEFAULT gen_random_uuid();
ALTER TABLE settings         ALTER COLUMN write_id SET DEFAULT gen_random_uuid();
ALTER TABLE research_staging ALTER COLUMN write_id SET DEFAULT gen_random_uuid();
ALTER TABLE video_scripts    ALTER COLUMN write_id SET DEFAULT gen_random_uuid();
ALTER TABLE upload_jobs      ALTER COLUMN write_id SET DEFAULT gen_random_uuid();
ALTER TABLE agent_messages   ALTER COLUMN write_id SET DEFAULT gen_random_uuid();

CREATE INDEX session_memories_updated_idx ON session_memories (updated_at, id);
CREATE INDEX knowledge_atoms_updated_idx  ON knowledge_atoms (updated_at, id);
CREATE INDEX settings_updated_idx         ON settings (updated_at, id);
CREATE INDEX research_staging_updated_idx ON research_staging (updated_at, id);
CREATE INDEX video_scripts_updated_idx    ON video_scripts (updated_at, id);
CREATE INDEX upload_jobs_updated_idx      ON upload_jobs (updated_at, id);
CREATE INDEX agent_messages_updated_idx   ON agent_messages (updated_at, id);

-- ---- session_memories: messages keyed by time-ordered ids -------------------------------
DROP INDEX session_memories_message_position_key;

-- One metadata row per session, enforced by its id alone (derived from the session id,
-- agent_factory/memory/ids.py): writers and the sync upsert it by primary key.
DROP INDEX session_memories_session_metadata_key;
UPDATE session_memories  -- a metadata row written by another tool under some other id
SET id = substr(encode(sha256(convert_to('agent_factory/session/' || session_id, 'UTF8')), 'hex'), 1, 32)::uuid
WHERE memory_type = 'session_metadata'
  AND id <> substr(encode(sha256(convert_to('agent_factory/session/' || session_id, 'UTF8')), 'hex'), 1, 32)::uuid;
ALTER TABLE session_memories ADD CONSTRAINT session_memories_metadata_id_check CHECK (
    memory_type <> 'session_metadata'
    OR id = substr(encode(sha256(convert_to('agent_factory/session/' || session_id, 'UTF8')), 'hex'), 1, 32)::uuid);

-- Messages no reader saw (live rows past the session's message_count) become tombstones.
UPDATE session_memories AS r SET deleted_at = now(), updated_at = now()
FROM session_memories AS m
WHERE m.memory_type = 'session_metadata' AND r.session_id = m.session_id
  AND r.message_index IS NOT NULL AND r.deleted_at IS NULL
  AND r.message_index >= coalesce((m.content->>'message_count')::int, 2147483647);

-- Existing messages get UUIDv7 ids whose time field is their old position: they keep
-- their order, sort before every new message, and get the same id on every provider
-- (the random bits are a hash of session id and position, as the old ids were).
UPDATE session_memories
SET id = (lpad(to_hex(message_index), 12, '0') || '7' || substr(h, 1, 3)
          || substr('89ab', get_byte(decode(substr(h, 4, 2), 'hex'), 0) % 4 + 1, 1)
          || substr(h, 6, 15))::uuid
FROM (SELECT id AS old_id,
             encode(sha256(convert_to('agent_factory/legacy-message/' || session_id || '/' || message_index,
                                      'UTF8')), 'hex') AS h
      FROM session_memories WHERE message_index IS NOT NULL) AS legacy
WHERE id = legacy.old_id;

-- A session's live messages in order (load_session, derived positions, counts).
CREATE INDEX session_memories_messages_idx ON session_memories (session_id, id)
    WHERE message_index IS NOT NULL AND deleted_at IS NULL;

-- Derived figures of a session, on its metadata row (NULL on other rows).
ALTER TABLE session_memories ADD COLUMN message_count integer CHECK (message_count >= 0);
ALTER TABLE session_memories ADD COLUMN last_active timestamptz;

-- The metadata row's content keeps only the client's own last_active (the base of
-- the derived last_active); message_count and the append batch id move out of it.
UPDATE session_memories
SET content = jsonb_strip_nulls(jsonb_build_object('last_active', content->'last_active'))
WHERE memory_type = 'session_metadata';

-- Paging of list_sessions: most recently active first, then session id (bytewise).
-- (Scanned backwards; keyset paging compares the row (last_active, session_id).)
CREATE INDEX session_memories_recent_idx
    ON session_memories (last_active, session_id COLLATE "C")
    WHERE memory_type = 'session_metadata' AND deleted_at IS NULL;
CREATE INDEX session_memories_user_recent_idx
    ON session_memories (user_id, last_active, session_id COLLATE "C")
    WHERE memory_type = 'session_metadata' AND deleted_at IS NULL;

-- Rebuild the derived figures of the given sessions from their rows: the sync calls it
-- after merging a session's rows. A deleted session also deletes its rows written
-- before the deletion (so a merge cannot leave live rows under a tombstone). Returns
-- how many metadata rows changed. Idempotent; every provider derives the same values.
CREATE OR REPLACE FUNCTION recompute_session(session_ids text[]) RETURNS integer
LANGUAGE sql VOLATILE AS $$
    UPDATE session_memories AS r
    SET deleted_at = m.deleted_at, updated_at = m.updated_at, write_id = m.write_id
    FROM session_memories AS m
    WHERE m.session_id = ANY(session_ids) AND m.memory_type = 'session_metadata' AND m.deleted_at IS NOT NULL
      AND r.session_id = m.session_id AND r.id <> m.id AND r.deleted_at IS NULL
      AND (r.updated_at, r.write_id) < (m.updated_at, m.write_id);

    WITH derived AS (
        SELECT m.id, count(r.id)::int AS message_count,
               greatest(coalesce((m.content->>'last_active')::timestamptz, m.created_at),
                        max(r.updated_at) FILTER (WHERE r.updated_at > m.updated_at)) AS last_active
        FROM session_memories AS m
        LEFT JOIN session_memories AS r
               ON r.session_id = m.session_id AND r.message_index IS NOT NULL AND r.deleted_at IS NULL
        WHERE m.session_id = ANY(session_ids) AND m.memory_type = 'session_metadata'
        GROUP BY m.id
    ), changed AS (
        UPDATE session_memories AS m
        SET message_count = d.message_count, last_active = d.last_active
        FROM derived AS d
        WHERE m.id = d.id
          AND (m.message_count, m.last_active) IS DISTINCT FROM (d.message_count, d.last_active)
        RETURNING 1
    )
    SELECT count(*)::int FROM changed;
$$;

SELECT recompute_session(array_agg(session_id)) FROM session_memories WHERE memory_type = 'session_metadata';

CREATE TRIGGER session_memories_lww BEFORE UPDATE ON session_memories
    FOR EACH ROW EXECUTE FUNCTION af_lww_guard();
CREATE TRIGGER knowledge_atoms_lww BEFORE UPDATE ON knowledge_atoms
    FOR EACH ROW EXECUTE FUNCTION af_lww_guard();
CREATE TRIGGER settings_lww BEFORE UPDATE ON settings
    FOR EACH ROW EXECUTE FUNCTION af_lww_guard();
CREATE TRIGGER research_staging_lww BEFORE UPDATE ON research_staging
    FOR EACH ROW EXECUTE FUNCTION af_lww_guard();
CREATE TRIGGER video_scripts_lww BEFORE UPDATE ON video_scripts
    FOR EACH ROW EXECUTE FUNCTION af_lww_guard();
CREATE TRIGGER upload_jobs_lww BEFORE UPDATE ON upload_jobs
    FOR EACH ROW EXECUTE FUNCTION af_lww_guard();
CREATE TRIGGER agent_messages_lww BEFORE UPDATE ON agent_messages
    FOR EACH ROW EXECUTE FUNCTION af_lww_guard();
