"""The fail-back loop: watch the primary after a failover, merge the backup's writes into it, switch back.

`DatabaseManager` (core) routes, probes, pauses traffic and switches; this
module decides when and how traffic goes home. The package root registers
`FailbackLoop` as every manager's watcher (`core.failback.register_failback`),
so `DatabaseManager(config)` fails back with no wiring by the caller.

One fail-back, once the primary passed DATABASE_FAILBACK_CHECKS probes in a row
(one every DATABASE_HEALTH_TTL seconds):

1. merge what was written on the backup into the primary, beside live traffic;
2. pause new requests and wait for the running ones to finish;
3. merge the rest (usually small): every write acknowledged on the backup is
   now on the primary;
4. switch to the primary and let the paused requests in.

A failed merge postpones the fail-back (recorded as its own event kind) and
the probe count starts again.
"""

from __future__ import annotations

import logging
import threading

from ..core.database_manager import DatabaseManager
from ..core.failback import FailbackSync
from ..errors import SyncError
from .engine import sync_pair

logger = logging.getLogger(__name__)

SYNC_WAIT_S = 30.0  # seconds a fail-back waits for another sync into the primary to finish


def merge_into_primary(manager: DatabaseManager, backup: str, primary: str) -> int:
    """Merge what was written on `backup` into `primary` (the default fail-back sync); return the rows merged.

    Raises `SyncError` (or its `SyncBusyError`) when the merge did not complete.
    """
    result = sync_pair(manager, backup, primary, wait_s=SYNC_WAIT_S)
    if not result.ok:
        raise SyncError(result.error or f"merging {backup} into {primary} did not complete")
    return result.rows_copied


class FailbackLoop:
    """One manager's fail-back watcher: a daemon thread that runs while traffic is away from the primary."""

    def __init__(self, manager: DatabaseManager, sync: FailbackSync | None = None) -> None:
        self._manager = manager
        self._sync = sync if sync is not None else merge_into_primary
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Start the watcher thread unless one runs or the loop was closed."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._watch, name="agent-factory-failback", daemon=True)
            self._thread.start()

    def close(self, timeout: float) -> None:
        """Stop the watcher and wait up to `timeout` seconds for it (not when called from the watcher itself)."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)

    def _watch(self) -> None:
        """Probe the primary until it passes DATABASE_FAILBACK_CHECKS checks in a row, then fail back."""
        manager = self._manager
        interval = max(manager.config.health_ttl, 0.1)
        try:
            while not self._stop.wait(interval) and not manager.closed:
                with self._lock:
                    backup, primary = manager.active_provider, manager.primary_provider
                    if backup == primary:
                        self._thread = None
                        return
                passes = manager.probe_streak(primary)
                if passes >= manager.config.failback_checks and self._fail_back(backup, primary):
                    return
        finally:
            with self._lock:
                restart = self._thread is threading.current_thread()
                if restart:
                    self._thread = None
            if restart and manager.active_provider != manager.primary_provider:
                self.start()  # a failover raced with this watcher's exit

    def _fail_back(self, backup: str, primary: str) -> bool:
        """Merge `backup`'s writes into `primary`, pause traffic, merge the rest, switch; return whether it moved.

        The first merge runs beside live traffic; the second, usually small,
        runs while new requests wait and none runs, so every write acknowledged
        on the backup is on the primary before the first request goes there.
        """
        manager = self._manager
        drain = manager.config.pool_timeout + SYNC_WAIT_S
        try:
            moved = self._sync(manager, backup, primary)
            if manager.active_provider != backup or manager.primary_provider != primary:
                return manager.active_provider == manager.primary_provider
            with manager.paused_traffic(drain) as drained:
                if not drained:
                    raise SyncError(f"requests still ran on {backup} after {drain:.0f} s")
                moved += self._sync(manager, backup, primary)
                switched = manager.switch(
                    backup, primary, f"primary passed {manager.config.failback_checks} consecutive health "
                                     f"checks; merged {moved} rows written on {backup} during the failover")
        except Exception as exc:  # the sync's own errors name the table and provider
            manager.failback_postponed(backup, primary, f"merging the writes made on {backup} failed: {exc}")
            return False
        return switched or manager.active_provider == manager.primary_provider
