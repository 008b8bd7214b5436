"""memory_stream, memory_stream_info and playbooks/stream_setup.yml against real streams (real ansible-playbook)."""

from __future__ import annotations

import re
import subprocess

import pytest

from agent_factory.core import DatabaseManager
from agent_factory.ops.stream import drop_streams, stream_states

from ..conftest import wait_until
from ..replication.conftest import empty, setting, value_of
from .conftest import Project

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def no_streams(db: DatabaseManager):
    empty(db)
    drop_streams(db)
    yield db
    drop_streams(db)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def test_stream_module_check_mode_then_present_then_absent(module, project: Project, no_streams, passwords):
    plan = module("memory_stream", check_mode=True)
    assert plan.rc == 0 and plan.result["changed"] is True
    assert plan.result["actions"] == ["setup supabase", "setup railway"]
    assert {s.status for s in stream_states(no_streams)} == {"absent"}
    done = module("memory_stream")
    assert done.rc == 0 and done.result["changed"] is True and done.result["stopped"] == []
    again = module("memory_stream")
    assert again.rc == 0 and again.result["changed"] is False
    info = module("memory_stream_info")
    assert info.rc == 0 and {s["subscriber"] for s in info.result["streams"]} == {"supabase", "railway"}
    gone = module("memory_stream", state="absent", providers=["railway"])
    assert gone.result["actions"] == ["drop railway"]
    assert {s.subscriber: s.status for s in stream_states(no_streams)}["railway"] == "absent"
    for run in (plan, done, again, info, gone):
        assert not any(p in run.stdout + run.stderr for p in passwords)


def test_stream_setup_playbook_makes_every_backup_follow(playbook, project: Project, no_streams, passwords):
    proc = playbook("stream_setup", "-vvv")
    out = " ".join(_ok(proc).split())
    assert "Step 1: Check that every provider has the same schema" in out
    assert "Step 3: Wait until every stream has caught up" in out
    assert re.search(r"supabase streaming \(\d+\.\d s behind neon\)", out), out[-3000:]
    assert not any(p in proc.stdout + proc.stderr for p in passwords)
    setting(no_streams, "neon", "streamed", "yes")
    assert wait_until(lambda: all(value_of(no_streams, n, "streamed") == ("yes", False)
                                  for n in ("supabase", "railway")), 30)
    out = _ok(playbook("stream_setup", stream_state="absent"))
    assert {s.status for s in stream_states(no_streams)} == {"absent"}
    assert "streams absent: drop supabase, drop railway" in out
