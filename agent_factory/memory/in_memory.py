"""`InMemoryStorage`: the memory API in process memory, row for row like `PostgresMemoryStorage`.

It keeps the same rows as the PostgreSQL tables (same ids, versions
(`updated_at`, `write_id`), tombstones, derived `message_count`/`last_active`)
and applies the same rules (last writer wins, stale saves and deletes change
nothing), so the one contract test suite passes on both. Data is lost when the process ends: it is
the runbook's stop-gap when every provider is down, and a fast test double.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import SessionNotFoundError
from .base import (
    DELETED_USER,
    MemoryStorage,
    PageCursor,
    PreparedMessages,
    PreparedSession,
    check_owner,
    session_from_rows,
    summary_from_row,
)
from .ids import WriteStamp, message_row_id, session_row_id
from .session import MemoryAtom, Message, Session, SessionSummary


@dataclass
class _Row:
    id: uuid.UUID
    session_id: str
    user_id: str
    memory_type: str
    message_index: int | None
    content: dict[str, Any]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    write_id: uuid.UUID
    deleted_at: datetime | None = None
    message_count: int | None = None  # derived, metadata rows only
    last_active: datetime | None = None  # derived, metadata rows only

    def older_than(self, stamp: WriteStamp) -> bool:
        """Return whether a write with `stamp` may replace this row (last writer wins)."""
        return stamp.newer_than(self.updated_at, self.write_id)

    def newer_than(self, stamp: WriteStamp) -> bool:
        """Return whether this row is newer than a write with `stamp` (a replay of that write is not)."""
        return (self.updated_at, self.write_id.bytes) > (stamp.updated_at, stamp.write_id.bytes)

    def version(self, stamp: WriteStamp) -> None:
        self.updated_at, self.write_id = stamp.updated_at, stamp.write_id

    def tombstone(self, stamp: WriteStamp) -> None:
        self.deleted_at = stamp.updated_at
        self.version(stamp)


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy with jsonb's semantics (tuples become lists, str subclasses str, ...)."""
    copied: dict[str, Any] = json.loads(json.dumps(value))
    return copied


