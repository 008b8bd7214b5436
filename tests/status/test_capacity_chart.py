"""The status page's storage section: each provider's size over time against its quota."""

from __future__ import annotations

import json
from datetime import timedelta

from agent_factory.state import StateStore, maintenance
from agent_factory.state.maintenance import SizeSample

from .pagetext import chart_data, charts

MB = 1024 * 1024


def test_no_size_recorded_yet(seeded, page):
    at = page(seeded())
    assert not at.exception
    assert "No size recorded yet: the monitor records each provider's size every run." in [c.value for c in at.caption]
    assert len(charts(at)) == 2


def test_size_over_time_against_the_quota(seeded, page, now):
    state = seeded()
    with StateStore(state).connect() as conn:
        maintenance.add_size_samples(conn, [
            SizeSample(name, now - timedelta(hours=h), (100 - h) * MB * (2 if name == "neon" else 1),
                       quota_bytes=500 * MB if name == "neon" else None)
            for h in range(48, -1, -4) for name in ("neon", "supabase")])
    at = page(state)
    assert not at.exception
    size = charts(at)[2]
    assert size.proto.alt == ("Database size per provider over time against its quota (dashed): "
                              "neon 200.0 MB of a 500 MB quota (40 %); supabase 100.0 MB.")
    frames = chart_data(size)
    assert any(set(f["provider"]) == {"neon", "supabase"} and len(f) == 2 * 13 for f in frames)
    assert [layer["mark"]["type"] for layer in json.loads(size.proto.spec)["layer"]] == ["line", "line"]
