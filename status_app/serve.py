"""Run `streamlit` with the page's start-up work already done: `python -m status_app.serve run app.py …`.

Exactly `python -m streamlit …` (same entry point, same arguments), except
that before the server starts:

- pandas, altair and the page's modules are imported, so the first visitor
  after a restart does not wait for them (about 1 s on a busy 2-core machine);
- `inspect`'s module-file cache is filled: Streamlit calls `inspect.stack()`
  once, on the first element it sends, and that first call walks every loaded
  module (40 ms idle, 120 ms under load);
- the objects of those imports are frozen out of the garbage collector
  (`gc.freeze()`): Streamlit runs a full collection after every script run
  (`runner.postScriptGC`), which otherwise scans the ~140,000 objects of
  pandas, altair and Streamlit each time (75 ms idle) while the browser waits
  for the run to finish. Reference counting still frees a frozen object; only
  a reference cycle among them would stay, and what is loaded at that point
  (modules, their functions and tables) lives as long as the process anyway.

`agent-factory status-page` uses it (docs/BENCHMARKS.md has the measurements).
"""

from __future__ import annotations

import gc
import inspect

import altair  # noqa: F401
import pandas  # noqa: F401
from streamlit.web.cli import main

import status_app.charts
import status_app.model
import status_app.timeline  # noqa: F401


def prepare() -> None:
    """Do the first-call work of the first visit now: inspect's module cache, and freeze what is loaded."""
    inspect.stack()
    gc.collect()
    gc.freeze()


if __name__ == "__main__":
    prepare()
    main(prog_name="streamlit")
