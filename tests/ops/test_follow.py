"""`agent-factory sync --follow`: the fallback loop that keeps backups warm without a stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent_factory.cli import main
from agent_factory.errors import ConfigError
from agent_factory.ops.follow import follow
from agent_factory.state.store import StateStore

from ..conftest import wait_until
from ..replication.conftest import empty, setting, value_of

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def clean(db):
    empty(db)
    return db


def test_follow_rounds_copy_the_primary_into_the_named_backup_and_record_each(clean, tmp_path: Path):
    store = StateStore(tmp_path / "state")
    setting(clean, "neon", "first", "1")
    seen: list[list[str]] = []
    report = follow(clean, store, ["railway"], interval_s=0.05, rounds=2,
                    on_round=lambda results: seen.append([r.target for r in results]))
    assert seen == [["railway"], ["railway"]] and report.rounds == 2 and report.ok
    assert report.rows_copied == 1 and report.failed_syncs == 0
    assert value_of(clean, "railway", "first") == ("1", False)
    assert value_of(clean, "supabase", "first") is None  # not named: left alone
    [run] = [r for r in store.latest_syncs() if r.target == "railway"]
    assert run.source == "neon" and run.ok and run.lag_s is not None


def test_follow_goes_on_after_a_failed_round_and_stops_when_asked(clean, local, tmp_path: Path):
    store = StateStore(tmp_path / "state")
    stop = threading.Event()
    results = []

    def on_round(round_results):
        results.append(round_results)
        if len(results) == 1:
            local.start("railway")  # the first round found it down
        elif value_of(clean, "railway", "late") is not None:
            stop.set()

    local.kill("railway")
    try:
        setting(clean, "neon", "late", "x")
        report = follow(clean, store, ["railway"], interval_s=0.2, stop=stop, on_round=on_round)
    finally:
        local.start("railway")
    assert not results[0][0].ok and report.failed_syncs >= 1
    assert report.ok and value_of(clean, "railway", "late") == ("x", False)


def test_follow_refuses_bad_targets(clean, tmp_path: Path):
    store = StateStore(tmp_path / "state")
    with pytest.raises(ConfigError, match="neon is the primary"):
        follow(clean, store, ["neon"], rounds=1)
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        follow(clean, store, ["nope"], rounds=1)
    with pytest.raises(ConfigError, match="positive"):
        follow(clean, store, ["railway"], interval_s=0, rounds=1)


def test_cli_rejects_bad_follow_usage_in_one_line(cli_env, capsys):
    for argv, expected in ((["sync", "--follow", "--from", "neon"], "not --from"),
                           (["sync", "--follow", "--to", "neon"], "neon is the primary"),
                           (["sync", "--follow", "--all", "--to", "railway"], "not both"),
                           (["sync", "--from", "neon", "--to", "supabase", "--to", "railway"], "one --to"),
                           (["sync", "--all", "--rounds", "2"], "--rounds goes with --follow")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err


def test_cli_follow_json_rounds(cli_env, clean, capsys):
    setting(clean, "neon", "k", "v")
    assert main(["--json", "sync", "--follow", "--all", "--interval", "0.1", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    decoder, docs, pos = json.JSONDecoder(), [], 0
    while pos < len(out.rstrip()):
        doc, pos = decoder.raw_decode(out, pos)
        docs.append(doc)
        while pos < len(out) and out[pos].isspace():
            pos += 1
    assert [sorted(r["target"] for r in d["result"]["round"]) for d in docs[:2]] == [["railway", "supabase"]] * 2
    final = docs[-1]["result"]
    assert final["rounds"] == 2 and final["backups"] == ["supabase", "railway"] and final["rows_copied"] == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_follow_process_cleanly(env, clean, tmp_path: Path, passwords, signum):
    proc = subprocess.Popen([sys.executable, "-m", "agent_factory.cli", "sync", "--follow", "--to", "supabase",
                             "--interval", "0.2"], env={**os.environ, **env}, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        setting(clean, "neon", "live", "1")
        assert wait_until(lambda: value_of(clean, "supabase", "live") is not None, 60)
        setting(clean, "neon", "live", "2")  # a later write is followed too
        assert wait_until(lambda: value_of(clean, "supabase", "live") == ("2", False), 60)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip().startswith("followed supabase for ") and "rows copied" in out
    assert "Traceback" not in err
    assert not any(p in out + err for p in passwords)
