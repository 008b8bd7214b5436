"""The status page's incident timeline: outages from health samples, plus every failure the state store records."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from agent_factory.state.store import FAILBACK_POSTPONED

from .data import Snapshot
from .model import duration


def outages(samples: pd.DataFrame) -> pd.DataFrame:
    """Return runs of consecutive unhealthy samples per provider, newest first.

    Columns: provider, start, end (NaT while ongoing: the first healthy sample after), duration, error.
    """
    rows = []
    for provider, own in samples.sort_values("at").groupby("provider", sort=False):
        down = np.concatenate(([0], 1 - own["healthy"].astype(bool).to_numpy(dtype=np.int8), [0]))
        edges = np.diff(down)  # 1 where an outage starts, -1 at the first healthy sample after it
        at, errors = own["at"], own["error"]
        for start, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            if end < len(own):
                rows.append((provider, at.iloc[start], at.iloc[end], at.iloc[end] - at.iloc[start], errors.iloc[start]))
            else:
                rows.append((provider, at.iloc[start], pd.NaT, None, errors.iloc[start]))
    frame = pd.DataFrame(rows, columns=["provider", "start", "end", "duration", "error"])
    return frame.sort_values("start", ascending=False, ignore_index=True)


def timeline(snap: Snapshot, now: datetime) -> pd.DataFrame:
    """Return the incidents of the retention window, newest first: columns at, kind, subject, detail."""
    rows: list[tuple[object, str, str, str]] = []
    for _, o in outages(snap.samples).iterrows():
        if pd.isna(o["end"]):
            detail = f"down for {duration(now - o['start'].to_pydatetime())} and counting"
        else:
            detail = f"down for {duration(o['duration'])}, until {o['end']:%Y-%m-%d %H:%M} UTC"
        rows.append((o["start"], "outage", o["provider"], detail + (f": {o['error']}" if o["error"] else "")))
    for _, f in snap.failovers.iterrows():
        kind = "fail-back postponed" if f["kind"] == FAILBACK_POSTPONED else "failover"
        rows.append((f["at"], kind, f"{f['from_provider']} → {f['to_provider']}", f["reason"]))
    for _, e in snap.alert_events.iterrows():
        rows.append((e["at"], f"alert {e['event']}", e["alert_key"].removeprefix("agent-factory/"),
                     f"{e['severity']}: {e['summary']}"))
    for _, d in snap.deliveries.iterrows():
        what = f"{d['event']} of {d['alert_key'].removeprefix('agent-factory/')} ({d['attempts']} attempts)"
        rows.append((d["last_attempt_at"] if pd.notna(d["last_attempt_at"]) else d["created_at"],
                     f"delivery {'expired' if d['status'] == 'expired' else 'failed'}", d["channel"],
                     what + (f": {d['last_error']}" if isinstance(d["last_error"], str) else "")))
    for b in snap.backups:
        if b.status == "failed" and b.started_at >= snap.since:
            rows.append((b.finished_at or b.started_at, "backup failed", b.provider, b.error or "no reason recorded"))
        if b.verify_error and b.started_at >= snap.since:
            rows.append((b.verified_at or b.finished_at or b.started_at, "verification failed", b.provider,
                         f"{b.path}: {b.verify_error}"))
    failed = snap.runs[snap.runs["error"].notna()]
    rows += [(at, "monitor run failed", "monitor", error)
             for at, error in zip(failed["started_at"], failed["error"], strict=True)]
    frame = pd.DataFrame(rows, columns=["at", "kind", "subject", "detail"])
    if frame.empty:
        return frame
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame.sort_values("at", ascending=False, ignore_index=True)
