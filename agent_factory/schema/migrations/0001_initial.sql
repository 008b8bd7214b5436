-- 0001: the seven tables of the memory system.
-- Every table: a client-generated UUID key, created_at/updated_at, and
-- deleted_at for deletions that leave a trace, so rows can later be merged
-- between providers without duplicates or resurrections.

CREATE TABLE IF NOT EXISTS session_memories (
    id            uuid PRIMARY KEY,
    session_id    text NOT NULL CHECK (length(session_id) BETWEEN 1 AND 255),
    user_id       text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 255),
    memory_type   text NOT NULL,
    message_index integer CHECK (message_index >= 0),
    content       jsonb NOT NULL,
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    CONSTRAINT session_memories_memory_type_check CHECK (memory_type IN (
        'session_metadata', 'message_user', 'message_assistant', 'message_system',
        'context', 'action', 'issue', 'decision', 'log'))
);
-- One metadata row per session, one row per message position.
CREATE UNIQUE INDEX IF NOT EXISTS session_memories_session_metadata_key
    ON session_memories (session_id) WHERE memory_type = 'session_metadata';
CREATE UNIQUE INDEX IF NOT EXISTS session_memories_message_position_key
    ON session_memories (session_id, message_index) WHERE message_index IS NOT NULL;
CREATE INDEX IF NOT EXISTS session_memories_session_idx ON session_memories (session_id, memory_type);
CREATE INDEX IF NOT EXISTS session_memories_user_idx ON session_memories (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS session_memories_type_idx ON session_memories (memory_type, created_at DESC);

CREATE TABLE IF NOT EXISTS knowledge_atoms (
    id            uuid PRIMARY KEY,
    atom_id       text NOT NULL UNIQUE CHECK (length(atom_id) BETWEEN 1 AND 255),
    atom_type     text NOT NULL CONSTRAINT knowledge_atoms_atom_type_check CHECK (atom_type IN (
        'concept', 'procedure', 'specification', 'pattern', 'fault', 'reference')),
    title         text NOT NULL,
    summary       text NOT NULL DEFAULT '',
    content       text NOT NULL,
    manufacturer  text,
    keywords      text[] NOT NULL DEFAULT '{}',
    source_url    text,
    quality_score real CHECK (quality_score BETWEEN 0 AND 1),
    search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('english', coalesce(summary, '')), 'B') ||
        setweight(to_tsvector('english', coalesce(content, '')), 'C')) STORED,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);
CREATE INDEX IF NOT EXISTS knowledge_atoms_search_idx ON knowledge_atoms USING gin (search_vector);
CREATE INDEX IF NOT EXISTS knowledge_atoms_type_idx ON knowledge_atoms (atom_type);

CREATE TABLE IF NOT EXISTS settings (
    id            uuid PRIMARY KEY,
    setting_key   text NOT NULL UNIQUE CHECK (length(setting_key) BETWEEN 1 AND 255),
    setting_value text NOT NULL,
    category      text NOT NULL DEFAULT 'general',
    description   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);

CREATE TABLE IF NOT EXISTS research_staging (
    id          uuid PRIMARY KEY,
    source_url  text NOT NULL,
    title       text,
    raw_content text,
    status      text NOT NULL DEFAULT 'pending' CONSTRAINT research_staging_status_check CHECK (status IN (
        'pending', 'processing', 'processed', 'rejected', 'failed')),
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE INDEX IF NOT EXISTS research_staging_status_idx ON research_staging (status, created_at);

CREATE TABLE IF NOT EXISTS video_scripts (
    id         uuid PRIMARY KEY,
    title      text NOT NULL,
    script     text NOT NULL,
    atom_ids   text[] NOT NULL DEFAULT '{}',
    status     text NOT NULL DEFAULT 'draft' CONSTRAINT video_scripts_status_check CHECK (status IN (
        'draft', 'review', 'approved', 'published', 'archived')),
    metadata   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE INDEX IF NOT EXISTS video_scripts_status_idx ON video_scripts (status, created_at);

CREATE TABLE IF NOT EXISTS upload_jobs (
    id              uuid PRIMARY KEY,
    video_script_id uuid REFERENCES video_scripts (id),
    platform        text NOT NULL,
    status          text NOT NULL DEFAULT 'queued' CONSTRAINT upload_jobs_status_check CHECK (status IN (
        'queued', 'uploading', 'completed', 'failed', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      text,
    external_id     text,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX IF NOT EXISTS upload_jobs_status_idx ON upload_jobs (status, created_at);

CREATE TABLE IF NOT EXISTS agent_messages (
    id           uuid PRIMARY KEY,
    session_id   text,
    sender       text NOT NULL,
    recipient    text NOT NULL,
    message_type text NOT NULL DEFAULT 'message',
    payload      jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'pending' CONSTRAINT agent_messages_status_check CHECK (status IN (
        'pending', 'delivered', 'read', 'failed')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
CREATE INDEX IF NOT EXISTS agent_messages_recipient_idx ON agent_messages (recipient, status, created_at);
