"""The README's LangGraph example (a graph with the saver, a store with an index) runs as written locally."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("langgraph.graph", reason="needs the langgraph extra")

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.timeout(120)
def test_the_readme_langgraph_example_runs(env, db, tmp_path, passwords):
    section = README.read_text().split("## Use with LangGraph / LangChain", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [  # the plan node found the note through the store's semantic search
        "['plan: pump P-101 trips at 80 C: restart after cooling', "
        "'done: plan: pump P-101 trips at 80 C: restart after cooling']",
        "4 checkpoints in this thread",
        "['tea']"]
    assert not any(p in proc.stdout + proc.stderr for p in passwords)
