"""The monitor's sync step: bring the backups' writes home, keep the backups warm, check divergence and lag.

Step 3 of a monitor run (`ops.monitor`), in this order:

1. merge each healthy backup into the primary (`ops.sync.merge_backups`): a
   write acknowledged on a backup reaches the primary within one run, whatever
   became of the process that wrote it (a write made less than
   SYNC_MARGIN_SECONDS before the run is taken by the next one);
2. sync the primary into each healthy backup (`ops.sync.warm_backups`), which
   also hands each backup the rows the other backups brought home in step 1;
3. one `divergence` check per backup (failing while it held rows the primary
   lacked, or could not be compared) and one `sync-lag` check per backup;
4. each backup's stream (`ops.stream.stream_states`), recorded as a stream
   sample. A healthy backup kept warm by its stream (streaming, catching up,
   or stopped) gets its `sync-lag` check from the stream: failing when the
   stream is stopped or more than STREAM_LAG_ALERT_SECONDS behind. A backup
   that does not answer keeps the sync's lag check (its provider-down alert
   says the rest), so one dead server does not raise two alerts at once. A paused, absent
   or unsupported stream leaves the backup to the sync, and the check to the
   sync's lag (SYNC_MAX_LAG_MINUTES). The alert keeps its key either way, so
   setting up or dropping a stream does not fire or resolve it by itself.

Nothing here raises: a failed merge or sync is logged and recorded, and the
checks say what is known.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..core import DatabaseManager
from ..replication import SyncResult
from ..state.divergence import Divergence
from ..state.monitoring import HealthSample
from ..state.store import StateStore
from ..state.streams import StreamSample
from .alerts import Check, MonitorSettings, Severity
from .alerts.rules import DIVERGENCE, SYNC_LAG
from .stream import stream_states
from .sync import BackupLag, backup_lags, merge_backups, warm_backups

logger = logging.getLogger(__name__)


@dataclass
class SyncStep:
    """What the sync step did and the checks it makes."""

    syncs: list[SyncResult] = field(default_factory=list)  # the primary into each backup
    divergence: list[Divergence] = field(default_factory=list)  # what each backup held that the primary lacked
    checks: list[Check] = field(default_factory=list)
    streams: list[StreamSample] = field(default_factory=list)  # each backup's stream, to record


def sync_step(db: DatabaseManager, store: StateStore, samples: Sequence[HealthSample], now: datetime,
              settings: MonitorSettings, run_id: int | None = None) -> SyncStep:
    """Merge the backups into the primary, then the primary into the backups; return the runs and checks."""
    diverged = _merge_backups(db, store, samples, now, run_id)
    streams = stream_samples(db, now, run_id)
    syncs, lag_checks = _sync_backups(db, store, samples, now, settings, streams)
    return SyncStep(syncs, diverged, [_divergence_check(d, now) for d in diverged] + lag_checks, streams)


def stream_samples(db: DatabaseManager, now: datetime, run_id: int | None = None) -> list[StreamSample]:
    """Return each backup's stream as a sample to record; empty (logged) when the streams cannot be read."""
    try:
        states = stream_states(db)
    except Exception:  # a stream problem must not stop health monitoring
        logger.exception("reading the streams failed; their lag is not sampled this run")
        return []
    return [StreamSample(at=now, subscriber=s.subscriber, publisher=s.publisher, status=s.status,
                         lag_seconds=s.lag_seconds, lag_bytes=s.lag_bytes, detail=s.detail, run_id=run_id)
            for s in states]


def _merge_backups(db: DatabaseManager, store: StateStore, samples: Sequence[HealthSample], now: datetime,
                   run_id: int | None) -> list[Divergence]:
    """Merge each healthy backup into the primary (see `ops.sync.merge_backups`); never raises."""
    try:
        return merge_backups(db, store, [s.provider for s in samples if s.healthy], now=now, run_id=run_id)
    except Exception:  # a merge problem must not stop health monitoring
        logger.exception("merging the backups into the primary failed; divergence is not measured this run")
        return []


