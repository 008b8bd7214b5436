"""What a sync merges: the tables, their columns as the catalog has them, and the merge statement.

The merge rule is migration 0002's (docs/CONTINUITY.md): of two versions of the
row with the same `id`, the one with the greater `(updated_at, write_id)` wins;
`updated_at` is the writing client's clock and `write_id` a random id per write,
so every provider picks the same version whatever the order of the syncs. A
deletion is a version like any other (a tombstone). `changed_at` (local to each
database, migration 0003), generated columns and derived columns (a session's
`message_count` and `last_active`, rebuilt by `recompute_session` after a
merge) are never copied.

Tables and columns that exist only where pgvector does (`agent_factory.vector`:
`OPTIONAL_TABLES`, `OPTIONAL_COLUMNS`) are synced when both sides have them and
left out of the spec, without error, when one side lacks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..errors import SchemaError
from ..vector import OPTIONAL_COLUMNS, OPTIONAL_TABLES

# Parents before children: upload_jobs references video_scripts. A LangGraph checkpoint references
# its channel blobs and has pending writes: both go before it, and every table of a run reads up to the
# same horizon, so a checkpoint never reaches a provider before the blobs and writes it had on the source
# (docs/INTEGRATIONS.md).
TABLES: tuple[str, ...] = (
    "settings", "knowledge_atoms", "research_staging", "video_scripts", "upload_jobs",
    "agent_messages", "session_memories", "langgraph_store",
    "langgraph_checkpoint_blobs", "langgraph_checkpoint_writes", "langgraph_checkpoints",
)
# Tables whose rows reference rows of the tables before them by more than one column (a checkpoint
# names its blobs by channel versions): a run copies only their changes that were committed when it
# began (`Horizon.settled`), so everything they reference was visible to the earlier tables' reads.
FOLLOWERS: frozenset[str] = frozenset({"langgraph_checkpoints"})
# Every table a sync may merge: TABLES, then the pgvector-only ones (parents still before children).
SYNCED_TABLES: tuple[str, ...] = TABLES + OPTIONAL_TABLES
# {child table: {column: parent table}}: rows whose parent is not on the target yet are deferred.
PARENTS: dict[str, dict[str, str]] = {"upload_jobs": {"video_script_id": "video_scripts"},
                                      "langgraph_store_vectors": {"item_id": "langgraph_store"}}
LOCAL_COLUMN = "changed_at"
DERIVED = ("message_count", "last_active")  # recomputed on each provider, never copied
REQUIRED = ("id", "updated_at", "write_id", "deleted_at", LOCAL_COLUMN)

_COLUMNS_SQL = """
SELECT c.relname, a.attname, a.attgenerated <> ''
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname = ANY(%s) AND c.relkind = 'r'
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""


@dataclass(frozen=True)
class TableSpec:
    """One table as both providers have it: the data columns a sync copies and compares."""

    name: str
    columns: tuple[str, ...]  # data columns in catalog order: not changed_at, generated or derived ones
    parents: tuple[tuple[str, str], ...] = ()  # (column, parent table)
    # optional columns only the target has: a version merged from the source clears them (NULL), as it
    # was written where they could not be (an atom edited on a provider without pgvector loses its stale embedding)
    target_only: tuple[str, ...] = ()

    @property
    def touches_sessions(self) -> bool:
        return self.name == "session_memories"


def catalog_columns(conn: psycopg.Connection, tables: Sequence[str]) -> dict[str, tuple[list[str], set[str]]]:
    """Return `{table: (columns in order, generated columns)}` for the tables that exist."""
    found: dict[str, tuple[list[str], set[str]]] = {}
    for table, column, generated in conn.execute(_COLUMNS_SQL, (list(tables),)):
        cols, gen = found.setdefault(table, ([], set()))
        cols.append(column)
        if generated:
            gen.add(column)
    return found


