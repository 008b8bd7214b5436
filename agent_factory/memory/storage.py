"""The memory storages, importable from one place: `from agent_factory.memory.storage import ...`."""

from .base import MemoryStorage
from .in_memory import InMemoryStorage
from .postgres import PostgresMemoryStorage

__all__ = ["InMemoryStorage", "MemoryStorage", "PostgresMemoryStorage"]
