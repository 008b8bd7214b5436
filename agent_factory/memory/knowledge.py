"""`KnowledgeBase`: knowledge atoms upserted by `atom_id`, with ranked full-text search.

Atoms live in `knowledge_atoms`; their row id is derived from `atom_id`
(see `ids`), so an upsert replayed after failover, or on another provider,
writes the same row. Every write is one statement (one round trip) carrying
the client's clock as `updated_at`: last writer wins. Deletes are tombstones;
upserting a deleted atom (later) brings it back.
Search ranks with `ts_rank` over the generated `search_vector` (title weighs
A, summary B, content C), so a title match ranks above a content-only match.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ..core.database_manager import DatabaseManager
from ..errors import InvalidInputError
from ._database import LazyDatabase
from .ids import atom_row_id, new_stamp
from .validation import (
    ATOM_TYPES,
    MAX_ID_LENGTH,
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
_COLUMNS = "atom_id, atom_type, title, content, summary, manufacturer, keywords, source_url, quality_score, " \
           "created_at, updated_at"
_DATA = ("atom_type", "title", "summary", "content", "manufacturer", "keywords", "source_url", "quality_score")


@dataclass
class KnowledgeAtom:
    """One unit of knowledge; `atom_type` is one of `ATOM_TYPES`.

    `created_at`, `updated_at` (set when read from storage) and `rank` (set by
    `search`) are not compared.
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

UPSERT_ATOMS_SQL = f"""
INSERT INTO knowledge_atoms AS t (id, atom_id, {", ".join(_DATA)}, created_at, updated_at, write_id)
SELECT r.id, r.atom_id, {", ".join("r." + c for c in _DATA)}, %(updated_at)s, %(updated_at)s, %(write_id)s
FROM jsonb_to_recordset(%(atoms)s) AS r(id uuid, atom_id text, atom_type text, title text, summary text,
                                        content text, manufacturer text, keywords text[], source_url text,
                                        quality_score real)
ON CONFLICT (atom_id) DO UPDATE
SET {", ".join(f"{c} = excluded.{c}" for c in _DATA)}, updated_at = excluded.updated_at,
    write_id = excluded.write_id, deleted_at = NULL
WHERE {_NEWER}
  AND (t.deleted_at IS NOT NULL
       OR ({", ".join("t." + c for c in _DATA)}) IS DISTINCT FROM ({", ".join("excluded." + c for c in _DATA)}))
"""

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

SEARCH_SQL = f"""
SELECT {_COLUMNS}, ts_rank(search_vector, q) AS rank
FROM knowledge_atoms, websearch_to_tsquery('english', %(query)s) AS q
WHERE deleted_at IS NULL AND search_vector @@ q{{type_filter}}
ORDER BY rank DESC, atom_id
LIMIT %(limit)s
"""


class KnowledgeBase(LazyDatabase):
    """Knowledge atoms in PostgreSQL: upsert by `atom_id`, get, count, search, soft delete.

    `db=None` creates a `DatabaseManager()` from the configuration on first use.
    Invalid input raises `InvalidInputError` (a `ValueError`) before any SQL runs;
    database failures raise the `DatabaseManager`'s errors.
    """

    def __init__(self, db: DatabaseManager | None = None) -> None:
        super().__init__(db)

    def __repr__(self) -> str:
        return f"KnowledgeBase(db={self._db!r})"

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

        def work(conn: psycopg.Connection) -> None:
            conn.execute(UPSERT_ATOMS_SQL, params)

        self.db.run_statement(work, idempotent=True)
        logger.debug("upserted %d knowledge atoms on provider %s", len(records), self.db.active_provider)

    def get(self, atom_id: str) -> KnowledgeAtom | None:
        """Return the live atom with this `atom_id`, or None."""
        atom_id = check_id(atom_id, "atom_id")
        sql = f"SELECT {_COLUMNS} FROM knowledge_atoms WHERE atom_id = %s AND deleted_at IS NULL"

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

    def search(self, query: str, limit: int = 10, atom_type: str | None = None) -> list[KnowledgeAtom]:
        """Return live atoms matching `query` (web-search syntax), best first, each with its `rank`.

        Uses `websearch_to_tsquery('english', query)`: quoted phrases, `or` and
        `-word` work. A query of stop words only matches nothing.
        """
        query = check_text(query, "query", max_length=MAX_QUERY_LENGTH, allow_empty=False)
        params: dict[str, Any] = {"query": query, "limit": check_limit(limit)}
        type_filter = ""
        if atom_type is not None:
            params["atom_type"] = check_choice(atom_type, ATOM_TYPES, "atom_type")
            type_filter = " AND atom_type = %(atom_type)s"
        sql = SEARCH_SQL.format(type_filter=type_filter)

        def work(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        return [KnowledgeAtom(*row) for row in self.db.run_read(work)]

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


def _stamp() -> dict[str, Any]:
    stamp = new_stamp()
    return {"updated_at": stamp.updated_at, "write_id": stamp.write_id}
