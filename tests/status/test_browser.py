"""The page in a real Streamlit server, driven by Playwright in Debian's system Chromium (no browser download).

This catches what AppTest cannot: `streamlit run` does not put the working
directory on sys.path, so the page works only with status_app installed; the
charts must really draw; the page must settle (no running indicator left).
Skips with a reason without Chromium or Playwright, unless
AGENT_FACTORY_REQUIRE_BROWSER=1 (set by .ci/run), where that is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from agent_factory.state import StateStore

from status_app.text import WORD_JOINER

from .hostile import hostile_texts, seed_hostile
from .seed import Seed, seed
from .server import chromium_path, serve

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
MIN = timedelta(minutes=1)


def _missing(what: str) -> None:
    if os.environ.get("AGENT_FACTORY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what} (AGENT_FACTORY_REQUIRE_BROWSER=1: the browser test must run)")
    pytest.skip(what)


@pytest.fixture
def browser():
    """A headless system Chromium under Playwright."""
    executable = chromium_path()
    if executable is None:
        _missing("no system Chromium: apt-get install chromium")
    if importlib.util.find_spec("playwright") is None:
        _missing("playwright is not installed: pip install playwright (no `playwright install` needed)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


def settled(page, banner: str) -> None:
    """Wait until the banner, every chart and the end of the run are there."""
    page.get_by_text(banner).first.wait_for(timeout=60_000)
    page.wait_for_selector("[data-testid=stVegaLiteChart]", timeout=60_000)
    page.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=60_000)


def test_the_page_renders_in_chromium_accessibly(browser, tmp_path, now):
    state = tmp_path / "state"
    seed(state, Seed(now=now, days=30, down={"neon": [(now - 30 * MIN, now)]},
                     backup_ages={"neon": timedelta(hours=3), "supabase": timedelta(hours=5)}))
    store = StateStore(state)
    store.record_failover("neon", "supabase", "connection refused")
    store.record_sync("neon", "railway", ok=True, rows_copied=12, synced_through=now - 2 * MIN, lag_s=0.4)
    with serve(state, tmp_path) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 2000})
        page.goto(url)
        settled(page, "Degraded: primary neon is down, supabase serving")
        assert page.locator("[data-testid=stException]").count() == 0
        assert page.title() == "Agent Factory status"
        assert page.locator("h1").count() == 1 and page.locator("h1").inner_text() == "Agent Factory status"
        assert page.locator("html").get_attribute("lang") == "en"
        charts = page.locator("[data-testid=stVegaLiteChart]")
        labels = [charts.nth(i).get_attribute("aria-label") for i in range(charts.count())]
        assert len(labels) == 2
        assert labels[0].startswith("Daily uptime over 30 days. neon: 30 of 30 days with data")
        assert labels[1].startswith("Health-check latency over 24 h (each sample): neon median")
        assert page.locator("svg.marks").count() == 2, "both charts drew"
        body = page.locator("body").inner_text().replace(WORD_JOINER, "")
        for text in ("neon status", "Down", "supabase status", "RPO neon", "Sync lag railway", "Timeline"):
            assert text in body
        assert page.locator("[data-testid=stExpander] [data-testid=stDataFrame]").count() == 0, "views closed"
        page.get_by_text("Providers as a table").click()  # opening a view reruns the page and draws its table
        page.locator("[data-testid=stExpander] [data-testid=stDataFrame]").first.wait_for(timeout=60_000)
        page.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=60_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "status-page.png"))
        assert (ARTIFACTS / "status-page.png").stat().st_size > 20_000


def test_the_page_says_when_there_is_no_store(browser, tmp_path):
    with serve(tmp_path / "nowhere", tmp_path) as url:
        page = browser.new_page()
        page.goto(url)
        page.get_by_text("No state store at").wait_for(timeout=60_000)
        page.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=60_000)
        assert page.locator("[data-testid=stException]").count() == 0
    assert not (tmp_path / "nowhere").exists()


class _Hits(BaseHTTPRequestHandler):
    """Record every request: an image the page should not have rendered lands here."""

    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # http.server's naming
        self.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def capture():
    """An HTTP server on 127.0.0.1 that records the paths asked of it; yields (host:port, hits)."""
    hits: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Hits", (_Hits,), {"hits": hits}))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(("run_failed", "banner"), [(True, "Status unknown: the last monitor run"),
                                                      (False, "Degraded: primary")])
def test_the_page_shows_untrusted_text_as_text(browser, tmp_path, now, capture, run_failed, banner):
    host, hits = capture
    payload = hostile_texts(host)
    state = tmp_path / "state"
    seed_hostile(state, now, payload, run_failed=run_failed)
    with serve(state, tmp_path) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 3000})
        page.goto(url)
        settled(page, banner)
        assert page.locator("[data-testid=stException]").count() == 0
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
        sources = page.eval_on_selector_all("img, image, source", "els => els.map(e => e.outerHTML)")
        body = page.locator("body").inner_text().replace(WORD_JOINER, "")
        html = page.content()
        bar = page.locator("[data-testid=stVegaLiteChart] .mark-rect path").first
        bar.hover()  # the chart's tooltip names the provider: vega-tooltip escapes it
        tooltip = page.locator("#vg-tooltip-element")
        tooltip.wait_for(state="visible", timeout=30_000)
        tip = tooltip.inner_html()
    assert [h for h in hrefs if "evil" in h or "mailto:" in h or host in h] == [], hrefs
    assert [s for s in sources if host in s or "evil" in s] == [], "an image from the data"
    assert "CLICKME</a>" not in html and "<b>bold</b>" not in html and "<strong>bold" not in html
    assert "<a" not in tip and "<img" not in tip and "[CLICKME]" in tip
    assert hits == [], "the browser fetched an image named in the data"
    assert "[CLICKME](https:evil.example)" in body, "a provider name is shown as its characters"
    assert "[CLICKME](https://evil.example/phish)" in body, "an error is shown as its characters"
