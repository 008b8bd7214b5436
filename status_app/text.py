"""Untrusted text for Streamlit's Markdown-rendering elements: every character shown as itself.

Streamlit renders Markdown (with its own `:color[…]` directives, LaTeX and
GFM autolinks) in `st.markdown`, captions, alerts, headers and widget labels.
File names, provider names, errors and alert summaries come from the state
store and from backup directories other people can write to, so they pass
through `plain()` before they reach one of those elements. Tables
(`st.dataframe`) and chart text draw cells as text and need nothing.
"""

from __future__ import annotations

import re
import string

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping them all turns off links,
# images, emphasis, code, raw HTML, headings, lists, tables, math and Streamlit's directives, and the escaped
# text renders as the original characters.
_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
# GFM autolink literals are also found after parsing, in the text with its escapes resolved (remark's
# mdast-util-gfm-autolink-literal), so a WORD JOINER (U+2060, invisible) goes where they start:
# before "://", the dot of "www." and "@".
_AUTOLINK = re.compile(r"(?=://)|(?<=www)(?=\.)|(?=@)", re.IGNORECASE)
_BREAKS = re.compile(r"\s*[\r\n]+\s*")
WORD_JOINER = "\u2060"


def plain(text: object) -> str:
    """Return `text` as Markdown that renders as exactly its characters, on one line (None: "")."""
    if text is None:
        return ""
    one_line = _BREAKS.sub(" ", str(text))
    return _PUNCTUATION.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, one_line))