def table_specs(source: str, source_cols: dict[str, tuple[list[str], set[str]]], target: str,
                target_cols: dict[str, tuple[list[str], set[str]]], tables: Sequence[str]) -> list[TableSpec]:
    """Check that both sides have each table with the same columns and return the specs.

    An optional table (pgvector only) missing on either side is left out; an
    optional column missing on either side is dropped from the spec.
    Raises `SchemaError` naming the provider and what is missing or different.
    """
    specs = []
    for table in tables:
        if table in OPTIONAL_TABLES and (table not in source_cols or table not in target_cols):
            continue
        for name, cols in ((source, source_cols), (target, target_cols)):
            if table not in cols:
                raise SchemaError(f"provider {name} has no table {table}; run `agent-factory schema deploy`")
            missing = [c for c in REQUIRED if c not in cols[table][0]]
            if missing:
                raise SchemaError(f"provider {name}: table {table} lacks {', '.join(missing)} (migrations "
                                  "0002/0003 not applied?); run `agent-factory schema deploy`")
        skip = {LOCAL_COLUMN, *DERIVED}
        src = [c for c in source_cols[table][0] if c not in source_cols[table][1] and c not in skip]
        dst = [c for c in target_cols[table][0] if c not in target_cols[table][1] and c not in skip]
        one_sided = (set(src) ^ set(dst)) & set(OPTIONAL_COLUMNS.get(table, ()))
        target_only = tuple(sorted(c for c in one_sided if c in dst))
        src = [c for c in src if c not in one_sided]
        dst = [c for c in dst if c not in one_sided]
        if set(src) != set(dst):
            only_src = sorted(set(src) - set(dst))
            only_dst = sorted(set(dst) - set(src))
            raise SchemaError(
                f"table {table} differs between providers {source} and {target} (only on {source}: "
                f"{only_src or 'none'}; only on {target}: {only_dst or 'none'}); deploy the same schema on both "
                "with `agent-factory schema deploy`")
        specs.append(TableSpec(table, tuple(dst), tuple(PARENTS.get(table, {}).items()), target_only))
    return specs


# ---- statements ---------------------------------------------------------------------


def _ident_list(names: Sequence[str], prefix: str | None = None) -> sql.Composable:
    if prefix is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)


def version_key(alias: str) -> sql.Composable:
    """Return the SQL row `(updated_at, write_id)` of the row named `alias`: the greater one wins."""
    return sql.SQL("({a}.updated_at, {a}.write_id)").format(a=sql.Identifier(alias))


def copy_out_sql(spec: TableSpec, *, resume: bool, batch_size: int) -> sql.Composed:
    """Return the COPY of the next batch of changed rows (data columns, then changed_at) in (changed_at, id) order.

    Parameters: `since` (timestamptz, None for -infinity), `after_id` (uuid, when `resume`), `until`.
    """
    since = sql.SQL("coalesce(%(since)s::timestamptz, '-infinity')")
    start = (sql.SQL("(changed_at, id) > ({since}, %(after_id)s::uuid)") if resume
             else sql.SQL("changed_at >= {since}")).format(since=since)
    return sql.SQL(
        "COPY (SELECT {cols}, changed_at FROM {table} WHERE {start} AND changed_at < %(until)s::timestamptz "
        "ORDER BY changed_at, id LIMIT {limit}) TO STDOUT (FORMAT binary)"
    ).format(cols=_ident_list(spec.columns), table=sql.Identifier(spec.name), start=start,
             limit=sql.Literal(batch_size))


def _after_cursor(resume: bool) -> sql.Composable:
    since = sql.SQL("coalesce(%(since)s::timestamptz, '-infinity')")
    return (sql.SQL("(changed_at, id) > ({since}, %(after_id)s::uuid)") if resume
            else sql.SQL("changed_at >= {since}")).format(since=since)


def batch_summary_sql(spec: TableSpec, *, resume: bool, batch_size: int) -> sql.Composed:
    """Return the source query that sizes the next bulk batch: rows, tombstones, session ids, last (changed_at, id),
    the oldest updated_at.

    Same parameters as `copy_out_sql`; the last changed_at is None for -infinity.
    """
    sessions = (sql.SQL("coalesce(array_agg(DISTINCT session_id::text), '{}')") if spec.touches_sessions
                else sql.SQL("'{}'::text[]"))
    return sql.SQL("""
        SELECT count(*), count(*) FILTER (WHERE deleted_at IS NOT NULL), {sessions},
               (array_agg(CASE WHEN isfinite(changed_at) THEN changed_at END ORDER BY changed_at DESC, id DESC))[1],
               (array_agg(id ORDER BY changed_at DESC, id DESC))[1], min(updated_at)
        FROM (SELECT changed_at, id, deleted_at, updated_at{session_col} FROM {table}
              WHERE {start} AND changed_at < %(until)s::timestamptz
              ORDER BY changed_at, id LIMIT {limit}) AS batch""").format(
        sessions=sessions, session_col=sql.SQL(", session_id") if spec.touches_sessions else sql.SQL(""),
        table=sql.Identifier(spec.name), start=_after_cursor(resume), limit=sql.Literal(batch_size))


