"""The local state store: one SQLite database shared by the library, the ops commands and the status page."""

from .store import FailoverEvent, StateStore

__all__ = ["FailoverEvent", "StateStore"]
