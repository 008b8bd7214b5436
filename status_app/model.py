"""What the status page says, worked out from a `Snapshot`: plain functions, no Streamlit.

Banner, per-provider state and uptime, daily bars, latency series, backups
and RPO, and sync lag (the incident timeline is `timeline.py`). `now` is always passed in.
Uptime is healthy samples ÷ samples; time without samples is "no data" and
shows as coverage, never as up or down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Literal

import pandas as pd

from agent_factory.state.backups import BackupRecord, backup_age, newest_good_backup

from .data import PageSettings, Snapshot

WINDOWS = {"24 h": timedelta(hours=24), "7 d": timedelta(days=7), "30 d": timedelta(days=30)}
DEFAULT_INTERVAL = timedelta(minutes=5)
BANDS = ["≥ 99.9 %", "≥ 99 %", "≥ 95 %", "< 95 %", "no data"]  # the daily bars' colours, best first
Level = Literal["operational", "degraded", "outage", "unknown", "empty", "missing"]


@dataclass(frozen=True)
class Banner:
    """The one-line verdict at the top of the page."""

    level: Level
    title: str
    reasons: list[str] = field(default_factory=list)
    updated_at: datetime | None = None  # when the newest monitor run finished

    @property
    def text(self) -> str:
        """The banner as one sentence."""
        return f"{self.title}: {'; '.join(self.reasons)}" if self.reasons else self.title


@dataclass(frozen=True)
class Uptime:
    """Uptime over one window: `ratio` None when there is no sample."""

    ratio: float | None
    coverage: float  # share of the window that has samples, 0..1
    samples: int

    def __str__(self) -> str:
        return "no data" if self.ratio is None else f"{self.ratio * 100:.2f} %"


@dataclass(frozen=True, kw_only=True)
class ProviderState:
    """One provider as the newest monitor run saw it, with its uptime per window."""

    name: str
    up: bool | None  # None: not in the newest run
    error: str | None
    latency_ms: float | None
    primary: bool
    serving: bool
    uptime: dict[str, Uptime]


@dataclass(frozen=True)
class Rpo:
    """The age of a provider's newest good backup against the target."""

    provider: str
    age: timedelta | None  # None: no verified backup
    target: timedelta | None
    backup: BackupRecord | None

    @property
    def overdue(self) -> bool:
        """Whether the target is set and missed (no backup counts as missed)."""
        return self.target is not None and (self.age is None or self.age > self.target)


@dataclass(frozen=True)
class SyncLag:
    """How far one backup provider is behind the primary, from the newest recorded sync."""

    target: str
    source: str | None
    behind: timedelta | None  # None: no sync recorded
    last_at: datetime | None
    ok: bool | None
    error: str | None
    max_lag: timedelta

    @property
    def over(self) -> bool:
        """Whether a recorded sync is behind by more than the target, or failed."""
        return self.behind is not None and (self.behind > self.max_lag or not self.ok)


@dataclass(frozen=True)
class StreamLag:
    """How far one backup kept warm by its stream was behind, as the monitor's newest sample saw it."""

    target: str
    source: str
    status: str  # streaming, catching_up or stopped (see agent_factory.ops.stream)
    behind: timedelta | None  # None: unknown
    at: datetime  # when the monitor measured it
    detail: str
    max_lag: timedelta

    @property
    def over(self) -> bool:
        """Whether the stream is stopped or further behind than the target."""
        return self.status == "stopped" or (self.behind is not None and self.behind > self.max_lag)


# ---- the newest run ------------------------------------------------------------------


def newest_run(snap: Snapshot, now: datetime, settings: PageSettings) -> pd.Series | None:
    """Return the newest run that counts: an unfinished run still within `stale_after` is skipped."""
    runs = snap.runs
    counts = runs["finished_at"].notna() | (runs["started_at"] <= pd.Timestamp(now - settings.stale_after))
    found = runs[counts]
    return found.iloc[0] if not found.empty else None


def latest_samples(snap: Snapshot, run: pd.Series | None) -> pd.DataFrame:
    """Return the samples of `run` (its providers as it saw them)."""
    if run is None:
        return snap.samples.iloc[0:0]
    return snap.samples[snap.samples["run_id"] == run["id"]]


