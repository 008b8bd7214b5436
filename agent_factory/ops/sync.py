"""`agent-factory sync`: merge one provider into another, or converge them all; keep backups warm.

- `sync(db, source, target)`: one pair (see `agent_factory.replication.sync_pair`).
- `sync(db, all_providers=True)`: converge every provider: each reachable
  provider into the hub (the primary, or the first reachable provider after it
  in failover order when it is down), then the hub into each. Afterwards every
  provider holds the winning version of every row any of them had when the run
  started (unreachable providers are reported and skipped).
- `merge_backups(db, store)`: the monitor's first step: each healthy backup
  into the primary, so a write acknowledged on a backup (by a process that
  failed over, and perhaps died before failing back) reaches the primary;
  returns what each backup held that the primary lacked (`Divergence`).
- `warm_backups(db, store)`: the monitor's second step: the primary into each
  backup, each run recorded in the state store (`record_sync`) with the
  backup's lag. Run after `merge_backups`, it also hands every backup the
  other backups' rows.
- `divergence(db)`: what `merge_backups` would find now, without writing (`verify`).

Each pair's result is recorded in the state store when one is given. Dry runs
(`check=True`) write nothing anywhere, not even the state store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..core import DatabaseManager
from ..errors import AgentFactoryError, ConfigError, SyncBusyError
from ..replication import SyncResult, TableResult, sync_pair
from ..state.divergence import Divergence
from ..state.store import StateStore, SyncRun, utcnow

logger = logging.getLogger(__name__)

PairProgress = Callable[[str, str, TableResult], None]
MERGE_WAIT_S = 30.0  # how long a merge into the primary waits for another sync into it (a process's fail-back)


@dataclass
class SyncReport:
    """What `sync` did (or, with check, would do): one result per pair, in the order run."""

    pairs: list[SyncResult]
    dry_run: bool
    skipped: dict[str, str] = field(default_factory=dict)  # provider -> why it took no part
    hub: str | None = None  # with all_providers: the provider everything went through

    @property
    def ok(self) -> bool:
        """True when every pair synced and no provider was skipped."""
        return all(p.ok for p in self.pairs) and not self.skipped

    @property
    def changed(self) -> bool:
        """True when rows were written (never with a dry run)."""
        return not self.dry_run and any(p.rows_copied for p in self.pairs)

    @property
    def rows_copied(self) -> int:
        return sum(p.rows_copied for p in self.pairs)

    @property
    def conflicts_resolved(self) -> int:
        return sum(p.conflicts_resolved for p in self.pairs)

    @property
    def tombstones_applied(self) -> int:
        return sum(p.tombstones_applied for p in self.pairs)

    @property
    def max_lag_s(self) -> float | None:
        lags = [p.lag_s for p in self.pairs if p.lag_s is not None]
        return max(lags) if lags else None

    def summary(self) -> str:
        """Return one sentence for people."""
        verb = "would copy" if self.dry_run else "copied"
        failed = [f"{p.source} -> {p.target}" for p in self.pairs if not p.ok]
        text = (f"{len(self.pairs)} syncs: {self.rows_copied} rows {verb}, {self.conflicts_resolved} conflicts "
                f"resolved, {self.tombstones_applied} tombstones applied")
        if self.max_lag_s is not None:
            text += f", max lag {self.max_lag_s:.1f} s"
        if failed:
            text += f"; FAILED: {', '.join(failed)}"
        if self.skipped:
            text += "; skipped " + ", ".join(f"{n} ({why})" for n, why in self.skipped.items())
        return text + "."


def sync(db: DatabaseManager, source: str | None = None, target: str | None = None, *,
         all_providers: bool = False, check: bool = False, store: StateStore | None = None,
         progress: PairProgress | None = None, wait_s: float = 0.0, full: bool = False) -> SyncReport:
    """Sync `source` into `target`, or (all_providers) converge every provider; return the report.

    Raises `ConfigError` when neither or both forms are given or a provider is
    unknown, and `SyncBusyError` when another sync holds a target's lock. A
    pair that fails part way is reported in the result (`ok` False), and with
    all_providers the run goes on with the other pairs.
    """
    if all_providers == (source is not None or target is not None):
        raise ConfigError("name a pair (--from A --to B) or ask for --all, not both and not neither")
    if not all_providers:
        if source is None or target is None:
            raise ConfigError("a sync needs both --from and --to")
        result = _one(db, source, target, check, store, progress, wait_s, full)
        return SyncReport([result], check)
    return _converge(db, check, store, progress, wait_s, full)


def _one(db: DatabaseManager, source: str, target: str, check: bool, store: StateStore | None,
         progress: PairProgress | None, wait_s: float, full: bool) -> SyncResult:
    def table_done(table: TableResult) -> None:
        if progress is not None:
            progress(source, target, table)

    result = sync_pair(db, source, target, dry_run=check, progress=table_done, wait_s=wait_s, full=full)
    if store is not None and not check:
        record(store, result)
    return result


def _converge(db: DatabaseManager, check: bool, store: StateStore | None, progress: PairProgress | None,
              wait_s: float, full: bool) -> SyncReport:
    health = db.health_check_all(force=True)
    order = list(db.providers)
    start = order.index(db.primary_provider)
    rotation = order[start:] + order[:start]
    up = [n for n in rotation if health.get(n)]
    skipped = {n: "unreachable" for n in rotation if not health.get(n)}
    report = SyncReport([], check, skipped, up[0] if up else None)
    if len(up) < 2:
        return report
    hub, others = up[0], up[1:]
    pairs = [(name, hub) for name in others] + [(hub, name) for name in others]
    for source, target in pairs:
        try:
            report.pairs.append(_one(db, source, target, check, store, progress, wait_s, full))
        except SyncBusyError as exc:  # go on with the other pairs; this one is reported failed
            report.pairs.append(failed(source, target, str(exc), check))
    return report


def failed(source: str, target: str, error: str, dry_run: bool = False) -> SyncResult:
    """Return the result of a sync that could not run at all."""
    return SyncResult.build(source, target, [], synced_through=None, lag_s=None, duration_s=0.0,
                            dry_run=dry_run, error=error)


def record(store: StateStore, result: SyncResult, previous: SyncRun | None = None) -> None:
    """Record one pair's run in the state store (a failed run keeps the last known `synced_through`)."""
    through, lag = result.synced_through, result.lag_s
    if through is None and previous is not None and previous.synced_through is not None:
        through = previous.synced_through
        lag = None
    store.record_sync(result.source, result.target, ok=result.ok, rows_copied=result.rows_copied,
                      conflicts=result.conflicts_resolved, tombstones=result.tombstones_applied,
                      synced_through=through, lag_s=lag, duration_s=result.duration_s, error=result.error)


