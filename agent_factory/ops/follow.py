"""`agent-factory sync --follow`: keep backups warm with the sync engine every few seconds.

The fallback path of docs/CONTINUITY.md for a backup that cannot take a
logical-replication stream (its stream status is `unsupported`), or for any
backup named on purpose. Each round is the monitor's warm-up step
(`warm_backups`) limited to those backups: the primary's changed rows are
merged into each by last-writer-wins, and every run is recorded in the state
store, so `verify`, the status page and the lag alert see the backup's lag.

Decisions:
- The default interval is FOLLOW_INTERVAL_S (5 s): a round that finds nothing
  costs one indexed read per table, and a backup stays within an interval plus
  one round behind the primary.
- A stop request ends the loop after the running round, never inside one; a
  round that fails (busy target, unreachable provider) is recorded and the
  loop goes on. An unexpected error is logged with its traceback and the loop
  goes on: this is a boundary, like the monitor loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..core import DatabaseManager
from ..errors import ConfigError
from ..replication import SyncResult
from ..state.store import StateStore
from .stream import stream_states
from .sync import warm_backups

logger = logging.getLogger(__name__)

FOLLOW_INTERVAL_S = 5.0


@dataclass
class FollowReport:
    """What a `follow` loop did: rounds run and the totals over them."""

    backups: list[str]
    rounds: int = 0
    rows_copied: int = 0
    failed_syncs: int = 0
    last: list[SyncResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the last round synced every backup."""
        return bool(self.last) and all(r.ok for r in self.last)

    def summary(self) -> str:
        """Return one sentence for people."""
        text = (f"followed {', '.join(self.backups)} for {self.rounds} rounds: {self.rows_copied} rows copied, "
                f"{self.failed_syncs} failed syncs")
        if self.last and not self.ok:
            text += "; the last round failed for " + ", ".join(r.target for r in self.last if not r.ok)
        return text + "."


def fallback_backups(db: DatabaseManager) -> list[str]:
    """Return the backups whose stream status is `unsupported` (they cannot subscribe), in failover order."""
    return follow_targets(db, [s.subscriber for s in stream_states(db) if s.status == "unsupported"])


def follow_targets(db: DatabaseManager, backups: Sequence[str]) -> list[str]:
    """Return the named backups in failover order; raise `ConfigError` for an unknown name or the primary."""
    for name in backups:
        if name not in db.providers:
            raise ConfigError(f"unknown provider {name!r}; configured providers: {', '.join(db.providers)}")
        if name == db.primary_provider:
            raise ConfigError(f"{name} is the primary: sync --follow copies the primary into backups")
    return [n for n in db.providers if n in backups]


def follow(db: DatabaseManager, store: StateStore, backups: Sequence[str], *, interval_s: float = FOLLOW_INTERVAL_S,
           stop: threading.Event | None = None, rounds: int | None = None,
           on_round: Callable[[list[SyncResult]], None] | None = None) -> FollowReport:
    """Sync the primary into `backups` every `interval_s` until `stop` is set or `rounds` are done.

    Raises `ConfigError` for an unknown backup, the primary among them, no
    backup, or an interval that is not positive. Never raises for a provider
    failure: each failed sync is recorded and counted, and the next round tries again.
    """
    if not interval_s > 0:
        raise ConfigError("the follow interval must be a positive number of seconds")
    targets = follow_targets(db, backups)
    if not targets:
        raise ConfigError("no backup to follow: name one with --to, or use --all")
    stop = stop or threading.Event()
    report = FollowReport(targets)
    while rounds is None or report.rounds < rounds:
        started = time.monotonic()
        try:
            results = warm_backups(db, store, backups=targets)
        except Exception:
            logger.exception("sync --follow round failed; trying again in %s s", interval_s)
            results = []
        report.rounds += 1
        report.last = results
        report.rows_copied += sum(r.rows_copied for r in results)
        report.failed_syncs += sum(not r.ok for r in results)
        if on_round is not None:
            on_round(results)
        if (rounds is not None and report.rounds >= rounds) or stop.wait(
                max(0.0, interval_s - (time.monotonic() - started))):
            break
    return report
