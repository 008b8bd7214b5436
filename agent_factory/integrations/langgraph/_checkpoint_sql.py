"""The statements of `AgentFactorySaver` (migration 0004's tables): each call is one statement.

Every write carries the caller's stamp (`%(at)s` = the client's clock, `%(wid)s`
= the write id): an upsert overwrites a row only with a newer version
(`af_lww_guard`), and every delete is a tombstone. Where one statement writes
blobs or writes and a checkpoint, the checkpoint's insert reads the others'
results first, so their `changed_at` stamps precede the checkpoint's (the sync
never carries a checkpoint without them).
"""

from __future__ import annotations

CHECKPOINTS = "langgraph_checkpoints"
BLOBS = "langgraph_checkpoint_blobs"
WRITES = "langgraph_checkpoint_writes"
TASKS_CHANNEL = "__pregel_tasks"

# A checkpoint a reader may see: not a tombstone, and written (client clock) after the thread's
# last deletion marker, if any (the marker is the tombstone row with checkpoint_ns = checkpoint_id = '').
def live(alias: str) -> str:
    """Return the condition that checkpoint row `alias` is visible."""
    return f"""{alias}.deleted_at IS NULL AND NOT EXISTS (
    SELECT FROM {CHECKPOINTS} d
    WHERE d.thread_id = {alias}.thread_id AND d.checkpoint_ns = '' AND d.checkpoint_id = ''
      AND d.updated_at > {alias}.updated_at)"""


LIVE = live("c")

SELECT = f"""
SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id, c.checkpoint, c.metadata,
    (SELECT array_agg(ARRAY[convert_to(b.channel, 'UTF8'), convert_to(b.type, 'UTF8'), b.blob])
     FROM jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
     JOIN {BLOBS} b ON b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
                   AND b.channel = v.key AND b.version = v.value AND b.deleted_at IS NULL) AS channel_values,
    (SELECT array_agg(ARRAY[convert_to(w.task_id, 'UTF8'), convert_to(w.channel, 'UTF8'),
                            convert_to(coalesce(w.type, ''), 'UTF8'), w.blob, convert_to(w.task_path, 'UTF8'),
                            convert_to(w.idx::text, 'UTF8')])
     FROM {WRITES} w
     WHERE w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns AND w.checkpoint_id = c.checkpoint_id
       AND w.deleted_at IS NULL) AS pending_writes,
    CASE WHEN (c.checkpoint ->> 'v')::int < 4 AND c.parent_checkpoint_id IS NOT NULL THEN
        (SELECT array_agg(ARRAY[convert_to(coalesce(s.type, ''), 'UTF8'), s.blob]
                          ORDER BY s.task_path, s.task_id, s.idx)
         FROM {WRITES} s
         WHERE s.thread_id = c.thread_id AND s.checkpoint_id = c.parent_checkpoint_id
           AND s.channel = '{TASKS_CHANNEL}' AND s.deleted_at IS NULL)
    END AS pending_sends
FROM {CHECKPOINTS} c
WHERE {LIVE}"""

PUT = f"""
WITH blobs AS (
    INSERT INTO {BLOBS} AS t (id, thread_id, checkpoint_ns, channel, version, type, blob, updated_at, write_id)
    SELECT af_langgraph_id('blob', %(thread)s, %(ns)s, b.channel, b.version), %(thread)s, %(ns)s,
           b.channel, b.version, b.type, b.blob, %(at)s, %(wid)s
    FROM unnest(%(channels)s::text[], %(versions)s::text[], %(types)s::text[], %(blobs)s::bytea[])
         AS b(channel, version, type, blob)
    ON CONFLICT (id) DO UPDATE SET type = excluded.type, blob = excluded.blob, updated_at = excluded.updated_at,
                                   write_id = excluded.write_id, deleted_at = NULL
    WHERE t.deleted_at IS NOT NULL
    RETURNING 1
)
INSERT INTO {CHECKPOINTS} AS t (id, thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint,
                                metadata, updated_at, write_id)
SELECT af_langgraph_id('checkpoint', %(thread)s, %(ns)s, %(cid)s), %(thread)s, %(ns)s, %(cid)s, %(parent)s,
       %(checkpoint)s, %(metadata)s, %(at)s, %(wid)s
FROM (SELECT count(*) FROM blobs) AS blobs_first
ON CONFLICT (id) DO UPDATE SET checkpoint = excluded.checkpoint, metadata = excluded.metadata,
                               updated_at = excluded.updated_at, write_id = excluded.write_id, deleted_at = NULL"""

