"""The README's LangGraph example runs as written (a script of its own) against the local providers."""

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
    assert proc.stdout.splitlines() == [
        "['restart pump P-101', 'plan: restart pump P-101', 'done: plan: restart pump P-101']",
        "4 checkpoints in this thread"]
    assert not any(p in proc.stdout + proc.stderr for p in passwords)