def primary_of(snap: Snapshot, run: pd.Series | None) -> str | None:
    """Return the primary the run recorded, or the provider its samples mark primary."""
    if run is not None and isinstance(run["primary_provider"], str):
        return run["primary_provider"]
    marked = latest_samples(snap, run)
    marked = marked[marked["is_primary"] == 1]
    return str(marked["provider"].iloc[0]) if not marked.empty else None


def banner(snap: Snapshot, settings: PageSettings, now: datetime) -> Banner:
    """Return the verdict: unknown (stale or failed monitor) beats outage beats degraded beats operational."""
    if snap.empty:
        return Banner("empty", "No data yet: run `agent-factory monitor --once`")
    run = newest_run(snap, now, settings)
    if run is None:
        return Banner("unknown", "Status unknown: the monitor run in progress has not finished")
    finished = None if pd.isna(run["finished_at"]) else run["finished_at"].to_pydatetime()
    seen = finished or run["started_at"].to_pydatetime()
    if isinstance(run["error"], str) or finished is None:
        why = run["error"] if isinstance(run["error"], str) else "it did not finish"
        return Banner("unknown", f"Status unknown: the last monitor run ({ago(seen, now)}) failed: {why}",
                      updated_at=finished)
    if now - finished > settings.stale_after:
        return Banner("unknown", f"Status unknown: monitor last ran {ago(finished, now)}", updated_at=finished)
    samples = latest_samples(snap, run)
    if samples.empty or not samples["healthy"].any():
        return Banner("outage", "Major outage: no provider answers", updated_at=finished)
    reasons = []
    primary = primary_of(snap, run)
    serving = run["serving_provider"] if isinstance(run["serving_provider"], str) else None
    for _, s in samples[samples["healthy"] == 0].iterrows():
        if s["provider"] == primary:
            reasons.append(f"primary {primary} is down" + (f", {serving} serving" if serving else ""))
        else:
            reasons.append(f"{s['provider']} is down")
    reasons += [f"backup of {r.provider} overdue ({describe_rpo(r)})" for r in rpos(snap, settings, now, run)
                if r.overdue]
    if not snap.firing.empty:
        keys = ", ".join(k.removeprefix("agent-factory/") for k in snap.firing["key"])
        reasons.append(f"alert firing: {keys}")
    if reasons:
        return Banner("degraded", "Degraded", reasons, finished)
    return Banner("operational", "All systems operational", updated_at=finished)


# ---- providers and uptime ------------------------------------------------------------


def sample_interval(samples: pd.DataFrame) -> timedelta:
    """Return the monitor's interval: the median gap between runs (5 minutes when unknown)."""
    times = samples["at"].drop_duplicates().sort_values()
    if len(times) < 2:
        return DEFAULT_INTERVAL
    gap = pd.Timedelta(times.diff().dropna().median()).to_pytimedelta()
    return min(max(gap, timedelta(minutes=1)), timedelta(hours=1))


def uptime(samples: pd.DataFrame, now: datetime, window: timedelta, interval: timedelta) -> Uptime:
    """Return healthy ÷ samples over the `window` before `now`, with the share of it that has samples."""
    inside = samples[samples["at"] > now - window]
    n = len(inside)
    if n == 0:
        return Uptime(None, 0.0, 0)
    return Uptime(float(inside["healthy"].mean()), min(1.0, n * interval / window), n)


def provider_states(snap: Snapshot, settings: PageSettings, now: datetime) -> list[ProviderState]:
    """Return every provider seen in the retention window, in the newest run's order (failover order)."""
    run = newest_run(snap, now, settings)
    latest = latest_samples(snap, run)
    names = list(dict.fromkeys([*latest["provider"], *sorted(snap.samples["provider"].unique())]))
    primary = primary_of(snap, run)
    serving = run["serving_provider"] if run is not None and isinstance(run["serving_provider"], str) else None
    interval = sample_interval(snap.samples)
    result = []
    for name in names:
        own = snap.samples[snap.samples["provider"] == name]
        now_row = latest[latest["provider"] == name]
        up = bool(now_row["healthy"].iloc[0]) if not now_row.empty else None
        error = now_row["error"].iloc[0] if not now_row.empty and isinstance(now_row["error"].iloc[0], str) else None
        latency = now_row["latency_ms"].iloc[0] if not now_row.empty else None
        result.append(ProviderState(
            name=name, up=up, error=error,
            latency_ms=None if latency is None or pd.isna(latency) else float(latency),
            primary=name == primary, serving=name == serving,
            uptime={label: uptime(own, now, window, interval) for label, window in WINDOWS.items()}))
    return result


