"""The statements of `AgentFactoryStore` (migration 0005): writes, reads, search, namespaces, TTL sweep.

Kept apart from the adapter so the adapter reads as the LangGraph contract and
this module as the storage. Every statement is one round trip.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from ...errors import InvalidInputError
from ...vector import RUNTIME_INDEX_PREFIX

ITEMS = "langgraph_store"
VECTORS = "langgraph_store_vectors"
_LIVE = "s.deleted_at IS NULL"
_NOT_EXPIRED = "(s.expires_at IS NULL OR s.expires_at > now())"
_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def item_id(prefix: str, key: str) -> uuid.UUID:
    """Return the row id of an item: the CHECK of migration 0005 holds every writer to it."""
    return uuid.UUID(hashlib.md5(f"agent_factory/store/{prefix}\x1f{key}".encode()).hexdigest())


def vector_id(prefix: str, key: str, field: str) -> uuid.UUID:
    """Return the row id of one indexed field of an item."""
    return uuid.UUID(hashlib.md5(f"agent_factory/store-vector/{prefix}\x1f{key}\x1f{field}".encode()).hexdigest())


def hnsw_index_name(dims: int) -> str:
    """Return the name of the run-time HNSW index for `dims` (not drift, see agent_factory/vector.py)."""
    return f"{RUNTIME_INDEX_PREFIX}store_hnsw_{dims}"


def create_hnsw_sql(dims: int) -> str:
    """Return the DDL of the partial HNSW cosine index over the vectors of `dims` dimensions."""
    return (f"CREATE INDEX IF NOT EXISTS {hnsw_index_name(dims)} ON {VECTORS} "
            f"USING hnsw ((embedding::vector({dims})) vector_cosine_ops) WHERE dims = {dims} AND deleted_at IS NULL")


def write_sql(with_vectors: bool) -> str:
    """Return the one statement that writes a batch's puts and deletes (and their vectors).

    Parameters: ids, prefixes, keys, vals (jsonb text), ttls, dels (bool), now, write_id;
    with vectors also v_ids, v_items, v_fields, v_embs (vector[]).
    A delete is a tombstone; the item's vectors not written by this version become tombstones too.
    """
    items = f"""
    WITH incoming AS (
        SELECT * FROM unnest(%(ids)s::uuid[], %(prefixes)s::text[], %(keys)s::text[], %(vals)s::jsonb[],
                             %(ttls)s::float8[], %(dels)s::bool[]) AS u(id, prefix, key, value, ttl_minutes, is_delete)
    ), items AS (
        INSERT INTO {ITEMS} AS t (id, prefix, key, value, created_at, updated_at, write_id, deleted_at,
                                  expires_at, ttl_minutes)
        SELECT id, prefix, key, value, %(now)s, %(now)s, %(write_id)s, CASE WHEN is_delete THEN %(now)s END,
               CASE WHEN ttl_minutes IS NOT NULL AND NOT is_delete
                    THEN %(now)s::timestamptz + make_interval(secs => ttl_minutes * 60) END,
               CASE WHEN NOT is_delete THEN ttl_minutes END
        FROM incoming
        ON CONFLICT (id) DO UPDATE SET
            value = excluded.value, updated_at = excluded.updated_at, write_id = excluded.write_id,
            deleted_at = excluded.deleted_at, expires_at = excluded.expires_at, ttl_minutes = excluded.ttl_minutes,
            created_at = CASE WHEN t.deleted_at IS NULL THEN t.created_at ELSE excluded.created_at END
        RETURNING t.id
    )"""
    if not with_vectors:
        return items + " SELECT count(*) FROM items"
    return items + f""", stale AS (
        UPDATE {VECTORS} SET deleted_at = %(now)s, updated_at = %(now)s, write_id = %(write_id)s
        WHERE item_id = ANY(%(ids)s::uuid[]) AND deleted_at IS NULL AND id <> ALL(%(v_ids)s::uuid[])
        RETURNING id
    ), vectors AS (
        INSERT INTO {VECTORS} AS t (id, item_id, field_name, dims, embedding, updated_at, write_id)
        SELECT v.id, v.item_id, v.field_name, vector_dims(v.embedding), v.embedding, %(now)s, %(write_id)s
        FROM unnest(%(v_ids)s::uuid[], %(v_items)s::uuid[], %(v_fields)s::text[], %(v_embs)s::vector[])
             AS v(id, item_id, field_name, embedding)
        ON CONFLICT (id) DO UPDATE SET
            item_id = excluded.item_id, field_name = excluded.field_name, dims = excluded.dims,
            embedding = excluded.embedding, updated_at = excluded.updated_at, write_id = excluded.write_id,
            deleted_at = NULL
        RETURNING t.id
    )
    SELECT count(*) FROM items"""  # every data-modifying CTE runs, read or not


_COLUMNS = "s.id, s.prefix, s.key, s.value, s.created_at, s.updated_at"


def _refreshing(select: str, refresh: bool, only: str = "true") -> str:
    """Wrap a SELECT of items so that their TTL is refreshed (server clock) in the same statement.

    The refresh moves expires_at only: it makes no new version (see migration 0005).
    """
    if not refresh:
        return select
    return f"""
    WITH found AS ({select}), refreshed AS (
        UPDATE {ITEMS} s SET expires_at = now() + make_interval(secs => s.ttl_minutes * 60)
        FROM found WHERE s.id = found.id AND {only} AND s.ttl_minutes IS NOT NULL AND s.deleted_at IS NULL
    )
    SELECT * FROM found"""


def get_sql(omit_expired: bool, refresh: bool) -> str:
    """Return the read of items by id (parameter `ids`, and `refresh_ids` for the ones to refresh)."""
    expiry = f" AND {_NOT_EXPIRED}" if omit_expired else ""
    select = (f"SELECT {_COLUMNS}, NULL::float8 AS score FROM {ITEMS} s"
              f" WHERE s.id = ANY(%(ids)s::uuid[]) AND {_LIVE}{expiry}")
    return _refreshing(select, refresh, "s.id = ANY(%(refresh_ids)s::uuid[])")


MISSING_VECTORS_SQL = f"""
SELECT s.id, s.prefix, s.key, s.value, s.updated_at, s.write_id FROM {ITEMS} s
WHERE s.deleted_at IS NULL AND NOT EXISTS (
    SELECT 1 FROM {VECTORS} v WHERE v.item_id = s.id AND v.write_id = s.write_id AND v.deleted_at IS NULL)
