"""`MemoryStorage`: the contract every memory backend fulfils, and the input checks they share.

The public methods are implemented here: each validates its arguments (raising
`InvalidInputError`, a `ValueError`, before any storage is touched) and then
calls one backend hook (`_save_session`, `_load_session`, ...) with prepared,
valid values. Backends implement only the hooks, so every backend applies
exactly the same validation.

Semantics shared by every backend
---------------------------------
- A session is stored as one `session_metadata` row plus one row per message
  position (`message_index` 0, 1, 2, ...); messages load in index order.
- `save_session` is atomic and idempotent: it writes the session as given,
  so saving twice never duplicates a message; messages removed from the
  session since the last save are soft-deleted.
- Deletes are soft (`deleted_at`); every read ignores deleted rows.
  `delete_session` soft-deletes every row with that session id, including
  atoms from `save_memory_atom`. Saving a deleted session again brings back
  its metadata and the messages it holds now; its atoms stay deleted.
- Session ids are global: saving a session id under another user moves it.
- Timestamps are the client's: a message row's `created_at` is the message's
  `timestamp`, the metadata row's is the session's `created_at`; its content
  holds `last_active` and `message_count`. Atoms from `save_memory_atom` are
  stamped when written.
- `list_sessions` returns `SessionSummary` records, most recently active first;
  `query_memory_atoms` returns `MemoryAtom` records, newest first.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import InvalidInputError
from .ids import session_row_id
from .session import MemoryAtom, Message, Session, SessionSummary, _restore_session, coerce_message, utcnow
from .validation import (
    MAX_TEXT_LENGTH,
    MESSAGE_ROLES,
    check_id,
    check_json_object,
    check_limit,
    check_memory_type,
    check_optional_id,
    check_optional_json_object,
    check_timestamp,
    json_object_ok,
)


@dataclass(frozen=True)
class PreparedMessages:
    """Validated messages as parallel columns; a message's index is its position in the lists."""

    memory_types: list[str]
    contents: list[str]
    timestamps: list[datetime]
    metadata: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.contents)


@dataclass(frozen=True)
class PreparedSession:
    """A validated session, in the shape the backends store."""

    session_id: str
    user_id: str
    row_id: uuid.UUID
    created_at: datetime
    content: dict[str, Any]  # the metadata row's content: {"last_active", "message_count"}
    metadata: dict[str, Any]
    messages: PreparedMessages


_MEMORY_TYPE_OF_ROLE = {role: "message_" + role for role in MESSAGE_ROLES}


def prepare_messages(messages: object, field: str) -> PreparedMessages:
    """Validate a list of messages (`Message`s or dicts) and return them as columns.

    `Message`s with ASCII content and an aware timestamp take a fast path; anything
    else gets the full checks (and error messages) of `coerce_message`.
    """
    if not isinstance(messages, (list, tuple)):
        raise InvalidInputError(f"{field} must be a list of messages, not {type(messages).__name__}")
    types: list[str] = []
    contents: list[str] = []
    stamps: list[datetime] = []
    metadata: list[dict[str, Any]] = []
    utc, aware_kinds = timezone.utc, (timezone, ZoneInfo)  # tzinfo classes that always give an offset
    for index, message in enumerate(messages):
        if not (message.__class__ is Message and message.role.__class__ is str
                and message.role in _MEMORY_TYPE_OF_ROLE
                and message.content.__class__ is str and message.content.isascii()
                and len(message.content) <= MAX_TEXT_LENGTH and "\x00" not in message.content
                and message.timestamp.__class__ is datetime
                and (message.timestamp.tzinfo is utc or message.timestamp.tzinfo.__class__ in aware_kinds)
                and json_object_ok(message.metadata)):
            message = coerce_message(message, f"{field}[{index}]")
        types.append(_MEMORY_TYPE_OF_ROLE[message.role])
        contents.append(message.content)
        stamps.append(message.timestamp)
        metadata.append(message.metadata)
    return PreparedMessages(types, contents, stamps, metadata)


def prepare_session(session: object) -> PreparedSession:
    """Validate a whole session (it may have been changed since it was made) and return its stored form."""
    if not isinstance(session, Session):
        raise InvalidInputError(f"session must be a Session, not {type(session).__name__}")
    session_id = check_id(session.session_id, "session.session_id")
    user_id = check_id(session.user_id, "session.user_id")
    metadata = check_json_object(session.metadata, "session.metadata")
    created_at = check_timestamp(session.created_at, "session.created_at")
    last_active = check_timestamp(session.last_active, "session.last_active")
    messages = prepare_messages(session.messages, "session.messages")
    content = {"last_active": last_active.isoformat(), "message_count": len(messages)}
    return PreparedSession(session_id, user_id, session_row_id(session_id), created_at, content, metadata, messages)


def summary_from_row(session_id: str, user_id: str, created_at: datetime, content: dict[str, Any],
                     metadata: dict[str, Any] | None) -> SessionSummary:
    """Build the `list_sessions` entry of a stored metadata row."""
    stamp = content.get("last_active")
    last_active = datetime.fromisoformat(stamp) if isinstance(stamp, str) else created_at
    return SessionSummary(session_id, user_id, created_at, last_active, int(content.get("message_count", 0)),
                          metadata or {})


