"""`InMemoryStorage`: the memory API in process memory, row for row like `PostgresMemoryStorage`.

It keeps the same rows as the PostgreSQL tables (same ids, soft deletes,
`created_at`/`updated_at` per call) and applies the same rules, so the one
contract test suite passes on both. Data is lost when the process ends: it is
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
from .base import MemoryStorage, PreparedMessages, PreparedSession, session_from_rows, summary_from_row
from .ids import message_row_id
from .session import MemoryAtom, Message, Session, SessionSummary, utcnow


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
    deleted_at: datetime | None = None

    def put(self, user_id: str, memory_type: str, content: dict[str, Any], metadata: dict[str, Any],
            created_at: datetime, now: datetime) -> None:
        """Update the row as `ON CONFLICT DO UPDATE ... WHERE changed` does: only if something differs."""
        new = (user_id, memory_type, content, metadata, created_at)
        if self.deleted_at is None and (self.user_id, self.memory_type, self.content, self.metadata,
                                        self.created_at) == new:
            return
        self.user_id, self.memory_type, self.content, self.metadata, self.created_at = new
        self.updated_at, self.deleted_at = now, None

    def delete(self, now: datetime) -> None:
        self.deleted_at = self.updated_at = now


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy with jsonb's semantics (tuples become lists, str subclasses str, ...)."""
    copied: dict[str, Any] = json.loads(json.dumps(value))
    return copied


class InMemoryStorage(MemoryStorage):
    """The memory API in process memory; thread-safe; nothing survives the process."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._rows: dict[uuid.UUID, _Row] = {}
        self._meta: dict[str, _Row] = {}  # session_id -> its session_metadata row
        self._positions: dict[str, dict[int, _Row]] = {}  # session_id -> message_index -> row

    def __repr__(self) -> str:
        return f"InMemoryStorage(rows={len(self._rows)})"

    def row_count(self, include_deleted: bool = True) -> int:
        """Return how many rows are stored (deleted ones too unless told otherwise)."""
        with self._lock:
            return sum(1 for r in self._rows.values() if include_deleted or r.deleted_at is None)

    def _add(self, row: _Row) -> _Row:
        self._rows[row.id] = row
        return row

    def _put_messages(self, session_id: str, user_id: str, base: int, messages: PreparedMessages,
                      now: datetime) -> None:
        positions = self._positions.setdefault(session_id, {})
        for offset, (memory_type, text, stamp, metadata) in enumerate(zip(
                messages.memory_types, messages.contents, messages.timestamps, messages.metadata, strict=True)):
            index = base + offset
            content = {"role": memory_type[8:], "content": text}
            row = positions.get(index)
            if row is None:
                positions[index] = self._add(_Row(message_row_id(session_id, index), session_id, user_id,
                                                  memory_type, index, content, _copy(metadata), stamp, now))
            else:
                row.put(user_id, memory_type, content, _copy(metadata), stamp, now)

    # ---- sessions ---------------------------------------------------------------------

    def _save_session(self, session: PreparedSession) -> None:
        now = utcnow()
        sid, uid = session.session_id, session.user_id
        with self._lock:
            meta = self._meta.get(sid)
            if meta is None:
                self._meta[sid] = self._add(_Row(session.row_id, sid, uid, "session_metadata", None,
                                                 _copy(session.content), _copy(session.metadata),
                                                 session.created_at, now))
            else:
                meta.put(uid, "session_metadata", _copy(session.content), _copy(session.metadata),
                         session.created_at, now)
            self._put_messages(sid, uid, 0, session.messages, now)
            count = len(session.messages)
            for index, row in self._positions.get(sid, {}).items():
                if index >= count and row.deleted_at is None:
                    row.delete(now)

    def _load_session(self, session_id: str) -> Session | None:
        with self._lock:
            meta = self._meta.get(session_id)
            if meta is None or meta.deleted_at is not None:
                return None
            count = int(meta.content.get("message_count", 0))
            positions = self._positions.get(session_id, {})
            messages = [Message(row.memory_type[8:], row.content.get("content", ""), _copy(row.metadata),
                                row.created_at)
                        for index, row in sorted(positions.items())
                        if row.deleted_at is None and index < count]
            return session_from_rows(session_id, meta.user_id, meta.created_at, _copy(meta.content),
                                     _copy(meta.metadata), messages)

    def _delete_session(self, session_id: str) -> bool:
        now = utcnow()
        with self._lock:
            meta = self._meta.get(session_id)
            existed = meta is not None and meta.deleted_at is None
            for row in self._rows.values():
                if row.session_id == session_id and row.deleted_at is None:
                    row.delete(now)
            return existed

    def _list_sessions(self, user_id: str | None) -> list[SessionSummary]:
        with self._lock:
            summaries = [summary_from_row(row.session_id, row.user_id, row.created_at, _copy(row.content),
                                          _copy(row.metadata))
                         for row in self._meta.values()
                         if row.deleted_at is None and (user_id is None or row.user_id == user_id)]
        summaries.sort(key=lambda s: s.session_id)
        summaries.sort(key=lambda s: s.last_active, reverse=True)
        return summaries

    def _append_messages(self, session_id: str, messages: PreparedMessages, now: str) -> int:
        stamp = utcnow()
        with self._lock:
            meta = self._meta.get(session_id)
            if meta is None or meta.deleted_at is not None:
                raise SessionNotFoundError(session_id)
            base = int(meta.content.get("message_count", 0))
            total = base + len(messages)
            meta.content = {**meta.content, "message_count": total, "last_active": now,
                            "last_append": uuid.uuid4().hex}
            meta.updated_at = stamp
            self._put_messages(session_id, meta.user_id, base, messages, stamp)
            return total

    # ---- memory atoms ---------------------------------------------------------------------

    def _save_memory_atom(self, row_id: uuid.UUID, session_id: str, user_id: str, memory_type: str,
                          content: dict[str, Any], metadata: dict[str, Any]) -> None:
        now = utcnow()
        with self._lock:
            if row_id not in self._rows:
                self._add(_Row(row_id, session_id, user_id, memory_type, None, _copy(content), _copy(metadata),
                               now, now))

    def _query_memory_atoms(self, session_id: str | None, user_id: str | None, memory_type: str | None,
                            limit: int) -> list[MemoryAtom]:
        with self._lock:
            rows = [r for r in self._rows.values()
                    if r.deleted_at is None
                    and (session_id is None or r.session_id == session_id)
                    and (user_id is None or r.user_id == user_id)
                    and (memory_type is None or r.memory_type == memory_type)]
            rows.sort(key=lambda r: (r.created_at, -1 if r.message_index is None else r.message_index, r.id),
                      reverse=True)
            return [MemoryAtom(str(r.id), r.session_id, r.user_id, r.memory_type, _copy(r.content),
                               _copy(r.metadata), r.message_index, r.created_at, r.updated_at)
                    for r in rows[:limit]]
