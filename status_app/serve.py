"""Run `streamlit` with the page's heavy imports already done: `python -m status_app.serve run app.py …`.

Exactly `python -m streamlit …` (same entry point, same arguments), except
that pandas, altair and the page's modules are imported before the server
starts, so the first visitor after a restart does not wait for them (about
1 s on a busy 2-core machine). `agent-factory status-page` uses it.
"""

from __future__ import annotations

import altair  # noqa: F401
import pandas  # noqa: F401
from streamlit.web.cli import main

import status_app.charts
import status_app.model
import status_app.timeline  # noqa: F401

if __name__ == "__main__":
    main(prog_name="streamlit")