ORDER BY s.id LIMIT %(limit)s"""

# Vectors of an existing item version: they carry the item's own stamps, so they make no new version.
ADD_VECTORS_SQL = f"""
INSERT INTO {VECTORS} AS t (id, item_id, field_name, dims, embedding, updated_at, write_id)
SELECT v.id, v.item_id, v.field_name, vector_dims(v.embedding), v.embedding, v.updated_at, v.write_id
FROM unnest(%(v_ids)s::uuid[], %(v_items)s::uuid[], %(v_fields)s::text[], %(v_embs)s::vector[],
            %(v_updated)s::timestamptz[], %(v_writes)s::uuid[])
     AS v(id, item_id, field_name, embedding, updated_at, write_id)
JOIN {ITEMS} s ON s.id = v.item_id AND s.write_id = v.write_id
ON CONFLICT (id) DO UPDATE SET
    item_id = excluded.item_id, field_name = excluded.field_name, dims = excluded.dims,
    embedding = excluded.embedding, updated_at = excluded.updated_at, write_id = excluded.write_id, deleted_at = NULL"""


def namespace_condition(prefix: str | None, params: dict[str, Any]) -> str:
    """Return the condition scoping items to a namespace prefix and its descendants (index-friendly)."""
    if not prefix:
        return "true"
    params["ns"] = prefix
    params["ns_like"] = re.sub(r"([\\%_])", r"\\\1", prefix) + ".%"
    return "(s.prefix = %(ns)s OR s.prefix LIKE %(ns_like)s)"


def filter_conditions(filters: dict[str, Any] | None, params: dict[str, Any]) -> list[str]:
    """Return the SQL conditions of a search filter; raise `InvalidInputError` for an unknown operator.

    `$eq`/`$ne` compare JSON values (a missing key is not equal to anything);
    `$gt/$gte/$lt/$lte` compare values of the same JSON type (numbers as numbers, strings as text).
    """
    conditions: list[str] = []
    for n, (key, spec) in enumerate((filters or {}).items()):
        ops = spec if isinstance(spec, dict) else {"$eq": spec}
        for m, (op, value) in enumerate(ops.items()):
            k, v = f"fk{n}_{m}", f"fv{n}_{m}"
            params[k], params[v] = str(key), to_json(value, what=f"filter value for {key!r}")
            if op == "$eq":
                conditions.append(f"s.value->%({k})s = %({v})s::jsonb")
            elif op == "$ne":
                conditions.append(f"s.value->%({k})s IS DISTINCT FROM %({v})s::jsonb")
            elif op in _COMPARE:
                conditions.append(f"(jsonb_typeof(s.value->%({k})s) = jsonb_typeof(%({v})s::jsonb) "
                                  f"AND s.value->%({k})s {_COMPARE[op]} %({v})s::jsonb)")
            else:
                raise InvalidInputError(
                    f"unsupported filter operator {op!r} for {key!r}; use $eq, $ne, $gt, $gte, $lt or $lte")
    return conditions


def search_sql(where: Sequence[str], *, semantic_dims: int | None, refresh: bool) -> str:
    """Return one search: filtered items by recency, or (with `semantic_dims`) by cosine similarity.

    Parameters: those of the conditions, `limit`, `offset`; semantic: `query_vec`, `expanded`.
    """
    cond = " AND ".join(where) or "true"
    if semantic_dims is None:
        select = (f"SELECT {_COLUMNS}, NULL::float8 AS score FROM {ITEMS} s WHERE {cond} "
                  "ORDER BY s.updated_at DESC, s.id LIMIT %(limit)s OFFSET %(offset)s")
    else:
        d = int(semantic_dims)
        select = f"""
        SELECT id, prefix, key, value, created_at, updated_at, score FROM (
            SELECT DISTINCT ON (id) * FROM (
                SELECT {_COLUMNS}, 1 - (v.embedding::vector({d}) <=> %(query_vec)s::vector({d})) AS score
                FROM {VECTORS} v JOIN {ITEMS} s ON s.id = v.item_id AND s.write_id = v.write_id
                WHERE v.dims = {d} AND v.deleted_at IS NULL AND {cond}
                ORDER BY v.embedding::vector({d}) <=> %(query_vec)s::vector({d})
                LIMIT %(expanded)s
            ) scored ORDER BY id, score DESC
        ) uniq ORDER BY score DESC, id LIMIT %(limit)s OFFSET %(offset)s"""
    return _refreshing(select, refresh)


def list_namespaces_sql(conditions: Sequence[tuple[str, tuple[str, ...]]], max_depth: int | None,
                        omit_expired: bool, params: dict[str, Any]) -> str:
    """Return the distinct namespaces (truncated to `max_depth` labels) matching prefix/suffix conditions."""
    where = [_LIVE] + ([_NOT_EXPIRED] if omit_expired else [])
    for n, (match_type, path) in enumerate(conditions):
        if not path:
            continue
        params[f"re{n}"] = match_pattern(path, match_type)
        where.append(f"s.prefix ~ %(re{n})s")
    params["depth"] = max_depth
    return f"""
    SELECT DISTINCT CASE WHEN %(depth)s::int IS NULL THEN s.prefix
                         ELSE array_to_string((string_to_array(s.prefix, '.'))[1:%(depth)s::int], '.') END AS ns
    FROM {ITEMS} s WHERE {' AND '.join(where)}
    ORDER BY ns LIMIT %(limit)s OFFSET %(offset)s"""


def match_pattern(path: tuple[str, ...], match_type: str) -> str:
    """Return the POSIX regex matching a dotted prefix on whole labels (`*` matches one label)."""
    body = r"\.".join("[^.]+" if part == "*" else re.escape(part) for part in path)
    if match_type == "prefix":
        return "^" + body + r"(\.|$)"
    if match_type == "suffix":
        return r"(^|\.)" + body + "$"
    raise InvalidInputError(f"unknown namespace match type {match_type!r}; use prefix or suffix")


SWEEP_SQL = f"""
WITH expired AS (
    UPDATE {ITEMS} SET deleted_at = expires_at, updated_at = greatest(expires_at, updated_at),
                       write_id = gen_random_uuid()
    WHERE deleted_at IS NULL AND expires_at IS NOT NULL AND expires_at <= now()
    RETURNING id, updated_at, write_id
)
SELECT count(*) FROM expired"""

SWEEP_WITH_VECTORS_SQL = SWEEP_SQL.replace("SELECT count(*) FROM expired", f"""
, vectors AS (
    UPDATE {VECTORS} v SET deleted_at = e.updated_at, updated_at = e.updated_at, write_id = e.write_id
    FROM expired e WHERE v.item_id = e.id AND v.deleted_at IS NULL
    RETURNING v.id
)
SELECT count(*) FROM expired""")


def to_json(value: Any, *, what: str) -> str:
    """Serialise `value` as strict JSON text; raise `InvalidInputError` naming `what` when it is not JSON."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} is not JSON-serialisable: {exc}") from None