def daily_uptime(samples: pd.DataFrame, now: datetime, days: int, tz: tzinfo) -> pd.DataFrame:
    """Return one row per provider per day (in `tz`) for the last `days` days, days without samples included.

    Columns: provider, day (date text), samples, uptime (0..100 or NaN), minutes_down, band (one of `BANDS`).
    """
    interval_min = sample_interval(samples).total_seconds() / 60
    today = pd.Timestamp(now).tz_convert(tz).normalize()
    days_shown = [today - pd.Timedelta(days=i) for i in range(days - 1, -1, -1)]
    local_day = samples["at"].dt.tz_convert(tz).dt.normalize()
    grouped = samples.groupby([samples["provider"], local_day.rename("day")])["healthy"].agg(["size", "sum"])
    index = pd.MultiIndex.from_product([list(samples["provider"].unique()), days_shown],
                                       names=["provider", "day"])
    frame = grouped.reindex(index, fill_value=0).reset_index()
    n, healthy = frame["size"].astype(int), frame["sum"].astype(int)
    uptime = (healthy / n.where(n > 0) * 100).astype(float)
    return pd.DataFrame({
        "provider": frame["provider"], "day": frame["day"].dt.strftime("%Y-%m-%d"), "samples": n,
        "uptime": uptime, "minutes_down": ((n - healthy) * interval_min).round().astype(int),
        "band": uptime.map(_band),
    })


def _band(percent: float) -> str:
    if pd.isna(percent):
        return BANDS[4]
    return BANDS[0] if percent >= 99.9 else BANDS[1] if percent >= 99 else BANDS[2] if percent >= 95 else BANDS[3]


def latency_series(samples: pd.DataFrame, now: datetime, window: timedelta) -> pd.DataFrame:
    """Return latency over `window`: each sample for a day or less, hourly p50 and p95 beyond.

    Columns: time, provider, stat ("sample", "p50" or "p95"), latency_ms.
    """
    inside = samples[(samples["at"] > now - window) & samples["latency_ms"].notna()]
    if window <= timedelta(hours=24):
        return pd.DataFrame({"time": inside["at"], "provider": inside["provider"], "stat": "sample",
                             "latency_ms": inside["latency_ms"]}).reset_index(drop=True)
    hourly = inside.assign(time=inside["at"].dt.floor("h")).groupby(["provider", "time"])["latency_ms"]
    stats = pd.concat({"p50": hourly.quantile(0.5), "p95": hourly.quantile(0.95)}, names=["stat"])
    return stats.rename("latency_ms").reset_index()[["time", "provider", "stat", "latency_ms"]]


# ---- backups, RPO and sync -------------------------------------------------------------


def rpos(snap: Snapshot, settings: PageSettings, now: datetime, run: pd.Series | None = None) -> list[Rpo]:
    """Return the RPO of the primary and of every provider backed up before (as the monitor's backup rule)."""
    run = run if run is not None else newest_run(snap, now, settings)
    primary = primary_of(snap, run)
    known = sorted({b.provider for b in snap.backups if b.purpose != "pre-restore"})
    result = []
    for name in dict.fromkeys([*([primary] if primary else []), *known]):
        own = [b for b in snap.backups if b.provider == name]
        result.append(Rpo(name, backup_age(own, now), settings.backup_max_age, newest_good_backup(own, now)))
    return result


def describe_rpo(rpo: Rpo) -> str:
    """Return e.g. "newest good backup 3.2 h old, target 24 h"."""
    target = f"target {hours(rpo.target)}" if rpo.target is not None else "no target"
    if rpo.age is None:
        return f"no verified backup, {target}"
    return f"newest good backup {hours(rpo.age)} old, {target}"


