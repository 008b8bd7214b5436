"""Merge providers: `sync_pair` copies the rows one provider changed into another (see docs/CONTINUITY.md).

`failback` holds the fail-back loop that every `DatabaseManager` gets (merge the
backup into the primary, then switch back); the package root registers it.

Library layer: imports `agent_factory.core` and the schema, never ops or the CLI.
"""

from .engine import DEFAULT_BATCH_SIZE, DEFAULT_MARGIN_S, SyncSettings, sync_pair
from .result import SyncResult, TableResult
from .tables import TABLES

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_MARGIN_S", "TABLES", "SyncResult", "SyncSettings", "TableResult",
           "sync_pair"]
