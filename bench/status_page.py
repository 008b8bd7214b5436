"""Benchmark the status page on 30 days × 3 providers × 5-minute samples (25,920), beside an empty Streamlit page.

`python bench/status_page.py [--rounds N] [--output PATH]` (needs the `status` and `status-test` extras and a
system `chromium`). No PostgreSQL: the page reads the state store only. Measures, as medians of N rounds:

- loader: `load_snapshot` (read-only, one transaction) vs. reading the samples table alone into pandas;
- model: everything the page works out from the snapshot (banner, providers, daily bars, latency, timeline);
- AppTest: one full script run of the page vs. a page with only a title;
- Chromium (Playwright, system Chromium), from navigation to the banner and to both charts drawn with the run
  finished, on a cold server (first load after start: imports and the loader's first call) and a warm one
  (next load: the 30 s cache is hit), vs. the empty page to its title; cold also as `agent-factory
  status-page` serves it (`status_app.serve`: the page's imports done before the first visitor).

The target is the issue's: first render (cold, to all charts) < 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from bench.harness import Entry, format_table, machine  # noqa: E402
from status_app import model  # noqa: E402
from status_app.data import PageSettings, load_snapshot, utcnow  # noqa: E402
from status_app.timeline import timeline  # noqa: E402
from tests.status.seed import Seed, seed  # noqa: E402
from tests.status.server import chromium_path, serve, streamlit_command  # noqa: E402

DEFAULT_OUTPUT = ROOT / "bench" / "results" / "status_page.json"
EMPTY_PAGE = 'import streamlit as st\n\nst.set_page_config(page_title="Empty")\nst.title("Empty page")\n'
BANNER = "Degraded: primary neon is down"


def _median_s(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _entry(name: str, ours: float, baseline: float | None, baseline_name: str, target: str = "",
           meets: bool | None = None, **details: Any) -> Entry:
    return Entry(name, "ms", round(ours * 1000, 1), None if baseline is None else round(baseline * 1000, 1),
                 baseline_name, target, meets, details=details)


def bench_python(state: Path, rounds: int, workdir: Path) -> list[Entry]:
    """Loader, model and AppTest timings."""
    from streamlit.testing.v1 import AppTest

    from status_app.text import plain

    now = utcnow()
    settings = PageSettings(state_dir=state)

    def raw() -> pd.DataFrame:
        with sqlite3.connect(state / "state.db") as conn:
            return pd.read_sql_query("SELECT * FROM health_samples", conn)

    loader = _median_s(lambda: load_snapshot(state, now), rounds)
    baseline = _median_s(raw, rounds)
    snap = load_snapshot(state, now)

    def work() -> None:
        model.banner(snap, settings, now)
        model.provider_states(snap, settings, now)
        model.daily_uptime(snap.samples, now, 30, __import__("datetime").timezone.utc)
        for window in model.WINDOWS.values():
            model.latency_series(snap.samples, now, window)
        model.rpos(snap, settings, now)
        model.sync_lags(snap, settings, now)
        timeline(snap, now)

    derive = _median_s(work, rounds)
    empty = workdir / "empty_app.py"
    empty.write_text(EMPTY_PAGE)
    os.environ["AGENT_FACTORY_STATE_DIR"] = str(state)
    app = str(ROOT / "status_app" / "app.py")
    AppTest.from_file(app, default_timeout=60).run()  # imports once, as a running server has them

    def apptest() -> None:
        import streamlit as st

        st.cache_data.clear()
        at = AppTest.from_file(app, default_timeout=60).run()
        assert not at.exception and at.warning[0].value.startswith(plain(BANNER))

    page = _median_s(apptest, rounds)
    empty_run = _median_s(lambda: AppTest.from_file(str(empty), default_timeout=60).run(), rounds)
    return [
        _entry("status page: load snapshot (25,920 samples)", loader, baseline, "samples table into pandas",
               rows=len(snap.samples), runs=len(snap.runs)),
        _entry("status page: model (banner, uptime, bars, latency, timeline)", derive, None, "none"),
        _entry("status page: AppTest script run (cache cleared)", page, empty_run, "empty Streamlit page"),
    ]


def bench_browser(state: Path, rounds: int, workdir: Path) -> list[Entry]:
    """Cold and warm render in headless system Chromium, page and empty baseline."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise SystemExit("no system chromium: apt-get install chromium")
    empty = workdir / "empty_app.py"
    empty.write_text(EMPTY_PAGE)
    found: dict[str, list[float]] = {k: [] for k in ("cold_banner", "cold_charts", "warm_banner", "warm_charts",
                                                     "empty_cold", "empty_warm", "cpu_warm", "cpu_empty_warm",
                                                     "cli_cold_banner", "cli_cold_charts")}
    cli = [str(Path(sys.executable).parent / "agent-factory"), "status-page", "--port", "{port}", "--state-dir",
           str(state)]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])

        def load(url: str, first: str, charts: bool) -> tuple[float, float, float]:
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            start = time.perf_counter()
            page.goto(url)
            page.get_by_text(first).first.wait_for(timeout=60_000)
            to_first = time.perf_counter() - start
            if charts:
                page.wait_for_function("document.querySelectorAll('[data-testid=stVegaLiteChart] svg.marks')"
                                       ".length >= 2", timeout=60_000)
            page.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=60_000)
            done = time.perf_counter() - start
            cpu = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}["TaskDuration"]
            page.close()
            return to_first, done, cpu

        for _ in range(rounds):
            with serve(state, workdir) as url:
                banner, charts, _ = load(url, BANNER, True)
                found["cold_banner"].append(banner)
                found["cold_charts"].append(charts)
                banner, charts, cpu = load(url, BANNER, True)
                found["warm_banner"].append(banner)
                found["warm_charts"].append(charts)
                found["cpu_warm"].append(cpu)
            with serve(state, workdir, command=cli) as url:
                banner, charts, _ = load(url, BANNER, True)
                found["cli_cold_banner"].append(banner)
                found["cli_cold_charts"].append(charts)
            command = [c.replace(str(ROOT / "status_app" / "app.py"), str(empty))
                       for c in streamlit_command(0)]
            command[command.index("--server.port") + 1] = "{port}"
            with serve(state, workdir, command=command) as url:
                found["empty_cold"].append(load(url, "Empty page", False)[1])
                _, done, cpu = load(url, "Empty page", False)
                found["empty_warm"].append(done)
                found["cpu_empty_warm"].append(cpu)
        browser.close()
    med = {k: statistics.median(v) for k, v in found.items()}
    return [
        _entry("status page: Chromium cold, to banner", med["cold_banner"], med["empty_cold"],
               "empty Streamlit page, cold, to its title"),
        _entry("status page: Chromium cold, to all charts (python -m streamlit run)", med["cold_charts"],
               med["empty_cold"], "empty Streamlit page, cold, to its title", "informational", None,
               rounds=rounds, all_s=[round(v, 3) for v in found["cold_charts"]]),
        _entry("status page: agent-factory status-page cold, to banner", med["cli_cold_banner"], med["empty_cold"],
               "empty Streamlit page, cold, to its title"),
        _entry("status page: agent-factory status-page cold, to all charts (first render)", med["cli_cold_charts"],
               med["empty_cold"], "empty Streamlit page, cold, to its title", "< 2000 ms",
               med["cli_cold_charts"] < 2.0, rounds=rounds, all_s=[round(v, 3) for v in found["cli_cold_charts"]]),
        _entry("status page: Chromium warm, to banner", med["warm_banner"], med["empty_warm"],
               "empty Streamlit page, warm, to its title"),
        _entry("status page: Chromium warm, to all charts", med["warm_charts"], med["empty_warm"],
               "empty Streamlit page, warm, to its title", "< 2000 ms", med["warm_charts"] < 2.0),
        _entry("status page: Chromium renderer CPU, warm load", med["cpu_warm"], med["cpu_empty_warm"],
               "empty Streamlit page, warm"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure (default 5)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"results file (default {DEFAULT_OUTPUT})")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium figures")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="status-bench-"))
    started, load_before = time.perf_counter(), os.getloadavg()
    try:
        state = workdir / "state"
        now = utcnow()
        seed(state, Seed(now=now, days=30, down={"neon": [(now - timedelta(minutes=30), now)],
                                                 "railway": [(now - timedelta(days=3), now - timedelta(days=3)
                                                              + timedelta(minutes=40))]},
                         backup_ages={"neon": timedelta(hours=3), "supabase": timedelta(hours=5)}))
        entries = bench_python(state, args.rounds, workdir)
        if not args.no_browser:
            entries += bench_browser(state, max(1, args.rounds // 2 + 1), workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = {"machine": machine(None, False),
               "run": {"seconds": round(time.perf_counter() - started, 1), "rounds": args.rounds,
                       "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
               "entries": [e.as_json() for e in entries]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(entries))
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
