"""The records of session memory: `Message`, `Session`, `SessionSummary` and `MemoryAtom`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from ..errors import InvalidInputError
from .validation import check_id, check_json_object, check_optional_json_object, check_role, check_text, check_timestamp


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


@dataclass(slots=True)
class Message:
    """One message of a conversation: `role` is "user", "assistant" or "system".

    `id` (a UUIDv7 string, not compared) is given by storage: `save_session` sets
    it on every message it stores, `load_session` returns it. A message keeps its
    id across saves, so saving a session again rewrites no unchanged message.
    """

    role: str
    content: str
    metadata: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=utcnow)
    id: str | None = field(default=None, compare=False, repr=False)

    @property
    def memory_type(self) -> str:
        """The `session_memories.memory_type` of this message: `message_<role>`."""
        return "message_" + self.role

    def to_dict(self) -> dict[str, Any]:
        """Return the message as a JSON-ready dict (timestamp in ISO 8601)."""
        return {"role": self.role, "content": self.content, "metadata": self.metadata,
                "timestamp": self.timestamp.isoformat()}


_MESSAGE_KEYS = frozenset(("role", "content", "metadata", "timestamp"))


def coerce_message(value: object, field: str = "message") -> Message:
    """Return `value` as a validated `Message`; accepts a `Message` or a dict with role/content/metadata.

    A dict may also carry `timestamp` (an aware datetime or an ISO 8601 string); other
    keys are refused so that typos do not lose data. Raises `InvalidInputError` naming the field.
    """
    if isinstance(value, Message):
        check_role(value.role, field + ".role")
        check_text(value.content, field + ".content")
        check_json_object(value.metadata, field + ".metadata")
        check_timestamp(value.timestamp, field + ".timestamp")
        return value
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f"{field} must be a Message or a dict with 'role' and 'content', not {type(value).__name__}"
        )
    unknown = set(value) - _MESSAGE_KEYS
    if unknown:
        raise InvalidInputError(
            f"{field} has unknown keys {sorted(map(str, unknown))}; allowed: role, content, metadata, timestamp "
            "(put anything else in metadata)"
        )
    for key in ("role", "content"):
        if key not in value:
            raise InvalidInputError(f"{field} is missing {key!r}")
    role = check_role(value["role"], field + ".role")
    content = check_text(value["content"], field + ".content")
    metadata = check_optional_json_object(value.get("metadata"), field + ".metadata")
    timestamp = value.get("timestamp")
    if timestamp is None:
        return Message(role, content, metadata)
    if isinstance(timestamp, str):
        text = timestamp
        try:
            timestamp = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInputError(f"{field}.timestamp is not an ISO 8601 timestamp: {text[:40]!r}") from None
    return Message(role, content, metadata, check_timestamp(timestamp, field + ".timestamp"))


@dataclass
class Session:
    """A conversation of one user: its messages in order, free-form metadata and timestamps.

    `Session(user_id, session_id=None, messages=[], metadata={})`: a new uuid4 id is
    made when none is given; messages may be `Message`s or dicts and are normalised
    to `Message`s. Raises `InvalidInputError` (a `ValueError`) for invalid values.
    `session_id` is always a string once constructed.
    """

    user_id: str
    # None (the default) is replaced by a new uuid4 in __post_init__: once constructed it is always a string.
    session_id: str = None  # type: ignore[assignment]
    messages: list[Message] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    last_active: datetime | None = None

    def __post_init__(self) -> None:
        check_id(self.user_id, "user_id")
        if self.session_id is None:
            self.session_id = str(uuid.uuid4())
        else:
            check_id(self.session_id, "session_id")
        if self.messages is None:
            self.messages = []
        if not isinstance(self.messages, (list, tuple)):
            raise InvalidInputError(f"messages must be a list, not {type(self.messages).__name__}")
        self.messages = [coerce_message(m, f"messages[{i}]") for i, m in enumerate(self.messages)]
        self.metadata = dict(check_optional_json_object(self.metadata, "metadata"))
        check_timestamp(self.created_at, "created_at")
        if self.last_active is None:
            self.last_active = self.created_at
        check_timestamp(self.last_active, "last_active")

    @property
    def id(self) -> str:
        """The session id (an alias of `session_id`)."""
        return self.session_id

    def add_message(self, role: str, content: str, metadata: dict[str, Any] | None = None) -> Message:
        """Append a message, mark the session active now, and return the message.

        Raises `InvalidInputError` for an unknown role, non-string content or invalid metadata.
        """
        message = coerce_message({"role": role, "content": content, "metadata": metadata},
                                 f"messages[{len(self.messages)}]")
        self.messages.append(message)
        self.last_active = message.timestamp
        return message

    def touch(self) -> None:
        """Mark the session active now."""
        self.last_active = utcnow()


def _restore_session(session_id: str, user_id: str, messages: list[Message], metadata: dict[str, Any],
                     created_at: datetime, last_active: datetime) -> Session:
    """Build a `Session` from stored, already valid values, skipping validation."""
    session = object.__new__(Session)
    session.user_id = user_id
    session.session_id = session_id
    session.messages = messages
    session.metadata = metadata
    session.created_at = created_at
    session.last_active = last_active
    return session


class SessionSummary(NamedTuple):
    """One entry of `list_sessions`: a session without its messages (an immutable record)."""

    session_id: str
    user_id: str
    created_at: datetime
    last_active: datetime
    message_count: int
    metadata: dict[str, Any]


class MemoryAtom(NamedTuple):
    """One live row of `session_memories`, as returned by `query_memory_atoms` (an immutable record).

    Messages saved with a session appear here too (memory_type `message_*`,
    content `{"role", "content"}`, `created_at` the message's timestamp, and
    their `message_index`); atoms from `save_memory_atom` have `message_index` None.
    """

    id: str
    session_id: str
    user_id: str
    memory_type: str
    content: dict[str, Any]
    metadata: dict[str, Any]
    message_index: int | None
    created_at: datetime
    updated_at: datetime
