"""The Ansible overhead benchmark runs end to end (its figures are not asserted: no wall-clock checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.real_server


def test_ansible_overhead_quick_run(tmp_path: Path) -> None:
    output = tmp_path / "ansible.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "ansible_overhead.py"), "--quick",
                           "--output", str(output)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    entries = json.loads(output.read_text())
    assert [e["name"] for e in entries] == ["ansible.health_check", "ansible.backup_one_provider"]
    for entry in entries:
        assert entry["ours"] > 0 and entry["baseline"] > 0 and entry["details"]["runs"] == 2
