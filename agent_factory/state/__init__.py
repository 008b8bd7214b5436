"""The local state store: one SQLite database shared by the library, the ops commands and the status page."""

from .schema import SCHEMA_VERSION
from .store import FailoverEvent, StateStore, SyncRun

__all__ = ["SCHEMA_VERSION", "FailoverEvent", "StateStore", "SyncRun"]
