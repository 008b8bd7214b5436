"""`AgentFactoryChatMessageHistory`: LangChain's `BaseChatMessageHistory` over the memory system's sessions.

Messages are the sessions' messages (`agent_factory.memory`), so the memory
API, the sync and the failover see them like any other:

- roles: human <-> user, ai <-> assistant, system <-> system. Tool and function
  messages are stored as "user" messages (the turn that hands results back to
  the model, as Anthropic's Messages API carries tool results) and `ChatMessage`s
  under their own role, which must be user, assistant or system.
- the rest of a message (its type when the role does not say it, `id`, `name`,
  `tool_calls`, `tool_call_id`, `additional_kwargs`, ..., and a content that is a
  list of blocks) is kept under the `"langchain"` key of the message's
  metadata, fields at their defaults left out; the stored text is the message's
  text. Read back, a message equals the one added (`==`). Messages written
  through the memory API (no "langchain" key) read as plain messages of their role.
- `add_messages` is one round trip (creating the session if needed), `messages`
  one, `clear` one (tombstones: the session itself stays). The async methods run
  the sync ones in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    messages_from_dict,
)

from ..core.database_manager import DatabaseManager
from ..errors import InvalidInputError
from ..memory.conversation import ConversationLog
from ..memory.session import Message
from ..memory.validation import MESSAGE_ROLES, check_id

__all__ = ["AgentFactoryChatMessageHistory", "from_memory_message", "to_memory_message"]

KEY = "langchain"  # the metadata key holding what the role and the text do not say
_ROLE_OF = ((HumanMessage, "user"), (AIMessage, "assistant"), (SystemMessage, "system"),
            (ToolMessage, "user"), (FunctionMessage, "user"))
_TYPE_OF_ROLE = {"user": "human", "assistant": "ai", "system": "system"}
_CLASS_OF_ROLE: dict[str, type[BaseMessage]] = {"user": HumanMessage, "assistant": AIMessage, "system": SystemMessage}


def to_memory_message(message: object, field: str = "message") -> Message:
    """Return the memory `Message` storing a LangChain message. Raises `InvalidInputError` naming the field."""
    if not isinstance(message, BaseMessage):
        raise InvalidInputError(f"{field} must be a LangChain BaseMessage, not {type(message).__name__}")
    if isinstance(message, ChatMessage):
        role = message.role
        if role not in MESSAGE_ROLES:
            raise InvalidInputError(f"{field}.role must be one of {', '.join(MESSAGE_ROLES)}; got {role!r}")
    else:
        role = next((r for kind, r in _ROLE_OF if isinstance(message, kind)), "")
        if not role:
            raise InvalidInputError(f"{field} is a {type(message).__name__}, which has no role in a session")
    kept = _non_defaults(message)
    content = message.content
    if isinstance(content, str):
        text = content
    else:
        kept["content"] = content
        text = str(message.text)
    if kept or message.type != _TYPE_OF_ROLE[role]:
        return Message(role, text, {KEY: {"type": message.type, **kept}})
    return Message(role, text)


def from_memory_message(message: Message) -> BaseMessage:
    """Return the LangChain message a memory `Message` stores (a plain one if it was not written by this adapter).

    Raises `InvalidInputError` when its stored LangChain fields are not a valid message.
    """
    kept = message.metadata.get(KEY)
    if not isinstance(kept, dict):
        return _CLASS_OF_ROLE[message.role](content=message.content)
    data = {k: v for k, v in kept.items() if k != "type"}
    data.setdefault("content", message.content)
    if kept.get("type") == "chat":
        data.setdefault("role", message.role)
    try:
        return messages_from_dict([{"type": kept.get("type", _TYPE_OF_ROLE[message.role]), "data": data}])[0]
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInputError(f"message {message.id} holds LangChain fields that are not a message: "
                                f"{str(exc).splitlines()[0]}") from exc


_DEFAULTS: dict[type, tuple[tuple[str, Any], ...]] = {}


def _non_defaults(message: BaseMessage) -> dict[str, Any]:
    """Return the message's fields other than content and type that differ from their defaults, as JSON values."""
    kind = type(message)
    defaults = _DEFAULTS.get(kind)
    if defaults is None:
        defaults = tuple((name, info.get_default(call_default_factory=True))
                         for name, info in kind.model_fields.items() if name not in ("content", "type"))
        _DEFAULTS[kind] = defaults
    changed = {name for name, default in defaults if getattr(message, name) != default}
    return message.model_dump(include=changed) if changed else {}


class AgentFactoryChatMessageHistory(BaseChatMessageHistory):
    """The chat history of one session of one user, stored in the memory system (failover included).

    `db=None` uses the process's default `DatabaseManager`. Invalid input raises
    `InvalidInputError` (nothing written); a session that belongs to another user
    raises it too. Database failures raise the manager's errors.
    """

    def __init__(self, session_id: str, *, user_id: str, db: DatabaseManager | None = None) -> None:
        self.session_id = check_id(session_id, "session_id")
        self.user_id = check_id(user_id, "user_id")
        self._log = ConversationLog(db)

    def __repr__(self) -> str:
        return f"AgentFactoryChatMessageHistory(session_id={self.session_id!r}, user_id={self.user_id!r})"

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The session's messages in order, in one round trip."""
        return [from_memory_message(m) for m in self._log.messages(self.session_id, self.user_id)]

    def get_messages(self) -> list[BaseMessage]:
        """Return the session's messages in order, in one round trip."""
        return self.messages

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append `messages` in one round trip, creating the session if needed; all or nothing."""
        if isinstance(messages, BaseMessage) or not isinstance(messages, Sequence):
            raise InvalidInputError(f"messages must be a list of messages, not {type(messages).__name__}")
        stored = [to_memory_message(m, f"messages[{i}]") for i, m in enumerate(messages)]
        if stored:
            self._log.append(self.session_id, self.user_id, stored)

    def clear(self) -> None:
        """Delete the session's messages (tombstones, one round trip); the session stays."""
        self._log.clear(self.session_id, self.user_id)

    async def aget_messages(self) -> list[BaseMessage]:
        """Return the session's messages (the sync call, in a worker thread)."""
        return await asyncio.to_thread(self.get_messages)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append `messages` (the sync call, in a worker thread)."""
        await asyncio.to_thread(self.add_messages, messages)

    async def aclear(self) -> None:
        """Delete the session's messages (the sync call, in a worker thread)."""
        await asyncio.to_thread(self.clear)