PUT_WRITES = f"""
INSERT INTO {WRITES} AS t (id, thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob,
                           updated_at, write_id)
SELECT af_langgraph_id('write', %(thread)s, %(ns)s, %(cid)s, %(task)s, w.idx::text), %(thread)s, %(ns)s, %(cid)s,
       %(task)s, %(path)s, w.idx, w.channel, w.type, w.blob, %(at)s, %(wid)s
FROM unnest(%(idx)s::int[], %(channels)s::text[], %(types)s::text[], %(blobs)s::bytea[]) AS w(idx, channel, type, blob)
ON CONFLICT (id) DO UPDATE SET channel = excluded.channel, type = excluded.type, blob = excluded.blob,
                               task_path = excluded.task_path, updated_at = excluded.updated_at,
                               write_id = excluded.write_id, deleted_at = NULL
WHERE %(upsert)s OR t.deleted_at IS NOT NULL"""

# Tombstones every live row of the threads and (re)stamps each thread's deletion marker.
DELETE_THREADS = f"""
WITH marker AS (
    INSERT INTO {CHECKPOINTS} AS t (id, thread_id, checkpoint_ns, checkpoint_id, checkpoint, updated_at, write_id,
                                    deleted_at)
    SELECT af_langgraph_id('checkpoint', th, '', ''), th, '', '', '{{}}', %(at)s, %(wid)s, %(at)s
    FROM unnest(%(threads)s::text[]) AS th
    ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, write_id = excluded.write_id,
                                   deleted_at = excluded.deleted_at
), blobs AS (
    UPDATE {BLOBS} SET deleted_at = %(at)s, updated_at = %(at)s, write_id = %(wid)s
    WHERE thread_id = ANY(%(threads)s) AND deleted_at IS NULL
), writes AS (
    UPDATE {WRITES} SET deleted_at = %(at)s, updated_at = %(at)s, write_id = %(wid)s
    WHERE thread_id = ANY(%(threads)s) AND deleted_at IS NULL
)
UPDATE {CHECKPOINTS} SET deleted_at = %(at)s, updated_at = %(at)s, write_id = %(wid)s
WHERE thread_id = ANY(%(threads)s) AND deleted_at IS NULL"""


def delete_checkpoints(gone_where: str, *, orphan_parents: bool) -> str:
    """Return the statement that tombstones the live checkpoints matching `gone_where` (alias `c`).

    Their pending writes go with them, and so do the blobs they reference
    that no remaining live checkpoint of the same namespace references. With
    `orphan_parents`, a remaining checkpoint whose parent is deleted is left
    with no parent (as langgraph-checkpoint-postgres's prune does).
    """
    parents = f"""
, orphans AS (
    UPDATE {CHECKPOINTS} AS k SET parent_checkpoint_id = NULL, updated_at = %(at)s, write_id = %(wid)s
    FROM gone g
    WHERE k.thread_id = g.thread_id AND k.checkpoint_ns = g.checkpoint_ns
      AND k.parent_checkpoint_id = g.checkpoint_id AND k.deleted_at IS NULL
      AND NOT EXISTS (SELECT FROM gone g2 WHERE g2.thread_id = k.thread_id AND g2.checkpoint_ns = k.checkpoint_ns
                                              AND g2.checkpoint_id = k.checkpoint_id)
)""" if orphan_parents else ""
    return f"""
WITH gone AS (
    UPDATE {CHECKPOINTS} AS c SET deleted_at = %(at)s, updated_at = %(at)s, write_id = %(wid)s
    WHERE {gone_where} AND c.deleted_at IS NULL AND c.checkpoint_id <> ''
    RETURNING c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.checkpoint -> 'channel_versions' AS versions
), writes AS (
    UPDATE {WRITES} AS w SET deleted_at = %(at)s, updated_at = %(at)s, write_id = %(wid)s
    FROM gone g
    WHERE w.thread_id = g.thread_id AND w.checkpoint_ns = g.checkpoint_ns AND w.checkpoint_id = g.checkpoint_id
      AND w.deleted_at IS NULL
), freed AS (
    SELECT DISTINCT g.thread_id, g.checkpoint_ns, v.key AS channel, v.value AS version
    FROM gone g CROSS JOIN LATERAL jsonb_each_text(g.versions) AS v
), kept AS (
    SELECT DISTINCT k.thread_id, k.checkpoint_ns, v.key AS channel, v.value AS version
    FROM {CHECKPOINTS} k CROSS JOIN LATERAL jsonb_each_text(k.checkpoint -> 'channel_versions') AS v
    WHERE (k.thread_id, k.checkpoint_ns) IN (SELECT thread_id, checkpoint_ns FROM gone)
      AND k.deleted_at IS NULL AND k.checkpoint_id <> ''
      AND NOT EXISTS (SELECT FROM gone g WHERE g.thread_id = k.thread_id AND g.checkpoint_ns = k.checkpoint_ns
                                           AND g.checkpoint_id = k.checkpoint_id)
), blobs AS (
    UPDATE {BLOBS} AS b SET deleted_at = %(at)s, updated_at = %(at)s, write_id = %(wid)s
    FROM (SELECT * FROM freed EXCEPT SELECT * FROM kept) AS garbage
    WHERE b.thread_id = garbage.thread_id AND b.checkpoint_ns = garbage.checkpoint_ns
      AND b.channel = garbage.channel AND b.version = garbage.version AND b.deleted_at IS NULL
){parents}
SELECT count(*) FROM gone"""