def copy_window_sql(spec: TableSpec, *, resume: bool) -> sql.Composed:
    """Return the COPY of the data columns of the rows after the cursor up to (last_ts, last_id), inclusive."""
    return sql.SQL(
        "COPY (SELECT {cols} FROM {table} WHERE {start} AND changed_at < %(until)s::timestamptz "
        "AND (changed_at, id) <= (coalesce(%(last_ts)s::timestamptz, '-infinity'), %(last_id)s::uuid) "
        "ORDER BY changed_at, id) TO STDOUT (FORMAT binary)"
    ).format(cols=_ident_list(spec.columns), table=sql.Identifier(spec.name), start=_after_cursor(resume))


def copy_into_table_sql(spec: TableSpec) -> sql.Composed:
    """Return the COPY straight into the table (a bulk batch into a table that was empty on the target)."""
    return sql.SQL("COPY {table} ({cols}) FROM STDIN (FORMAT binary)").format(
        table=sql.Identifier(spec.name), cols=_ident_list(spec.columns))


STAGE = "agent_factory_sync_stage"
# Every batch transaction: the target's statistics lag behind a table a sync is filling, so joins
# (the merge's, recompute_session's) must probe indexes, never hash or merge a scan of the whole table.
PLAN_SETTINGS = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; "


def create_stage_sql(spec: TableSpec) -> sql.Composed:
    """Return the start of a batch transaction: plan settings and this transaction's staging table.

    The staging table holds the data columns plus `src_changed_at`. It has no
    statistics, so hash and merge joins are turned off for the transaction: a
    batch must probe the target's primary key, never scan the whole table
    (which made a 1M-row sync quadratic).
    """
    return sql.SQL(
        PLAN_SETTINGS + "CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
        "SELECT {cols}, changed_at AS src_changed_at FROM {table} WITH NO DATA"
    ).format(stage=sql.Identifier(STAGE), cols=_ident_list(spec.columns), table=sql.Identifier(spec.name))


def copy_in_sql(spec: TableSpec) -> sql.Composed:
    """Return the COPY into the staging table (same columns as `copy_out_sql`)."""
    return sql.SQL("COPY {stage} ({cols}, src_changed_at) FROM STDIN (FORMAT binary)").format(
        stage=sql.Identifier(STAGE), cols=_ident_list(spec.columns))


def _parents_ok(spec: TableSpec, alias: str) -> sql.Composable:
    if not spec.parents:
        return sql.SQL("true")
    return sql.SQL(" AND ").join(
        sql.SQL("({a}.{col} IS NULL OR EXISTS (SELECT FROM {parent} p WHERE p.id = {a}.{col}))").format(
            a=sql.Identifier(alias), col=sql.Identifier(col), parent=sql.Identifier(parent))
        for col, parent in spec.parents)


