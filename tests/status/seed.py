"""Seed a state store as a monitor on cron would have filled it, through the real writers.

Used by the status page's tests and by bench/status_page.py. Every run goes
through `monitoring.start_run/add_samples/finish_run` and the real alert rules
(`build_checks` + `apply_checks`), so samples, heartbeats, alert state and
alert events agree with each other as they would in production.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from agent_factory.ops.alerts import MonitorSettings, apply_checks
from agent_factory.ops.monitor import build_checks, serving_provider, status_line
from agent_factory.state import StateStore, monitoring
from agent_factory.state.backups import BackupCatalog, BackupRecord
from agent_factory.state.monitoring import HealthSample

PROVIDERS = ("neon", "supabase", "railway")


@dataclass
class Seed:
    """What to write: `days` of runs every `interval`, the newest `last_run_age` before `now`."""

    now: datetime
    days: float = 1.0
    interval: timedelta = timedelta(minutes=5)
    last_run_age: timedelta = timedelta(minutes=2)
    providers: Sequence[str] = PROVIDERS
    down: dict[str, list[tuple[datetime, datetime]]] = field(default_factory=dict)  # provider: [start, end)
    errors: dict[str, str] = field(default_factory=dict)  # provider: the error text of its failed samples
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)  # no monitor run in [start, end)
    alerts: bool = True  # run the real alert rules on every run
    backup_ages: dict[str, timedelta] = field(default_factory=lambda: {"neon": timedelta(hours=3)})


def seed(state_dir: str | Path, spec: Seed) -> StateStore:
    """Write the runs, samples, alerts and backups of `spec` into the store at `state_dir`; return it."""
    store = StateStore(state_dir)
    settings = MonitorSettings(backup_max_age=None)
    last = spec.now - spec.last_run_age
    count = int((spec.days * 86400) // spec.interval.total_seconds())
    times = [last - spec.interval * i for i in range(count - 1, -1, -1)]
    with store.connect() as conn:
        for i, at in enumerate(times):
            if any(start <= at < end for start, end in spec.gaps):
                continue
            samples = [_sample(name, at, j, i, spec) for j, name in enumerate(spec.providers)]
            run_id = monitoring.start_run(conn, at, spec.providers[0])
            monitoring.add_samples(conn, run_id, samples)
            firing: list[str] = []
            if spec.alerts:
                apply_checks(conn, build_checks(samples, None, at, settings), at, settings, [])
                firing = sorted(k for k, a in monitoring.load_alerts(conn).items() if a.firing)
            up = sum(s.healthy for s in samples)
            monitoring.finish_run(conn, run_id, at + timedelta(seconds=1), can_serve=up > 0, providers_up=up,
                                  providers_total=len(samples), firing=firing, summary=status_line(samples),
                                  serving_provider=serving_provider(samples))
    catalog = BackupCatalog(store)
    for provider, age in spec.backup_ages.items():
        for n, started in enumerate([spec.now - age - timedelta(days=d) for d in (2, 1, 0)]):
            catalog.record(BackupRecord(
                provider=provider, path=f"/srv/backups/{provider}-{started:%Y%m%dT%H%M%S}.dump", format="custom",
                status="ok", started_at=started, finished_at=started + timedelta(seconds=4), duration_s=4.2,
                size_bytes=1_250_000 + n, verified_at=started + timedelta(minutes=1), verify_depth="restore",
                host="db.internal:5432/app", signed=True))
    return store


def _sample(name: str, at: datetime, j: int, i: int, spec: Seed) -> HealthSample:
    healthy = not any(start <= at < end for start, end in spec.down.get(name, []))
    latency = 2.0 + j * 1.5 + (i % 12) * 0.25
    return HealthSample(name, at, j == 0, healthy, latency if healthy else None, latency / 2 if healthy else None,
                        None if healthy else spec.errors.get(name, "connection refused"),
                        {"session_memories": 10, "knowledge_atoms": 5} if healthy else {})