def _divergence_check(d: Divergence, now: datetime) -> Check:
    """Fail while a backup holds rows the primary lacked (one run finding some is healed by its own merge)."""
    failing = d.rows is None or d.rows > 0
    return Check(DIVERGENCE, Severity.WARNING, failing, d.summary(now), d.backup, suppressible=True)


def _sync_backups(db: DatabaseManager, store: StateStore, samples: Sequence[HealthSample], now: datetime,
                  settings: MonitorSettings, streams: Sequence[StreamSample] = ()
                  ) -> tuple[list[SyncResult], list[Check]]:
    """Sync the primary into each backup (warm backups) and return the runs and the lag checks.

    No lag check is made while the primary is down (nothing new can reach it).
    A backup kept warm by its stream is checked on the stream (none when
    `settings.stream_max_lag` is None), the others on the sync's lag (none when
    SYNC_MAX_LAG_MINUTES is 0).
    """
    healthy = [s.provider for s in samples if s.healthy]
    try:
        results = warm_backups(db, store, healthy)
    except Exception:  # a sync problem must not stop health monitoring
        logger.exception("warm backups: the sync step failed; lag is checked from earlier runs")
        results = []
    if db.primary_provider not in healthy:
        return results, []
    fresh = {r.target: r for r in results if r.ok}
    # A backup that does not answer is the provider-down alert's: its stream is not checked on top of it.
    streaming = {s.subscriber: s for s in streams if s.streams and s.subscriber in healthy}
    checks = []
    for lag in backup_lags(db, store):
        stream = streaming.get(lag.backup)
        if stream is not None:
            if settings.stream_max_lag is not None:
                checks.append(stream_check(stream, settings.stream_max_lag))
        elif settings.sync_max_lag is not None:
            checks.append(_lag_check(lag, fresh.get(lag.backup), now, settings.sync_max_lag))
    return results, checks


def stream_check(stream: StreamSample, max_lag: timedelta) -> Check:
    """Return the lag check of a backup kept warm by its stream: failing when stopped or over `max_lag`."""
    limit = f"{max_lag.total_seconds():g} s"
    where = f"backup {stream.subscriber}'s stream from {stream.publisher}"
    if stream.status == "stopped":
        return Check(SYNC_LAG, Severity.WARNING, True, f"{where} is stopped: {stream.detail}", stream.subscriber,
                     suppressible=True)
    if stream.lag_seconds is None:
        return Check(SYNC_LAG, Severity.WARNING, False, f"{where} is {stream.status.replace('_', ' ')}, lag unknown",
                     stream.subscriber, suppressible=True)
    behind = f"{stream.lag_seconds:.1f} s"
    if stream.lag_seconds > max_lag.total_seconds():
        return Check(SYNC_LAG, Severity.WARNING, True, f"{where} is {behind} behind (limit {limit})",
                     stream.subscriber, suppressible=True)
    return Check(SYNC_LAG, Severity.WARNING, False, f"{where} is {behind} behind", stream.subscriber,
                 suppressible=True)


def _lag_check(lag: BackupLag, fresh: SyncResult | None, now: datetime, max_lag: timedelta) -> Check:
    seconds = fresh.lag_s if fresh is not None and fresh.lag_s is not None else lag.lag_s(now)
    limit = f"{max_lag.total_seconds() / 60:g} min"
    if seconds is None:
        why = f": {lag.error}" if lag.error else ""
        return Check(SYNC_LAG, Severity.WARNING, False,
                     f"backup {lag.backup} has no successful sync from {lag.source} on record yet{why}", lag.backup,
                     suppressible=True)
    behind = f"{seconds / 60:.1f} min"
    if seconds > max_lag.total_seconds():
        why = f"; last sync failed: {lag.error}" if lag.last_ok is False and lag.error else ""
        return Check(SYNC_LAG, Severity.WARNING, True,
                     f"backup {lag.backup} is {behind} behind {lag.source} (limit {limit}){why}", lag.backup,
                     suppressible=True)
    return Check(SYNC_LAG, Severity.WARNING, False, f"backup {lag.backup} is {behind} behind {lag.source}",
                 lag.backup, suppressible=True)
