"""The benchmarks never rot: `bench/run.py --quick` runs end to end and writes well-formed results."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ("name", "unit", "ours", "baseline", "baseline_name", "ratio", "target", "meets_target")

pytestmark = pytest.mark.real_server


def test_quick_benchmark_run_writes_complete_entries(tmp_path: Path) -> None:
    output = tmp_path / "quick.json"
    committed = ROOT / "bench" / "results" / "latest.json"
    before = committed.read_bytes() if committed.exists() else None
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--output", str(output)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert proc.returncode == 0, f"bench/run.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = json.loads(output.read_text())

    machine = results["machine"]
    assert {"cpu", "cores", "python", "postgres_servers"} <= set(machine)
    assert set(machine["postgres_servers"]) == {"neon", "supabase", "railway"}
    assert results["run"]["quick"] is True and results["run"]["errors"] == []

    entries = results["entries"]
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), "entry names repeat"
    for prefix in ("memory.", "roundtrips.", "memory_link.", "failover.", "health.", "backup.", "restore."):
        assert any(n.startswith(prefix) for n in names), f"no {prefix}* entry"
    for entry in entries:
        missing = [k for k in REQUIRED if k not in entry]
        assert not missing, f"{entry.get('name')}: missing {missing}"
        assert entry["unit"] and entry["baseline_name"] and entry["target"], entry["name"]
        if entry.get("skipped"):
            assert entry["skipped"].startswith("skipped: "), entry["name"]
            assert entry["ours"] is None and entry["baseline"] is None and entry["ratio"] is None
            assert entry["meets_target"] is None
            continue
        assert isinstance(entry["ours"], (int, float)) and math.isfinite(entry["ours"]), entry["name"]
        assert isinstance(entry["baseline"], (int, float)) and entry["baseline"] > 0, entry["name"]
        assert math.isclose(entry["ratio"], entry["ours"] / entry["baseline"], rel_tol=1e-9), entry["name"]
        assert entry["meets_target"] in (True, False, None), entry["name"]

    # The committed results of the full run are left alone.
    assert (committed.read_bytes() if committed.exists() else None) == before