def merge_sql(spec: TableSpec, *, dry_run: bool, bulk: bool = False) -> sql.Composed:
    """Return the one statement that merges the staging table into the table and reports the batch.

    With `bulk` (the table was empty on the target when the run began) the rows
    are inserted with no conflict handling and no comparison: a row that is
    there after all raises `UniqueViolation`, and the caller retries the batch
    without `bulk`.

    Parameter `prev` (timestamptz, None for -infinity): the pair's previous watermark; a differing target
    row changed after it counts as a conflict (both sides changed since the last sync).
    Returns one row: rows written, tombstones written, conflicts, rows in the batch,
    the batch's last (src_changed_at, id), the number of deferred rows and the earliest src_changed_at of a deferred
    row (its parent is not on the target yet), the session ids of the batch (written or
    not: their derived figures are rebuilt on the target either way) and the oldest
    `updated_at` of the rows written (None when none was); timestamps
    come back as None for -infinity (rows older than migration 0003).
    """
    table = sql.Identifier(spec.name)
    stage = sql.Identifier(STAGE)
    incoming, current = version_key("s"), version_key("t")
    session_col = sql.SQL("s.session_id") if spec.touches_sessions else sql.SQL("NULL::text")
    if bulk and not dry_run:
        compare = sql.SQL("""
        SELECT s.id, s.src_changed_at, {session_col} AS session_id, {parents_ok} AS ready, false AS conflict
        FROM {stage} s""").format(session_col=session_col, parents_ok=_parents_ok(spec, "s"), stage=stage)
        written: sql.Composable = sql.SQL("""
            INSERT INTO {table} ({cols}) SELECT {scols} FROM {stage} s WHERE {parents_ok}
            RETURNING id, deleted_at IS NOT NULL AS tomb, updated_at""").format(
            table=table, cols=_ident_list(spec.columns), scols=_ident_list(spec.columns, "s"), stage=stage,
            parents_ok=_parents_ok(spec, "s"))
        return _report(compare, written, stage)
    compare = sql.SQL("""
        SELECT s.id, s.src_changed_at, s.deleted_at IS NOT NULL AS tomb, {session_col} AS session_id, s.updated_at,
               {parents_ok} AS ready,
               t.id IS NOT NULL AND {incoming} IS DISTINCT FROM {current}
                   AND t.updated_at >= coalesce(%(prev)s::timestamptz, '-infinity') AS conflict,
               t.id IS NULL OR {incoming} > {current} AS wins
        FROM {stage} s LEFT JOIN {table} t ON t.id = s.id""").format(
        session_col=session_col, parents_ok=_parents_ok(spec, "s"), incoming=incoming, current=current,
        stage=stage, table=table)
    if dry_run:
        written = sql.SQL("SELECT id, tomb, session_id, updated_at FROM cmp WHERE ready AND wins")
    else:
        updates = sql.SQL(", ").join(
            [sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in spec.columns if c != "id"]
            + [sql.SQL("{c} = NULL").format(c=sql.Identifier(c)) for c in spec.target_only])
        returning_session = sql.SQL("t.session_id") if spec.touches_sessions else sql.SQL("NULL::text")
        written = sql.SQL("""
            INSERT INTO {table} AS t ({cols})
            SELECT {scols} FROM {stage} s WHERE {parents_ok}
            ON CONFLICT (id) DO UPDATE SET {updates}
            WHERE {excluded} > {current}
            RETURNING t.id, t.deleted_at IS NOT NULL AS tomb, {returning_session} AS session_id,
                      t.updated_at""").format(
            table=table, cols=_ident_list(spec.columns), scols=_ident_list(spec.columns, "s"), stage=stage,
            parents_ok=_parents_ok(spec, "s"), updates=updates, excluded=version_key("excluded"),
            current=current, returning_session=returning_session)
    return _report(compare, written, stage)


def _report(compare: sql.Composable, written: sql.Composable, stage: sql.Composable) -> sql.Composed:
    return sql.SQL("""
        WITH cmp AS ({compare}), written AS ({written}),
        last AS (SELECT src_changed_at, id FROM {stage} ORDER BY src_changed_at DESC, id DESC LIMIT 1)
        SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM written WHERE tomb),
               (SELECT count(*) FROM cmp WHERE conflict), (SELECT count(*) FROM cmp),
               (SELECT CASE WHEN isfinite(src_changed_at) THEN src_changed_at END FROM last), (SELECT id FROM last),
               (SELECT count(*) FROM cmp WHERE NOT ready),
               (SELECT CASE WHEN isfinite(m) THEN m END
                  FROM (SELECT min(src_changed_at) AS m FROM cmp WHERE NOT ready) d),
               (SELECT coalesce(array_agg(DISTINCT session_id::text), '{{}}') FROM cmp WHERE session_id IS NOT NULL),
               (SELECT min(updated_at) FROM written)
    """).format(compare=compare, written=written, stage=stage)