class InMemoryStorage(MemoryStorage):
    """The memory API in process memory; thread-safe; nothing survives the process."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._rows: dict[uuid.UUID, _Row] = {}
        self._sessions: dict[str, dict[uuid.UUID, _Row]] = {}  # session_id -> its rows by id

    def __repr__(self) -> str:
        return f"InMemoryStorage(rows={len(self._rows)})"

    def row_count(self, include_deleted: bool = True) -> int:
        """Return how many rows are stored (deleted ones too unless told otherwise)."""
        with self._lock:
            return sum(1 for r in self._rows.values() if include_deleted or r.deleted_at is None)

    def _add(self, row: _Row) -> _Row:
        self._rows[row.id] = row
        self._sessions.setdefault(row.session_id, {})[row.id] = row
        return row

    def _meta(self, session_id: str) -> _Row | None:
        return self._rows.get(session_row_id(session_id))

    def _live_messages(self, session_id: str) -> list[_Row]:
        rows = [r for r in self._sessions.get(session_id, {}).values()
                if r.message_index is not None and r.deleted_at is None]
        rows.sort(key=lambda r: r.id)
        return rows

    def _put_messages(self, session_id: str, user_id: str, base: int, messages: PreparedMessages,
                      stamp: WriteStamp, *, update: bool) -> int:
        """Insert (and with `update`, rewrite older changed) message rows; return how many were inserted."""
        inserted = 0
        for offset, (row_id, memory_type, text, created, metadata) in enumerate(zip(
                messages.ids, messages.memory_types, messages.contents, messages.timestamps, messages.metadata,
                strict=True)):
            content = {"role": memory_type[8:], "content": text}
            row = self._rows.get(row_id)
            if row is None:
                self._add(_Row(row_id, session_id, user_id, memory_type, base + offset, content,
                               _copy(metadata), created, stamp.updated_at, stamp.write_id))
                inserted += 1
            elif update and row.older_than(stamp) and row.session_id == session_id and (
                    row.deleted_at is not None
                    or (row.user_id, row.memory_type, row.content, row.metadata, row.created_at)
                    != (user_id, memory_type, content, metadata, created)):
                row.user_id, row.memory_type, row.message_index = user_id, memory_type, base + offset
                row.content, row.metadata, row.created_at, row.deleted_at = content, _copy(metadata), created, None
                row.version(stamp)
        return inserted

    # ---- sessions ---------------------------------------------------------------------

    def _save_session(self, session: PreparedSession) -> None:
        sid, uid, stamp = session.session_id, session.user_id, session.stamp
        count = len(session.messages)
        with self._lock:
            meta = self._meta(sid)
            check_owner(sid, meta.user_id if meta is not None else None, uid)
            if meta is not None and meta.newer_than(stamp):
                return  # older than the session's metadata: a stale write changes nothing
            if meta is None:
                self._add(_Row(session.row_id, sid, uid, "session_metadata", None, _copy(session.content),
                               _copy(session.metadata), session.created_at, stamp.updated_at, stamp.write_id,
                               message_count=count, last_active=session.last_active))
            elif (meta.deleted_at is not None
                    or (meta.user_id, meta.content, meta.metadata, meta.created_at, meta.message_count,
                        meta.last_active)
                    != (uid, session.content, session.metadata, session.created_at, count, session.last_active)):
                meta.user_id, meta.content, meta.metadata = uid, _copy(session.content), _copy(session.metadata)
                meta.created_at, meta.deleted_at = session.created_at, None
                meta.message_count, meta.last_active = count, session.last_active
                meta.version(stamp)
            self._put_messages(sid, uid, 0, session.messages, stamp, update=True)
            keep = set(session.messages.ids)
            for row in self._live_messages(sid):
                if row.id not in keep and row.older_than(stamp):
                    row.tombstone(stamp)

    def _load_session(self, session_id: str) -> Session | None:
        with self._lock:
            meta = self._meta(session_id)
            if meta is None or meta.deleted_at is not None:
                return None
            messages = [Message(row.memory_type[8:], row.content.get("content", ""), _copy(row.metadata),
                                row.created_at, str(message_row_id(session_id, row.id)))
                        for row in self._live_messages(session_id)]
            return session_from_rows(session_id, meta.user_id, meta.created_at, meta.last_active,
                                     _copy(meta.metadata), messages)

    def _delete_session(self, session_id: str, stamp: WriteStamp) -> bool:
        with self._lock:
            meta = self._meta(session_id)
            existed = False
            if meta is not None and meta.newer_than(stamp):
                return False  # older than the session's metadata: a stale delete changes nothing
            if meta is None:
                self._add(_Row(session_row_id(session_id), session_id, DELETED_USER, "session_metadata", None, {},
                               {}, stamp.updated_at, stamp.updated_at, stamp.write_id, stamp.updated_at))
            elif meta.deleted_at is None:
                meta.tombstone(stamp)
                existed = True
            for row in self._sessions.get(session_id, {}).values():
                if row.memory_type != "session_metadata" and row.deleted_at is None and row.older_than(stamp):
                    row.tombstone(stamp)
            return existed

    def _list_sessions(self, user_id: str | None, limit: int, before: PageCursor | None) -> list[SessionSummary]:
        with self._lock:
            rows = [r for r in self._rows.values()
                    if r.memory_type == "session_metadata" and r.deleted_at is None
                    and (user_id is None or r.user_id == user_id)
                    and (before is None or (r.last_active, r.session_id) < (before.last_active, before.session_id))]
            rows.sort(key=lambda r: (r.last_active, r.session_id), reverse=True)
            return [summary_from_row(r.session_id, r.user_id, r.created_at, r.last_active, r.message_count,
                                     _copy(r.metadata)) for r in rows[:limit]]

    def _append_messages(self, session_id: str, messages: PreparedMessages, stamp: WriteStamp) -> int:
        with self._lock:
            meta = self._meta(session_id)
            if meta is None or meta.deleted_at is not None:
                raise SessionNotFoundError(session_id)
            base = meta.message_count or 0
            inserted = self._put_messages(session_id, meta.user_id, base, messages, stamp, update=False)
            meta.message_count = base + inserted
            meta.last_active = max(meta.last_active or stamp.updated_at, stamp.updated_at)
            return meta.message_count

    # ---- memory atoms ---------------------------------------------------------------------

    def _save_memory_atom(self, row_id: uuid.UUID, session_id: str, user_id: str, memory_type: str,
                          content: dict[str, Any], metadata: dict[str, Any], stamp: WriteStamp) -> None:
        with self._lock:
            meta = self._meta(session_id)
            check_owner(session_id, meta.user_id if meta is not None else None, user_id)
            if row_id not in self._rows:
                self._add(_Row(row_id, session_id, user_id, memory_type, None, _copy(content), _copy(metadata),
                               stamp.updated_at, stamp.updated_at, stamp.write_id))

    def _query_memory_atoms(self, session_id: str | None, user_id: str | None, memory_type: str | None,
                            limit: int) -> list[MemoryAtom]:
        with self._lock:
            rows = [r for r in self._rows.values()
                    if r.deleted_at is None
                    and (session_id is None or r.session_id == session_id)
                    and (user_id is None or r.user_id == user_id)
                    and (memory_type is None or r.memory_type == memory_type)]
            rows.sort(key=lambda r: (r.created_at, r.message_index is not None, r.id), reverse=True)
            positions: dict[str, dict[uuid.UUID, int]] = {}
            result = []
            for r in rows[:limit]:
                index = None
                if r.message_index is not None:
                    if r.session_id not in positions:
                        positions[r.session_id] = {m.id: i for i, m in enumerate(self._live_messages(r.session_id))}
                    index = positions[r.session_id][r.id]
                result.append(MemoryAtom(str(r.id), r.session_id, r.user_id, r.memory_type, _copy(r.content),
                                         _copy(r.metadata), index, r.created_at, r.updated_at))
            return result