def backup_table(backups: list[BackupRecord]) -> pd.DataFrame:
    """Return the backups per provider newest first, as the page lists them (file names, no paths)."""
    rows = []
    for b in sorted(backups, key=lambda r: (r.provider, r.started_at), reverse=False):
        if b.verify_error:
            verified = f"failed: {b.verify_error}"
        elif b.verified:
            verified = f"yes ({b.verify_depth})" if b.verify_depth else "yes"
        else:
            verified = "no"
        if b.status == "ok" and not b.signed:  # never counts for the RPO (docs/BACKUPS.md)
            verified = f"unsigned, {verified}"
        rows.append({"provider": b.provider, "started": b.started_at, "file": b.path, "purpose": b.purpose,
                     "status": b.status, "size_mb": None if b.size_bytes is None else round(b.size_bytes / 1e6, 2),
                     "duration_s": b.duration_s, "verified": verified, "error": b.error, "pruned_at": b.deleted_at})
    columns = ["provider", "started", "file", "purpose", "status", "size_mb", "duration_s", "verified", "error",
               "pruned_at"]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    frame["error"] = frame["error"].fillna("")
    frame["started"] = pd.to_datetime(frame["started"], utc=True)
    frame["pruned_at"] = pd.to_datetime(frame["pruned_at"], utc=True)
    return frame.sort_values(["provider", "started"], ascending=[True, False], ignore_index=True)


def sync_lags(snap: Snapshot, settings: PageSettings, now: datetime) -> list[SyncLag]:
    """Return the sync lag of every backup provider (every provider but the primary) from the newest sync."""
    run = newest_run(snap, now, settings)
    primary = primary_of(snap, run)
    seen = [*latest_samples(snap, run)["provider"], *sorted(set(snap.samples["provider"])),
            *(s.target for s in snap.syncs)]
    names = [name for name in dict.fromkeys(seen) if name != primary]
    result = []
    for name in names:
        runs = [s for s in snap.syncs if s.target == name]
        newest = max(runs, key=lambda s: s.at, default=None)
        if newest is None:
            result.append(SyncLag(name, None, None, None, None, None, settings.sync_max_lag))
            continue
        if newest.synced_through is not None:
            behind = now - newest.synced_through
        else:
            behind = timedelta(seconds=newest.lag_s or 0) + (now - newest.at)
        result.append(SyncLag(name, newest.source, max(behind, timedelta(0)), newest.at, newest.ok, newest.error,
                              settings.sync_max_lag))
    return result


def stream_lags(snap: Snapshot, settings: PageSettings, now: datetime) -> list[SyncLag | StreamLag]:
    """Return each backup's lag: from its stream when one keeps it warm, else from its newest sync."""
    streams = {s.subscriber: s for s in snap.streams if s.streams}
    result: list[SyncLag | StreamLag] = []
    for lag in sync_lags(snap, settings, now):
        s = streams.get(lag.target)
        result.append(lag if s is None else StreamLag(
            s.subscriber, s.publisher, s.status, None if s.lag_seconds is None else timedelta(seconds=s.lag_seconds),
            s.at, s.detail, settings.stream_max_lag))
    for name in sorted(set(streams) - {lag.target for lag in result}):  # a backup no sync ever reached
        s = streams[name]
        result.append(StreamLag(name, s.publisher, s.status, None if s.lag_seconds is None
                                else timedelta(seconds=s.lag_seconds), s.at, s.detail, settings.stream_max_lag))
    return result


# ---- words -------------------------------------------------------------------------------


def ago(then: datetime, now: datetime) -> str:
    """Return "3 min ago", "2.5 h ago" or "4 d ago"."""
    return f"{duration(now - then)} ago"


def duration(delta: timedelta) -> str:
    """Return a short length of time: "45 s", "12 min", "2.5 h", "3.1 d"."""
    seconds = max(delta.total_seconds(), 0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def hours(delta: timedelta) -> str:
    """Return a length of time in hours: "24 h", "3.2 h"."""
    return f"{delta.total_seconds() / 3600:.1f} h".replace(".0 h", " h")