@dataclass(frozen=True, kw_only=True)
class BackupLag:
    """How far one backup is behind the primary, as the last sync left it."""

    backup: str
    source: str
    synced_through: datetime | None
    last_sync_at: datetime | None
    last_ok: bool | None
    error: str | None

    def lag_s(self, now: datetime) -> float | None:
        """Seconds between `now` and the time up to which the backup holds the primary's data."""
        return None if self.synced_through is None else max((now - self.synced_through).total_seconds(), 0.0)


def warm_backups(db: DatabaseManager, store: StateStore, healthy: Sequence[str] | None = None, *,
                 backups: Sequence[str] | None = None) -> list[SyncResult]:
    """Sync the primary into each backup (or the named `backups`) and record every run; return the results.

    `healthy` (default: probe now) names the providers that answer: a backup
    that does not is recorded as a failed sync; nothing runs when the primary
    does not answer (its backups' lag grows, and the lag rule reports it).
    Never raises for a provider failure; a backup whose lock another sync
    holds is recorded as failed ("busy").
    """
    up = set(healthy) if healthy is not None else {n for n, ok in db.health_check_all().items() if ok}
    primary = db.primary_provider
    if primary not in up:
        logger.warning("warm backups: primary %s does not answer; no sync this run", primary)
        return []
    previous = {(r.source, r.target): r for r in store.latest_syncs()}
    results = []
    for backup in db.providers:
        if backup == primary or (backups is not None and backup not in backups):
            continue
        if backup not in up:
            result = failed(primary, backup, f"provider {backup} does not answer")
        else:
            try:
                result = sync_pair(db, primary, backup)
            except AgentFactoryError as exc:  # busy, schema not deployed, ...: recorded, never raised
                result = failed(primary, backup, str(exc))
        record(store, result, previous.get((primary, backup)))
        results.append(result)
    return results