def session_from_rows(session_id: str, user_id: str, created_at: datetime, content: dict[str, Any],
                      metadata: dict[str, Any] | None, messages: list[Message]) -> Session:
    """Rebuild a `Session` from its stored metadata row and its messages."""
    stamp = content.get("last_active")
    last_active = datetime.fromisoformat(stamp) if isinstance(stamp, str) else created_at
    return _restore_session(session_id, user_id, messages, metadata or {}, created_at, last_active)


class MemoryStorage(ABC):
    """Store sessions, their messages and free-form memory atoms.

    Every public method validates its arguments first and raises `InvalidInputError`
    (a `ValueError` naming the field) before touching storage: nothing is written.
    Usable as a context manager; `close()` releases what the storage owns.
    """

    # ---- sessions ---------------------------------------------------------------

    def save_session(self, session: Session) -> None:
        """Store `session` as given, atomically and idempotently.

        Inserts or updates its metadata and one row per message position, and
        soft-deletes messages the session no longer holds; saving twice writes
        nothing new. A deleted session is brought back.
        """
        self._save_session(prepare_session(session))

    def load_session(self, session_id: str) -> Session | None:
        """Return the session with its messages in index order, or None if absent or deleted."""
        return self._load_session(check_id(session_id, "session_id"))

    def delete_session(self, session_id: str) -> bool:
        """Soft-delete the session, its messages and its memory atoms; return whether the session existed."""
        return self._delete_session(check_id(session_id, "session_id"))

    def list_sessions(self, user_id: str | None = None) -> list[SessionSummary]:
        """Return a summary of each live session (of `user_id` if given), most recently active first."""
        return self._list_sessions(check_optional_id(user_id, "user_id"))

    def append_messages(self, session_id: str, messages: Sequence[Message | dict[str, Any]]) -> int:
        """Append messages after the session's last one, in one transaction; return the new message count.

        Marks the session active now. Raises `SessionNotFoundError` (nothing written)
        if the session does not exist or was deleted.
        """
        session_id = check_id(session_id, "session_id")
        prepared = prepare_messages(messages, "messages")
        return self._append_messages(session_id, prepared, utcnow().isoformat())

    # ---- memory atoms -------------------------------------------------------------

    def save_memory_atom(self, session_id: str, user_id: str, memory_type: str, content: dict[str, Any],
                         metadata: dict[str, Any] | None = None) -> str:
        """Store one memory atom and return its id (a new uuid4, as a string).

        `memory_type` is one of `MEMORY_TYPES` except `session_metadata`, which
        `save_session` owns. Atoms never appear in `Session.messages`, even with a
        `message_*` type: use `append_messages` for the conversation itself.
        """
        session_id = check_id(session_id, "session_id")
        user_id = check_id(user_id, "user_id")
        memory_type = check_memory_type(memory_type)
        if memory_type == "session_metadata":
            raise InvalidInputError("memory_type 'session_metadata' is reserved for save_session")
        content = check_json_object(content, "content")
        metadata = check_optional_json_object(metadata, "metadata")
        row_id = uuid.uuid4()
        self._save_memory_atom(row_id, session_id, user_id, memory_type, content, metadata)
        return str(row_id)

    def query_memory_atoms(self, session_id: str | None = None, user_id: str | None = None,
                           memory_type: str | None = None, limit: int = 100) -> list[MemoryAtom]:
        """Return live rows matching every given filter, newest first, at most `limit`.

        Newest first means by `created_at` descending, then `message_index`
        descending (rows of one save share a timestamp), then id. Messages and
        session metadata rows are memory rows too and are returned when they match.
        """
        session_id = check_optional_id(session_id, "session_id")
        user_id = check_optional_id(user_id, "user_id")
        if memory_type is not None:
            memory_type = check_memory_type(memory_type)
        return self._query_memory_atoms(session_id, user_id, memory_type, check_limit(limit))

    # ---- lifecycle ------------------------------------------------------------------

    def close(self) -> None:  # noqa: B027 - a hook with a default, not an abstract method
        """Release what the storage owns (the default does nothing)."""

    def __enter__(self) -> MemoryStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- backend hooks: called with valid values only -----------------------------------

    @abstractmethod
    def _save_session(self, session: PreparedSession) -> None: ...

    @abstractmethod
    def _load_session(self, session_id: str) -> Session | None: ...

    @abstractmethod
    def _delete_session(self, session_id: str) -> bool: ...

    @abstractmethod
    def _list_sessions(self, user_id: str | None) -> list[SessionSummary]: ...

    @abstractmethod
    def _append_messages(self, session_id: str, messages: PreparedMessages, now: str) -> int: ...

    @abstractmethod
    def _save_memory_atom(self, row_id: uuid.UUID, session_id: str, user_id: str, memory_type: str,
                          content: dict[str, Any], metadata: dict[str, Any]) -> None: ...

    @abstractmethod
    def _query_memory_atoms(self, session_id: str | None, user_id: str | None, memory_type: str | None,
                            limit: int) -> list[MemoryAtom]: ...
