"""The fail-back hook: what `DatabaseManager` calls after a failover, supplied by the layer above.

`core` routes, probes, pauses traffic and switches; it does not know how the
writes made on a backup go home. A `FailbackWatcher` does: the manager calls
`start()` each time traffic leaves the primary and `close()` when it closes.
The watcher drives the manager only through its public switching API
(`probe_streak`, `paused_traffic`, `switch`, `failback_postponed`).

The default watcher is registered by `agent_factory/__init__.py` (the package
root, which every import of `agent_factory.core` runs first):
`agent_factory.replication.failback` merges the backup into the primary, then
fails back. So `core` imports nothing from the layers above it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .database_manager import DatabaseManager

logger = logging.getLogger(__name__)

FailbackSync = Callable[["DatabaseManager", str, str], int]
"""`sync(manager, backup, primary)`: merge the backup's writes into the primary, return the rows moved."""


class FailbackWatcher(Protocol):
    """Bring traffic home to the primary once it is back; one per manager."""

    def start(self) -> None:
        """Begin watching the primary (traffic has just left it); a no-op while already watching."""

    def close(self, timeout: float) -> None:
        """Stop watching and wait up to `timeout` seconds for the watcher to finish."""


FailbackFactory = Callable[["DatabaseManager", "FailbackSync | None"], FailbackWatcher]
"""`factory(manager, sync)`: build the manager's watcher; `sync` (may be None) overrides the default merge."""

_default_factory: FailbackFactory | None = None
_registry_lock = threading.Lock()


def register_failback(factory: FailbackFactory) -> None:
    """Make `factory` build the fail-back watcher of every `DatabaseManager` made from now on."""
    global _default_factory
    with _registry_lock:
        _default_factory = factory


def registered_failback() -> FailbackFactory:
    """Return the registered factory, or one whose watcher never fails back (logged) if none was registered."""
    with _registry_lock:
        return _default_factory if _default_factory is not None else _NoFailback


class _NoFailback:
    """The watcher used when nothing was registered: traffic stays on the backup (an operator moves it)."""

    def __init__(self, manager: DatabaseManager, sync: FailbackSync | None) -> None:
        self._manager = manager

    def start(self) -> None:
        logger.warning("no fail-back watcher registered: traffic stays on %s until `set_provider` moves it",
                       self._manager.active_provider)

    def close(self, timeout: float) -> None:
        return None
