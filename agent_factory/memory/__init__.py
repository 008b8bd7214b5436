"""The memory API: sessions and memory atoms (`MemoryStorage`), a `KnowledgeBase` and `Settings`.

`PostgresMemoryStorage` stores on the multi-provider `DatabaseManager`;
`InMemoryStorage` behaves identically in process memory. Invalid input raises
`InvalidInputError` (a `ValueError`) before anything is written.
"""

from ..errors import InvalidInputError, SessionNotFoundError, SessionNotOnProviderError, SessionOwnerError
from .base import MemoryStorage, PageCursor
from .conversation import ConversationLog
from .in_memory import InMemoryStorage
from .knowledge import KnowledgeAtom, KnowledgeBase
from .postgres import PostgresMemoryStorage
from .session import MemoryAtom, Message, Session, SessionSummary
from .settings import Settings
from .validation import ATOM_TYPES, MEMORY_TYPES, MESSAGE_ROLES

__all__ = [
    "ATOM_TYPES",
    "MEMORY_TYPES",
    "MESSAGE_ROLES",
    "ConversationLog",
    "InMemoryStorage",
    "InvalidInputError",
    "KnowledgeAtom",
    "KnowledgeBase",
    "MemoryAtom",
    "MemoryStorage",
    "Message",
    "PageCursor",
    "PostgresMemoryStorage",
    "Session",
    "SessionNotFoundError",
    "SessionNotOnProviderError",
    "SessionOwnerError",
    "SessionSummary",
    "Settings",
]
