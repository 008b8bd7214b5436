"""Fixtures of the status page tests: a clock, seeded state stores and the page under AppTest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="the status page needs the `status` extra")

from streamlit.testing.v1 import AppTest

from status_app.data import utcnow

from .seed import Seed, seed

APP = Path(__file__).resolve().parents[2] / "status_app" / "app.py"
# The page's collapsed table views (label: key); a view's table is sent only once it is opened.
TABLE_VIEWS = {"Providers as a table": "providers_table", "Daily uptime as a table": "uptime_table",
               "Latency as a table": "latency_table", "Sizes as a table": "sizes_table"}


@pytest.fixture
def now() -> datetime:
    """The test's 'now': the real time, since the page measures staleness against the clock."""
    return utcnow()


@pytest.fixture
def seeded(tmp_path: Path, now: datetime) -> Callable[..., Path]:
    """Seed a state store under tmp_path (Seed fields as keywords) and return its directory."""
    count = 0

    def make(**fields: object) -> Path:
        nonlocal count
        count += 1
        state_dir = tmp_path / f"state{count}"
        seed(state_dir, Seed(now=now, **fields))  # type: ignore[arg-type]
        return state_dir

    return make


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., AppTest]:
    """Run the page on a state dir (no .env: the cwd is an empty temp dir) and return the finished AppTest.

    Every table view is open unless `open_tables=False`, so the tests see every table the page can show.
    """
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    for name in ("MONITOR_BACKUP_MAX_AGE_HOURS", "MONITOR_RETENTION_DAYS", "SYNC_MAX_LAG_MINUTES"):
        monkeypatch.delenv(name, raising=False)

    def run(state_dir: Path, open_tables: bool = True, **env: str) -> AppTest:
        monkeypatch.setenv("AGENT_FACTORY_STATE_DIR", str(state_dir))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        at = AppTest.from_file(str(APP), default_timeout=30)
        for key in TABLE_VIEWS.values() if open_tables else ():
            at.session_state[key] = True
        return at.run()

    return run
