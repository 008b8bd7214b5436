"""`KnowledgeBase`: knowledge atoms upserted by `atom_id`, with ranked full-text search.

Atoms live in `knowledge_atoms`; their row id is derived from `atom_id`
(see `ids`), so an upsert replayed after failover, or on another provider,
writes the same row. Every write is one statement (one round trip) carrying
the client's clock as `updated_at`: last writer wins. Deletes are tombstones;
upserting a deleted atom (later) brings it back.
Search ranks with `ts_rank` over the generated `search_vector` (title weighs
A, summary B, content C), so a title match ranks above a content-only match.

With an embedder (`KnowledgeBase(embed=...)`), each upsert also stores an
embedding of title + summary + content (computed client-side, written in the
same statement) where the serving provider has pgvector, and search can be
semantic (cosine similarity over an HNSW index) or hybrid: reciprocal rank
fusion of the full-text and the semantic rankings in one statement. A provider
without pgvector serves text search, with a logged warning (see `search`).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ..core.database_manager import DatabaseManager
from ..errors import InvalidInputError
from ..vector import has_vector_column, to_vector
from ._database import LazyDatabase
from .embedding import Embedder, EmbeddingsLike, EmbedFunction
from .knowledge_search import COLUMNS, HYBRID_SQL, SEARCH_SQL, SEMANTIC_SQL
from .ids import atom_row_id, new_stamp
from .validation import (
    ATOM_TYPES,
    MAX_ID_LENGTH,
    MAX_LIMIT,
    check_choice,
    check_id,
    check_limit,
    check_optional_text,
    check_real,
    check_text,
    check_tsvector,
)

logger = logging.getLogger(__name__)

MAX_QUERY_LENGTH = 1000
MAX_URL_LENGTH = 2048
_DATA = ("atom_type", "title", "summary", "content", "manufacturer", "keywords", "source_url", "quality_score")


@dataclass
class KnowledgeAtom:
    """One unit of knowledge; `atom_type` is one of `ATOM_TYPES`.

    `created_at`, `updated_at` (set when read from storage), `rank` and
    `matched_by` (set by `search`) are not compared.
    """

    atom_id: str
    atom_type: str
    title: str
    content: str
    summary: str = ""
    manufacturer: str | None = None
    keywords: list[str] = field(default_factory=list)
    source_url: str | None = None
    quality_score: float | None = None
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)
    rank: float | None = field(default=None, compare=False)
    matched_by: str | None = field(default=None, compare=False)  # set by `search`: "text", "semantic" or "both"


_FIELDS = frozenset(f.name for f in fields(KnowledgeAtom))


def check_atom(value: object, field: str = "atom") -> dict[str, Any]:
    """Validate a `KnowledgeAtom` or a dict of its fields; return its stored form (a JSON-ready dict).

    Raises `InvalidInputError` naming the field.
    """
    if isinstance(value, KnowledgeAtom):
        data = asdict(value)
    elif isinstance(value, Mapping):
        unknown = set(value) - _FIELDS
        if unknown:
            raise InvalidInputError(f"{field} has unknown keys {sorted(map(str, unknown))}")
        missing = [k for k in ("atom_id", "atom_type", "title", "content") if k not in value]
        if missing:
            raise InvalidInputError(f"{field} is missing {', '.join(missing)}")
        data = dict(value)
    else:
        raise InvalidInputError(f"{field} must be a KnowledgeAtom or a dict, not {type(value).__name__}")
    atom_id = check_id(data["atom_id"], f"{field}.atom_id")
    keywords = data.get("keywords") or []
    if not isinstance(keywords, (list, tuple)):
        raise InvalidInputError(f"{field}.keywords must be a list of strings, not {type(keywords).__name__}")
    score = data.get("quality_score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score) \
                or not 0 <= score <= 1:
            raise InvalidInputError(f"{field}.quality_score must be a number from 0 to 1; got {score!r}")
        score = check_real(score, f"{field}.quality_score")
    title = check_text(data["title"], f"{field}.title", allow_empty=False)
    summary = check_text(data.get("summary") or "", f"{field}.summary")
    content = check_text(data["content"], f"{field}.content")
    check_tsvector(f"{field} (title, summary and content)", title, summary, content)
    return {
        "id": str(atom_row_id(atom_id)),
        "atom_id": atom_id,
        "atom_type": check_choice(data["atom_type"], ATOM_TYPES, f"{field}.atom_type"),
        "title": title,
        "summary": summary,
        "content": content,
        "manufacturer": check_optional_text(data.get("manufacturer"), f"{field}.manufacturer",
                                            max_length=MAX_ID_LENGTH),
        "keywords": [check_text(k, f"{field}.keywords[{i}]", max_length=MAX_ID_LENGTH, allow_empty=False)
                     for i, k in enumerate(keywords)],
        "source_url": check_optional_text(data.get("source_url"), f"{field}.source_url", max_length=MAX_URL_LENGTH),
        "quality_score": score,
    }


# Last writer wins: a row is only replaced by a write with a greater (updated_at, write_id).
_NEWER = "(t.updated_at, t.write_id) < (excluded.updated_at, excluded.write_id)"

_RECORD = """id uuid, atom_id text, atom_type text, title text, summary text, content text, manufacturer text,
         keywords text[], source_url text, quality_score real"""
_CHANGED = f"({', '.join('t.' + c for c in _DATA)}) IS DISTINCT FROM ({', '.join('excluded.' + c for c in _DATA)})"
# Embeddings of two models may differ in size, which pgvector's `=` refuses to compare.
_EMBEDDING_CHANGED = """CASE WHEN vector_dims(t.embedding) IS DISTINCT FROM vector_dims(excluded.embedding) THEN true
         ELSE t.embedding IS DISTINCT FROM excluded.embedding END"""


def _upsert_sql(embedding: str | None) -> str:
    """Return the upsert of a batch of atoms.

    `embedding` None: the table has no embedding column (no pgvector here).
    "given": each atom comes with its embedding (`%(embeddings)s`, a vector[] in the atoms' order).
    "none": no embedder; an atom whose data changes loses its embedding (it no longer describes it).
    """
    rows = "jsonb_to_recordset(%(atoms)s) AS r(" + _RECORD + ")"
    cols, values = f"{', '.join(_DATA)}", f"{', '.join('r.' + c for c in _DATA)}"
    updates = f"{', '.join(f'{c} = excluded.{c}' for c in _DATA)}"
    changed = _CHANGED
    if embedding == "given":
        rows = f"ROWS FROM (jsonb_to_recordset(%(atoms)s) AS ({_RECORD}), unnest(%(embeddings)s::vector[])) " \
               f"AS r(id, atom_id, {', '.join(_DATA)}, embedding)"
        cols, values = cols + ", embedding", values + ", r.embedding"
        updates += ", embedding = excluded.embedding"
        changed = f"{_CHANGED}\n       OR {_EMBEDDING_CHANGED}"
    elif embedding == "none":
        updates += f", embedding = CASE WHEN {_CHANGED} THEN NULL ELSE t.embedding END"
    return f"""
INSERT INTO knowledge_atoms AS t (id, atom_id, {cols}, created_at, updated_at, write_id)
SELECT r.id, r.atom_id, {values}, %(updated_at)s, %(updated_at)s, %(write_id)s
FROM {rows}
ON CONFLICT (atom_id) DO UPDATE
SET {updates}, updated_at = excluded.updated_at, write_id = excluded.write_id, deleted_at = NULL
WHERE {_NEWER}
  AND (t.deleted_at IS NOT NULL
       OR {changed})
"""


UPSERT_ATOMS_SQL = _upsert_sql(None)
UPSERT_EMBEDDED_SQL = _upsert_sql("given")
UPSERT_UNEMBEDDED_SQL = _upsert_sql("none")

# A tombstone is written even for an atom this provider never held, so that a copy
# merged from another provider stays deleted. Returns true if a live atom was deleted.
DELETE_ATOM_SQL = f"""
INSERT INTO knowledge_atoms AS t (id, atom_id, atom_type, title, content, created_at, updated_at, write_id,
                                  deleted_at)
VALUES (%(id)s, %(atom_id)s, 'concept', '', '', %(updated_at)s, %(updated_at)s, %(write_id)s, %(updated_at)s)
ON CONFLICT (atom_id) DO UPDATE
SET deleted_at = excluded.deleted_at, updated_at = excluded.updated_at, write_id = excluded.write_id
WHERE t.deleted_at IS NULL AND {_NEWER}
RETURNING xmax::text <> '0'
"""

SEARCH_MODES = ("text", "semantic", "hybrid", "auto")
_MISSING_SQL = """
SELECT id, title, summary, content, updated_at, write_id FROM knowledge_atoms
WHERE deleted_at IS NULL AND embedding IS NULL AND id > %s
ORDER BY id
LIMIT %s
"""
# A reindexed atom gets a new version (so that the sync carries its embedding), unless it changed meanwhile.
_FILL_SQL = """
UPDATE knowledge_atoms AS t
SET embedding = e.embedding, updated_at = %(updated_at)s, write_id = %(write_id)s
FROM ROWS FROM (unnest(%(ids)s::uuid[]), unnest(%(versions)s::timestamptz[]), unnest(%(write_ids)s::uuid[]),
                unnest(%(embeddings)s::vector[])) AS e(id, updated_at, write_id, embedding)
WHERE t.id = e.id AND (t.updated_at, t.write_id) = (e.updated_at, e.write_id) AND t.embedding IS NULL
  AND t.deleted_at IS NULL
"""


class KnowledgeBase(LazyDatabase):
    """Knowledge atoms in PostgreSQL: upsert by `atom_id`, get, count, search, soft delete.

    `db=None` creates a `DatabaseManager()` from the configuration on first use.
    `embed` (a callable on a list of strings, or an object with `embed_documents`
    and `embed_query` such as a LangChain `Embeddings`) turns on embeddings and the
    semantic and hybrid searches; `dims` fixes the vector size (default: the size
    of the first vector the embedder returns).
    Invalid input raises `InvalidInputError` (a `ValueError`) before any SQL runs;
    database failures raise the `DatabaseManager`'s errors.
    """

    def __init__(self, db: DatabaseManager | None = None, *, embed: EmbeddingsLike | EmbedFunction | None = None,
                 dims: int | None = None) -> None:
        super().__init__(db)
        self._embedder = None if embed is None else Embedder(embed, dims)

    def __repr__(self) -> str:
        return f"KnowledgeBase(db={self._db!r}, embed={self._embedder!r})"

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upsert(self, atom: KnowledgeAtom | Mapping[str, Any]) -> str:
        """Insert or update one atom by its `atom_id` (bringing it back if deleted); return the atom_id."""
        record = check_atom(atom)
        self._write([record])
        return str(record["atom_id"])

    def upsert_many(self, atoms: Iterable[KnowledgeAtom | Mapping[str, Any]]) -> int:
        """Insert or update atoms in one transaction (one statement); return how many distinct atom_ids.

        All atoms are validated first: one invalid atom writes nothing. When an
        atom_id appears twice, the last one wins.
        """
        if isinstance(atoms, (str, bytes, Mapping, KnowledgeAtom)) or not isinstance(atoms, Iterable):
            raise InvalidInputError(f"atoms must be a list of atoms, not {type(atoms).__name__}")
        records = {}
        for i, atom in enumerate(atoms):
            record = check_atom(atom, f"atoms[{i}]")
            records[record["atom_id"]] = record
        if records:
            self._write(list(records.values()))
        return len(records)

    def _write(self, records: list[dict[str, Any]]) -> None:
        params = {"atoms": Jsonb(records), **_stamp()}  # one version per call: a replay writes the same rows
        vectors = None
        if self._embedder is not None:  # client-side, before the round trip; a bad vector writes nothing
            vectors = [to_vector(v) for v in self._embedder.documents([embedding_text(r) for r in records])]

        def work(conn: psycopg.Connection) -> None:
            if not has_vector_column(conn, "knowledge_atoms", "embedding"):
                conn.execute(UPSERT_ATOMS_SQL, params)
            elif vectors is None:
                conn.execute(UPSERT_UNEMBEDDED_SQL, params)
            else:
                conn.execute(UPSERT_EMBEDDED_SQL, {**params, "embeddings": vectors})

        self.db.run_statement(work, idempotent=True)
        logger.debug("upserted %d knowledge atoms on provider %s", len(records), self.db.active_provider)

    def get(self, atom_id: str) -> KnowledgeAtom | None:
        """Return the live atom with this `atom_id`, or None."""
        atom_id = check_id(atom_id, "atom_id")
        sql = f"SELECT {COLUMNS} FROM knowledge_atoms WHERE atom_id = %s AND deleted_at IS NULL"

        def work(conn: psycopg.Connection) -> tuple[Any, ...] | None:
            return conn.execute(sql, (atom_id,)).fetchone()

        row = self.db.run_read(work)
        return None if row is None else KnowledgeAtom(*row)

    def count(self, atom_type: str | None = None) -> int:
        """Return how many live atoms there are (of `atom_type` if given)."""
        params: tuple[str, ...] = ()
        sql = "SELECT count(*) FROM knowledge_atoms WHERE deleted_at IS NULL"
        if atom_type is not None:
            params = (check_choice(atom_type, ATOM_TYPES, "atom_type"),)
            sql += " AND atom_type = %s"

        def work(conn: psycopg.Connection) -> int:
            return int(conn.execute(sql, params).fetchone()[0])  # type: ignore[index]

        return self.db.run_read(work)

    def search(self, query: str, limit: int = 10, atom_type: str | None = None, *,
               mode: str = "auto") -> list[KnowledgeAtom]:
        """Return live atoms matching `query`, best first, each with its `rank` and `matched_by`.

        `mode`:
        - "text": full text, `websearch_to_tsquery('english', query)` (quoted phrases,
          `or` and `-word` work; a query of stop words only matches nothing), ranked by
          `ts_rank` (title A, summary B, content C); `matched_by` "text".
        - "semantic": the atoms whose embeddings are nearest the query's (cosine
          distance over the HNSW index); `rank` is the cosine similarity.
        - "hybrid": reciprocal rank fusion (k=60) of both rankings, each over its best
          max(4 * limit, 40) atoms; `rank` is the fused score, `matched_by` "text",
          "semantic" or "both".
        - "auto" (default): hybrid with an embedder where the serving provider has pgvector, else text.
        Served from a provider without pgvector, semantic and hybrid search answer with
        the text search and log a warning naming the provider; never an error.
        Raises `InvalidInputError` for an unknown mode, or semantic/hybrid without an embedder.
        """
        query = check_text(query, "query", max_length=MAX_QUERY_LENGTH, allow_empty=False)
        mode = check_choice(mode, SEARCH_MODES, "mode")
        limit = check_limit(limit)
        params: dict[str, Any] = {"query": query, "limit": limit, "candidates": min(max(4 * limit, 40), MAX_LIMIT)}
        type_filter = ""
        if atom_type is not None:
            params["atom_type"] = check_choice(atom_type, ATOM_TYPES, "atom_type")
            type_filter = " AND atom_type = %(atom_type)s"
        if mode in ("semantic", "hybrid") and self._embedder is None:
            raise InvalidInputError(f"search mode {mode!r} needs an embedder: KnowledgeBase(embed=...)")
        wanted = "hybrid" if mode == "auto" else mode
        if self._embedder is not None and wanted != "text":
            vector = self._embedder.query(query)
            params["embedding"] = to_vector(vector)
            sql = (HYBRID_SQL if wanted == "hybrid" else SEMANTIC_SQL).format(
                dims=len(vector), type_filter=type_filter)
        else:
            wanted, sql = "text", ""
        text_sql = SEARCH_SQL.format(type_filter=type_filter)

        def work(conn: psycopg.Connection) -> tuple[bool, list[tuple[Any, ...]]]:
            if wanted != "text" and has_vector_column(conn, "knowledge_atoms", "embedding"):
                return False, conn.execute(sql, params).fetchall()
            return wanted != "text", conn.execute(text_sql, params).fetchall()

        degraded, rows = self.db.run_read(work)
        if degraded:
            logger.warning("knowledge search (%s) served by provider %s answers with text search only: "
                           "pgvector missing there", mode, self.db.active_provider)
        return [KnowledgeAtom(*row) for row in rows]

    def reindex(self, batch_size: int = 100) -> int:
        """Embed the live atoms that have no embedding, `batch_size` at a time; return how many were filled.

        Each batch is one read, one call to the embedder and one write; an atom
        changed since it was read is left for its writer (or the next reindex).
        Raises `InvalidInputError` without an embedder or for a bad `batch_size`.
        On a provider without pgvector it logs a warning and returns 0.
        """
        if self._embedder is None:
            raise InvalidInputError("reindex needs an embedder: KnowledgeBase(embed=...)")
        batch_size = check_limit(batch_size, "batch_size")
        filled, after = 0, uuid.UUID(int=0)
        while True:
            def read(conn: psycopg.Connection, after: uuid.UUID = after) -> list[tuple[Any, ...]] | None:
                if not has_vector_column(conn, "knowledge_atoms", "embedding"):
                    return None
                return conn.execute(_MISSING_SQL, (after, batch_size)).fetchall()

            rows = self.db.run_read(read)
            if rows is None:
                logger.warning("knowledge reindex skipped on provider %s: pgvector missing there",
                               self.db.active_provider)
                return filled
            if not rows:
                return filled
            texts = [embedding_text({"title": r[1], "summary": r[2], "content": r[3]}) for r in rows]
            params = {"ids": [r[0] for r in rows], "versions": [r[4] for r in rows], "write_ids": [r[5] for r in rows],
                      "embeddings": [to_vector(v) for v in self._embedder.documents(texts)], **_stamp()}

            def write(conn: psycopg.Connection) -> int:
                if not has_vector_column(conn, "knowledge_atoms", "embedding"):
                    return 0
                return conn.execute(_FILL_SQL, params).rowcount  # noqa: B023 - run in this iteration

            filled += self.db.run_statement(write, idempotent=True)
            logger.debug("reindexed %d knowledge atoms on provider %s", filled, self.db.active_provider)
            after = rows[-1][0]
            if len(rows) < batch_size:
                return filled

    def delete(self, atom_id: str) -> bool:
        """Delete the atom (a tombstone, written even if the atom is not here); return whether a live atom was deleted.

        A deletion older than the atom's last write (by the writers' clocks) changes nothing.
        """
        atom_id = check_id(atom_id, "atom_id")
        params = {"id": atom_row_id(atom_id), "atom_id": atom_id, **_stamp()}

        def work(conn: psycopg.Connection) -> bool:
            row = conn.execute(DELETE_ATOM_SQL, params).fetchone()
            return bool(row and row[0])

        return self.db.run_statement(work, idempotent=True)


def embedding_text(record: Mapping[str, Any]) -> str:
    """Return the text an atom's embedding describes: title, summary and content, blank-line separated."""
    return "\n\n".join(part for part in (record["title"], record["summary"], record["content"]) if part)


def _stamp() -> dict[str, Any]:
    stamp = new_stamp()
    return {"updated_at": stamp.updated_at, "write_id": stamp.write_id}
