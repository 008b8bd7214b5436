"""`MemoryStorage`: the contract every memory backend fulfils, and the input checks they share.

The public methods are implemented here: each validates its arguments (raising
`InvalidInputError`, a `ValueError`, before any storage is touched), makes the
call's ids and its `WriteStamp` (once per call, so a replay writes the same
rows), and calls one backend hook with prepared, valid values. Backends
implement only the hooks, so every backend applies the same rules.

Semantics shared by every backend (docs/CONTINUITY.md has the full rules)
-------------------------------------------------------------------------
- A session is one `session_metadata` row plus one row per message. Each
  message row has a time-ordered UUIDv7 id; messages load in id order, and a
  message's position is derived when reading (`message_index` only marks a row
  as a message and keeps the position its writer saw).
- Every write carries the client's clock as `updated_at` and a random
  `write_id`; a row is only ever replaced by a write with a greater
  (updated_at, write_id): last writer wins. Deletes are tombstones
  (`deleted_at`), also for things this storage never held, so a deletion
  merged from elsewhere is never undone by an older write.
- `save_session` writes the session as given: its messages (keeping each
  message's id, giving one to those without) and tombstones for the session's
  older messages it no longer holds. Saving twice writes nothing new.
  Saving a deleted session brings back its metadata and the messages it holds
  now; its atoms stay deleted.
- `delete_session` tombstones every row of the session written before it.
- Session ids are global: saving a session id under another user moves it.
- Timestamps are the client's: a message row's `created_at` is the message's
  `timestamp`, the metadata row's is the session's `created_at`.
- `message_count` and `last_active` are derived (recomputed after a merge by
  `recompute_session`), never merged.
- `list_sessions` returns `SessionSummary` records, most recently active first,
  a page at a time; `query_memory_atoms` returns `MemoryAtom` records, newest first.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import InvalidInputError, SessionOwnerError
from .ids import WriteStamp, message_row_ids, new_stamp, order_key, session_mask, session_row_id, uuid7, uuid7_batch
from .session import MemoryAtom, Message, Session, SessionSummary, _restore_session, coerce_message
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
    """Validated messages as parallel columns, in session order; `ids` are their row ids (UUIDv7)."""

    ids: list[uuid.UUID]
    memory_types: list[str]
    contents: list[str]
    timestamps: list[datetime]
    metadata: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.contents)


@dataclass(frozen=True)
class PreparedSession:
    """A validated session, in the shape the backends store, with the version of this save."""

    session_id: str
    user_id: str
    row_id: uuid.UUID
    created_at: datetime
    last_active: datetime
    content: dict[str, Any]  # the metadata row's content: {"last_active"} as the client gave it
    metadata: dict[str, Any]
    messages: PreparedMessages
    stamp: WriteStamp


@dataclass(frozen=True)
class PageCursor:
    """Where a page of `list_sessions` ends: pass the last summary (or this) as `before=`."""

    last_active: datetime
    session_id: str


DELETED_USER = "(deleted)"  # user_id of a session tombstone written where the session never was


def check_owner(session_id: str, owner: str | None, user_id: str) -> None:
    """Raise `SessionOwnerError` if the session exists (live or deleted) and belongs to someone other than `user_id`.

    `owner` is the stored session's user_id (None: no such session here). The
    message does not name the owner.
    """
    if owner is not None and owner != user_id and owner != DELETED_USER:
        raise SessionOwnerError(f"session {session_id!r} belongs to another user, not to user_id {user_id!r}; "
                                "a session's owner never changes (nothing was written)")
_MEMORY_TYPE_OF_ROLE = {role: "message_" + role for role in MESSAGE_ROLES}


def _validated(messages: object, field: str) -> list[Message]:
    """Return `messages` as validated `Message`s (dicts are converted).

    `Message`s with ASCII content and an aware timestamp take a fast path; anything
    else gets the full checks (and error messages) of `coerce_message`.
    """
    if not isinstance(messages, (list, tuple)):
        raise InvalidInputError(f"{field} must be a list of messages, not {type(messages).__name__}")
    utc, aware_kinds = timezone.utc, (timezone, ZoneInfo)  # tzinfo classes that always give an offset
    checked: list[Message] = []
    for index, message in enumerate(messages):
        if message.__class__ is dict and _plain_message_dict(message):  # what coerce_message makes of it
            metadata = message.get("metadata")
            checked.append(Message(message["role"], message["content"], {} if metadata is None else metadata))
            continue
        if not (message.__class__ is Message and message.role.__class__ is str
                and message.role in _MEMORY_TYPE_OF_ROLE
                and message.content.__class__ is str and message.content.isascii()
                and len(message.content) <= MAX_TEXT_LENGTH and "\x00" not in message.content
                and message.timestamp.__class__ is datetime
                and (message.timestamp.tzinfo is utc or message.timestamp.tzinfo.__class__ in aware_kinds)
                and json_object_ok(message.metadata)):
            message = coerce_message(message, f"{field}[{index}]")
        checked.append(message)
    return checked


def _plain_message_dict(message: dict[str, Any]) -> bool:
    """Return whether `message` is a dict `coerce_message` would accept as it is: no timestamp, ASCII content."""
    role, content, metadata = message.get("role"), message.get("content"), message.get("metadata")
    return (len(message) <= 3 and message.keys() <= _PLAIN_KEYS and role.__class__ is str
            and role in _MEMORY_TYPE_OF_ROLE and content.__class__ is str and content.isascii()
            and len(content) <= MAX_TEXT_LENGTH and "\x00" not in content
            and (metadata is None or json_object_ok(metadata)))


_PLAIN_KEYS = frozenset(("role", "content", "metadata"))


def _columns(ids: list[uuid.UUID], messages: list[Message]) -> PreparedMessages:
    return PreparedMessages(ids, [_MEMORY_TYPE_OF_ROLE[m.role] for m in messages], [m.content for m in messages],
                            [m.timestamp for m in messages], [m.metadata for m in messages])


def prepare_messages(session_id: str, messages: object, field: str) -> PreparedMessages:
    """Validate messages to append and give each a new time-ordered row id (once per call)."""
    checked = _validated(messages, field)
    return _columns(uuid7_batch(len(checked), session_mask(session_id)), checked)


def _message_id(message: Message, field: str) -> uuid.UUID | None:
    if message.id is None:
        return None
    try:
        return uuid.UUID(message.id)
    except (TypeError, ValueError, AttributeError):
        raise InvalidInputError(f"{field}.id must be None or a UUID string; got {message.id!r}"[:200]) from None


def assign_message_ids(messages: list[Message], field: str) -> list[uuid.UUID]:
    """Return the ids of a session's messages: each message keeps its id while ids ascend.

    A message without an id, or whose id does not come after the previous
    message's (it was moved, inserted before others or repeated), gets a new
    UUIDv7 after the previous one, so id order is list order.
    """
    ids: list[uuid.UUID] = []
    previous: uuid.UUID | None = None
    for index, message in enumerate(messages):
        current = _message_id(message, f"{field}[{index}]")
        if current is None or current.version != 7 or (previous is not None
                                                      and order_key(current) <= order_key(previous)):
            current = uuid7(previous)
        previous = current
        ids.append(current)
    return ids


def prepare_session(session: object) -> PreparedSession:
    """Validate a whole session (it may have been changed since it was made) and return its stored form.

    Gives every message an id (set on the session's `Message`s; dicts in
    `session.messages` are replaced by the `Message`s they describe).
    """
    if not isinstance(session, Session):
        raise InvalidInputError(f"session must be a Session, not {type(session).__name__}")
    session_id = check_id(session.session_id, "session.session_id")
    user_id = check_id(session.user_id, "session.user_id")
    metadata = check_json_object(session.metadata, "session.metadata")
    created_at = check_timestamp(session.created_at, "session.created_at")
    last_active = check_timestamp(session.last_active, "session.last_active")
    messages = _validated(session.messages, "session.messages")
    message_ids = assign_message_ids(messages, "session.messages")
    for index, (message, message_id) in enumerate(zip(messages, message_ids, strict=True)):
        message.id = str(message_id)  # the next save of the same objects rewrites nothing
        if isinstance(session.messages, list) and session.messages[index] is not message:
            session.messages[index] = message
    ids = message_row_ids(session_id, message_ids)
    content = {"last_active": last_active.isoformat()}
    return PreparedSession(session_id, user_id, session_row_id(session_id), created_at, last_active, content,
                           metadata, _columns(ids, messages), new_stamp())


def check_cursor(before: object) -> PageCursor | None:
    """Return the keyset cursor of `list_sessions(before=...)`: a `SessionSummary`, a `PageCursor` or None."""
    if before is None or isinstance(before, PageCursor):
        return before
    if isinstance(before, SessionSummary):
        return PageCursor(check_timestamp(before.last_active, "before.last_active"),
                          check_id(before.session_id, "before.session_id"))
    raise InvalidInputError(
        f"before must be None or the last SessionSummary of the previous page, not {type(before).__name__}")


def summary_from_row(session_id: str, user_id: str, created_at: datetime, last_active: datetime | None,
                     message_count: int | None, metadata: dict[str, Any] | None) -> SessionSummary:
    """Build the `list_sessions` entry of a stored metadata row."""
    return SessionSummary(session_id, user_id, created_at, last_active or created_at, message_count or 0,
                          metadata or {})


def session_from_rows(session_id: str, user_id: str, created_at: datetime, last_active: datetime | None,
                      metadata: dict[str, Any] | None, messages: list[Message]) -> Session:
    """Rebuild a `Session` from its stored metadata row and its messages."""
    return _restore_session(session_id, user_id, messages, metadata or {}, created_at, last_active or created_at)


class MemoryStorage(ABC):
    """Store sessions, their messages and free-form memory atoms.

    Every public method validates its arguments first and raises `InvalidInputError`
    (a `ValueError` naming the field) before touching storage: nothing is written.
    Usable as a context manager; `close()` releases what the storage owns.
    """

    # ---- sessions ---------------------------------------------------------------

    def save_session(self, session: Session) -> None:
        """Store `session` as given, idempotently; each message gets (and keeps) an `id`.

        Writes its metadata and its messages, and tombstones the session's older
        messages it no longer holds; saving twice writes nothing new. A deleted
        session is brought back. A row stored with a newer version (a later
        write, by the writers' clocks) is left as it is. Raises
        `SessionOwnerError` (an `InvalidInputError`; nothing written) when the
        session exists with another `user_id`: a session's owner never changes.
        """
        self._save_session(prepare_session(session))

    def load_session(self, session_id: str) -> Session | None:
        """Return the session with its messages in order, or None if absent or deleted."""
        return self._load_session(check_id(session_id, "session_id"))

    def delete_session(self, session_id: str) -> bool:
        """Delete the session, its messages and its memory atoms (tombstones); return whether it existed here.

        The tombstone is written even when this storage never held the session, so
        that a copy of it merged from another provider stays deleted.
        """
        return self._delete_session(check_id(session_id, "session_id"), new_stamp())

    def list_sessions(self, user_id: str | None = None, *, limit: int = 100,
                      before: SessionSummary | PageCursor | None = None) -> list[SessionSummary]:
        """Return up to `limit` live sessions (of `user_id` if given), most recently active first.

        Ties on `last_active` are ordered by session id, descending (bytewise).
        For the next page pass the last summary of this one as `before`: paging is
        by key (served by an index), so it neither skips nor repeats a session
        that does not change between pages.
        """
        return self._list_sessions(check_optional_id(user_id, "user_id"), check_limit(limit), check_cursor(before))

    def append_messages(self, session_id: str, messages: Sequence[Message | dict[str, Any]]) -> int:
        """Append messages after the session's last one, atomically; return the session's message count.

        Each message gets a new time-ordered id, once per call: replaying the call
        (on any provider) writes the same rows. Marks the session active now.
        Raises `SessionNotFoundError` (nothing written) if the session does not exist
        or was deleted, and `SessionNotOnProviderError` (nothing written) if a backup
        serving during a failover has never seen the session.
        """
        session_id = check_id(session_id, "session_id")
        prepared = prepare_messages(session_id, messages, "messages")
        return self._append_messages(session_id, prepared, new_stamp())

    # ---- memory atoms -------------------------------------------------------------

    def save_memory_atom(self, session_id: str, user_id: str, memory_type: str, content: dict[str, Any],
                         metadata: dict[str, Any] | None = None) -> str:
        """Store one memory atom and return its id (a new UUIDv7, as a string).

        `memory_type` is one of `MEMORY_TYPES` except `session_metadata`, which
        `save_session` owns. Atoms never appear in `Session.messages`, even with a
        `message_*` type: use `append_messages` for the conversation itself.
        When the session exists, `user_id` must be its owner: `SessionOwnerError`
        (an `InvalidInputError`; nothing written) otherwise. An atom of a session
        not (yet) stored here is accepted.
        """
        session_id = check_id(session_id, "session_id")
        user_id = check_id(user_id, "user_id")
        memory_type = check_memory_type(memory_type)
        if memory_type == "session_metadata":
            raise InvalidInputError("memory_type 'session_metadata' is reserved for save_session")
        content = check_json_object(content, "content")
        metadata = check_optional_json_object(metadata, "metadata")
        row_id = uuid7()
        self._save_memory_atom(row_id, session_id, user_id, memory_type, content, metadata, new_stamp())
        return str(row_id)

    def query_memory_atoms(self, session_id: str | None = None, user_id: str | None = None,
                           memory_type: str | None = None, limit: int = 100) -> list[MemoryAtom]:
        """Return live rows matching every given filter, newest first, at most `limit`.

        Newest first means by `created_at` descending, messages before other rows
        of the same `created_at`, then id descending. Messages and session metadata
        rows are memory rows too and are returned when they match; a message's
        `message_index` is its position in the session now.
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
    def _delete_session(self, session_id: str, stamp: WriteStamp) -> bool: ...

    @abstractmethod
    def _list_sessions(self, user_id: str | None, limit: int, before: PageCursor | None) -> list[SessionSummary]: ...

    @abstractmethod
    def _append_messages(self, session_id: str, messages: PreparedMessages, stamp: WriteStamp) -> int: ...

    @abstractmethod
    def _save_memory_atom(self, row_id: uuid.UUID, session_id: str, user_id: str, memory_type: str,
                          content: dict[str, Any], metadata: dict[str, Any], stamp: WriteStamp) -> None: ...

    @abstractmethod
    def _query_memory_atoms(self, session_id: str | None, user_id: str | None, memory_type: str | None,
                            limit: int) -> list[MemoryAtom]: ...
