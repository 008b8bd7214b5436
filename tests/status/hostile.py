"""A state store whose every free-text field holds Markdown links, images and HTML (the page must show it as text).

`hostile_texts(host)` gives the payloads: `name` has no slash, so it survives as
a provider name and as a backup's file name (`Path(...).name`); `text` is for
errors, reasons and summaries. Images point at `host` (a capture server the
test runs), so a rendered image shows up as a request there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from agent_factory.state import StateStore, monitoring
from agent_factory.state.backups import BackupCatalog, BackupRecord, RestoreRecord
from agent_factory.state.divergence import Divergence, add_divergence

from .seed import Seed, seed

MIN = timedelta(minutes=1)


@dataclass(frozen=True)
class Hostile:
    """The payloads seeded into one store."""

    name: str  # provider names and backup file names
    text: str  # errors, reasons, summaries


def hostile_texts(host: str) -> Hostile:
    """Return payloads whose images point at `host` ("127.0.0.1:PORT")."""
    name = (f"[CLICKME](https:evil.example) ![px](http:{host}) <img src=http:{host}> "
            "<a href=https:evil.example>html</a> www.evil.example admin@evil.example **bold** :red[red] $x$")
    text = (f"[CLICKME](https://evil.example/phish) ![px](http://{host}/pixel.png) "
            f"<img src=\"http://{host}/html.png\"> <a href=\"https://evil.example/a\">html</a> "
            "https://evil.example/bare www.evil.example/w admin@evil.example\n\n# heading\n- item | a | b |")
    return Hostile(name, text)


def seed_hostile(state_dir: Path, now: datetime, payload: Hostile, *, run_failed: bool) -> None:
    """Seed a day of runs with `payload` in every field the page shows; the newest run failed if `run_failed`."""
    name, text = payload.name, payload.text
    seed(state_dir, Seed(now=now, providers=(name, "supabase", "railway"), down={name: [(now - 30 * MIN, now)]},
                         errors={name: text}, backup_ages={}))
    store = StateStore(state_dir)
    store.record_failover(name, "supabase", text)
    store.record_sync(name, "railway", ok=False, error=text)
    with store.connect() as conn:
        add_divergence(conn, [Divergence(name, "supabase", now - 2 * MIN, None, None, False, text)])
        if run_failed:
            conn.execute("UPDATE monitor_runs SET error = ? WHERE id = (SELECT MAX(id) FROM monitor_runs)", (text,))
        delivery = monitoring.enqueue_delivery(conn, now - 5 * MIN, alert_key=f"agent-factory/{name}",
                                               event="trigger", severity="WARNING", channel=name, subject=text,
                                               body=text)
    monitoring.mark_failed(store, delivery, now - 4 * MIN, text, attempted=True)
    catalog = BackupCatalog(store)
    started = now - 3 * timedelta(hours=1)
    for suffix, status, error in (("ok", "ok", None), ("failed", "failed", text)):
        catalog.record(BackupRecord(
            provider=name, path=f"/srv/backups/{name}-{suffix}.dump", format="custom", status=status,
            started_at=started, finished_at=started + MIN, duration_s=60.0, size_bytes=1000,
            verified_at=started + 2 * MIN if status == "ok" else None, verify_depth="restore", error=error))
    catalog.record(BackupRecord(provider=name, path=f"/srv/backups/{name}-bad.dump", format="custom", status="ok",
                                started_at=started - MIN, size_bytes=1000))
    catalog.mark_verify_failed(f"/srv/backups/{name}-bad.dump", text)
    catalog.record_restore(RestoreRecord(
        provider=name, backup_path=f"/srv/backups/{name}-ok.dump", backup_provider=name, started_at=now - 10 * MIN,
        finished_at=now - 9 * MIN, duration_s=61.5, status="failed", pre_restore_backup=None, error=text))
