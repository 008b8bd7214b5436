"""The page shows untrusted text as text: every Markdown-rendering element, under AppTest (the browser test is
`test_browser.py::test_the_page_shows_untrusted_text_as_text`)."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from status_app.text import WORD_JOINER, plain

from .hostile import hostile_texts, seed_hostile
from .pagetext import everything, shown

HOST = "127.0.0.1:9"
_MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_AUTOLINK = re.compile(rf"(?<!{WORD_JOINER})(://|@)|www(?=\.)", re.IGNORECASE)
_ESCAPED = re.compile(r"\\(.)")


def sources(at) -> list[str]:
    """The Markdown source of every element Streamlit renders as Markdown that shows seeded text."""
    found = [str(e.value) for kind in ("title", "header", "subheader", "markdown", "caption", "success", "warning",
                                       "error", "info") for e in getattr(at, kind)]
    return [s for s in found + [m.label for m in at.metric] if "evil" in shown(s)]


def assert_inert(source: str) -> None:
    """Fail if `source` renders a link, an image, HTML or structure, or holds a GFM autolink literal."""
    html = _MD.render(source)
    assert re.fullmatch(r"<p>.*</p>\n", html, re.DOTALL) or html == "", (source, html)
    for tag in ("<a", "<img", "<em", "<strong", "<code", "<h1", "<li", "<table"):
        assert tag not in html[3:], (source, html)
    assert not _AUTOLINK.search(_ESCAPED.sub(r"\1", source)), source


@pytest.mark.parametrize("text", [
    "[x](https://evil.example/phish) ![px](http://127.0.0.1:9/p.png) <img src=x> <b>b</b>",
    "www.evil.example admin@evil.example HTTPS://EVIL.EXAMPLE :red[red] $x^2$ `c` **b** _i_ ~~s~~",
    "# heading\n\n- item\n1. one\n| a | b |\n|---|---|\n> quote\n    indented\n***",
    "back\\slash \\[not\\] &lt;img&gt; &amp; <!-- c -->",
])
def test_plain_renders_every_character_as_itself(text):
    source = plain(text)
    assert_inert(source)
    assert "\n" not in source
    assert shown(source) == " ".join(part.strip() for part in text.splitlines() if part.strip()) or \
        shown(source) == re.sub(r"\s*\n+\s*", " ", text)


def test_none_is_empty():
    assert plain(None) == ""


@pytest.mark.parametrize("run_failed", [True, False])
def test_every_markdown_element_of_the_page_is_inert(tmp_path, now, page, run_failed):
    payload = hostile_texts(HOST)
    state = tmp_path / "state"
    seed_hostile(state, now, payload, run_failed=run_failed)
    at = page(state)
    assert not at.exception
    found = sources(at)
    for source in found:
        assert_inert(source)
    text = everything(at)
    assert payload.name in text, "provider names and file names are shown as their characters"
    assert "[CLICKME](https://evil.example/phish)" in text, "errors are shown as their characters"
    kinds = {"banner": at.warning, "caption": at.caption, "subheader": at.subheader}
    for kind, elements in kinds.items():
        assert any("CLICKME" in str(e.value) for e in elements), f"no hostile text reached a {kind}"
    assert any("CLICKME" in m.label for m in at.metric)
    assert len(found) >= 8


def test_a_hostile_state_dir_and_config_value_are_inert(tmp_path, page):
    at = page(tmp_path / "[x](https:evil.example) www.evil.example")
    assert not at.exception
    assert [shown(i.value) for i in at.info] == [f"No state store at {tmp_path}/[x](https:evil.example) "
                                                 "www.evil.example/state.db"]
    for source in sources(at):
        assert_inert(source)
    at = page(tmp_path, MONITOR_RETENTION_DAYS="[x](https://evil.example) ![p](http://127.0.0.1:9/p.png)")
    assert len(sources(at)) == 1 and at.error, "the configuration error names the value"
    for source in sources(at):
        assert_inert(source)