DELETE_FOR_RUNS = delete_checkpoints("c.metadata ->> 'run_id' = ANY(%(runs)s)", orphan_parents=False)

# keep_latest: per (thread, namespace) every visible checkpoint but the newest one (and every hidden one).
PRUNE_KEEP_LATEST = delete_checkpoints(f"""c.thread_id = ANY(%(threads)s) AND (NOT ({LIVE}) OR c.checkpoint_id < (
        SELECT max(l.checkpoint_id) FROM {CHECKPOINTS} l
        WHERE l.thread_id = c.thread_id AND l.checkpoint_ns = c.checkpoint_ns
          AND {live('l')}))""", orphan_parents=True)

# Threads that use a DeltaChannel: keep_latest would cut the history their values are rebuilt from.
DELTA_THREADS = f"""
SELECT DISTINCT c.thread_id FROM {CHECKPOINTS} c
WHERE c.thread_id = ANY(%(threads)s) AND c.deleted_at IS NULL AND (
    c.metadata ? 'counters_since_delta_snapshot' OR c.metadata ? 'delta_writes_versioned'
    OR EXISTS (SELECT FROM jsonb_each(c.checkpoint -> 'channel_values') AS v
               JOIN {BLOBS} b ON b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
                             AND b.channel = v.key AND b.version = c.checkpoint -> 'channel_versions' ->> v.key
                             AND b.deleted_at IS NULL
               WHERE v.value = 'true'::jsonb))
ORDER BY 1"""

# Every visible checkpoint of the source thread, with its writes and blobs, under the target thread id.
COPY_THREAD = f"""
WITH src AS (
    SELECT c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id, c.checkpoint, c.metadata
    FROM {CHECKPOINTS} c WHERE c.thread_id = %(src)s AND c.checkpoint_id <> '' AND {LIVE}
), blobs AS (
    INSERT INTO {BLOBS} AS t (id, thread_id, checkpoint_ns, channel, version, type, blob, updated_at, write_id)
    SELECT af_langgraph_id('blob', %(dst)s, b.checkpoint_ns, b.channel, b.version), %(dst)s, b.checkpoint_ns,
           b.channel, b.version, b.type, b.blob, %(at)s, %(wid)s
    FROM {BLOBS} b
    WHERE b.thread_id = %(src)s AND b.deleted_at IS NULL
      AND b.checkpoint_ns IN (SELECT checkpoint_ns FROM src)
    ON CONFLICT (id) DO UPDATE SET type = excluded.type, blob = excluded.blob, updated_at = excluded.updated_at,
                                   write_id = excluded.write_id, deleted_at = NULL
    RETURNING 1
), writes AS (
    INSERT INTO {WRITES} AS t (id, thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type,
                               blob, updated_at, write_id)
    SELECT af_langgraph_id('write', %(dst)s, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.idx::text), %(dst)s,
           w.checkpoint_ns, w.checkpoint_id, w.task_id, w.task_path, w.idx, w.channel, w.type, w.blob, %(at)s, %(wid)s
    FROM {WRITES} w JOIN src ON src.checkpoint_ns = w.checkpoint_ns AND src.checkpoint_id = w.checkpoint_id
    WHERE w.thread_id = %(src)s AND w.deleted_at IS NULL
    ON CONFLICT (id) DO UPDATE SET channel = excluded.channel, type = excluded.type, blob = excluded.blob,
                                   task_path = excluded.task_path, updated_at = excluded.updated_at,
                                   write_id = excluded.write_id, deleted_at = NULL
    RETURNING 1
)
INSERT INTO {CHECKPOINTS} AS t (id, thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint,
                                metadata, updated_at, write_id)
SELECT af_langgraph_id('checkpoint', %(dst)s, s.checkpoint_ns, s.checkpoint_id), %(dst)s, s.checkpoint_ns,
       s.checkpoint_id, s.parent_checkpoint_id, s.checkpoint, s.metadata, %(at)s, %(wid)s
FROM src s, (SELECT count(*) FROM blobs) AS blobs_first, (SELECT count(*) FROM writes) AS writes_first
ON CONFLICT (id) DO UPDATE SET parent_checkpoint_id = excluded.parent_checkpoint_id,
                               checkpoint = excluded.checkpoint, metadata = excluded.metadata,
                               updated_at = excluded.updated_at, write_id = excluded.write_id, deleted_at = NULL"""