def merge_backups(db: DatabaseManager, store: StateStore, healthy: Sequence[str] | None = None, *,
                  now: datetime | None = None, run_id: int | None = None) -> list[Divergence]:
    """Merge every healthy backup into the primary, record each run, and return what each backup held.

    A backup's rows the primary lacks or holds older are written there (last
    writer wins, tombstones; derived counters recomputed): the writes of a
    process that served from a backup reach the primary whatever became of it.
    `healthy` (default: probe now) names the providers that answer; nothing
    runs when the primary does not. Waits up to MERGE_WAIT_S for another sync
    into the primary. Never raises for a provider failure or a busy primary:
    that backup's `Divergence` has `rows` None (or, part way, `merged` False)
    and the error. `now` (default: the clock) dates the findings.
    """
    found = []
    for result in _backups_into_primary(db, healthy, dry_run=False):
        record(store, result)
        found.append(_divergence(result, now or utcnow(), run_id))
        if result.rows_copied:
            logger.warning("merged %d rows that backup %s held and primary %s lacked (oldest written %s)",
                           result.rows_copied, result.source, result.target, result.oldest_written)
    return found


def divergence(db: DatabaseManager, healthy: Sequence[str] | None = None) -> list[Divergence]:
    """Return what each healthy backup holds that the primary lacks or holds older, writing nothing.

    A dry run of `merge_backups` (no lock taken); empty when the primary does
    not answer. Never raises for a provider failure (`rows` None and the error).
    """
    return [_divergence(r, utcnow(), None) for r in _backups_into_primary(db, healthy, dry_run=True)]


def _backups_into_primary(db: DatabaseManager, healthy: Sequence[str] | None, *, dry_run: bool) -> list[SyncResult]:
    """Sync each healthy backup into the primary (none when the primary does not answer); never raises for one."""
    up = set(healthy) if healthy is not None else {n for n, ok in db.health_check_all().items() if ok}
    primary = db.primary_provider
    if primary not in up:
        return []
    results = []
    for backup in db.providers:
        if backup == primary or backup not in up:
            continue
        try:
            results.append(sync_pair(db, backup, primary, dry_run=dry_run, wait_s=MERGE_WAIT_S))
        except AgentFactoryError as exc:  # busy, schema not deployed, ...: recorded, never raised
            results.append(failed(backup, primary, str(exc), dry_run))
    return results


def _divergence(result: SyncResult, at: datetime, run_id: int | None) -> Divergence:
    measured = result.ok or bool(result.tables)
    return Divergence(result.source, result.target, at, result.rows_copied if measured else None,
                      result.oldest_written, result.ok and not result.dry_run, result.error, run_id)


def backup_lags(db: DatabaseManager, store: StateStore) -> list[BackupLag]:
    """Return each backup's state as the newest recorded sync from the primary left it."""
    latest = {(r.source, r.target): r for r in store.latest_syncs()}
    primary = db.primary_provider
    lags = []
    for backup in db.providers:
        if backup == primary:
            continue
        run = latest.get((primary, backup))
        lags.append(BackupLag(backup=backup, source=primary, synced_through=run.synced_through if run else None,
                              last_sync_at=run.at if run else None, last_ok=run.ok if run else None,
                              error=run.error if run else None))
    return lags
