"""A process SIGKILLed while it serves from a backup: one `agent-factory monitor --once` brings its writes home.

Four real agent processes with three writer threads each write through the
memory API. Neon becomes unreachable for two of them only (their NEON_DB_URL
goes through a loopback relay the test closes), so those fail over to
supabase and write there while the others stay on neon. One is SIGKILLed
before it can fail back; the other is stopped (SIGTERM) still failed over.
Nothing else merges supabase into neon. After one monitor run, every write
any process was told was saved is on neon, read through a fresh manager, once.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

from agent_factory.local.proxy import CountingProxy
from tests.conftest import with_port

from .agents import Agent, assert_on_primary_once, process_env, stranded, wait_for

logger = logging.getLogger(__name__)


@pytest.mark.timeout(300)
def test_writes_of_a_process_killed_while_failed_over_reach_the_primary_after_one_monitor_run(db, env, tmp_path):
    neon = urlsplit(env["NEON_DB_URL"])
    relay = CountingProxy(neon.hostname or "127.0.0.1", neon.port or 5432)
    common = process_env(env)
    relayed = {**common, "NEON_DB_URL": with_port(env["NEON_DB_URL"], relay.port)}
    agents: list[Agent] = []
    try:
        agents = [Agent("a", common, tmp_path), Agent("b", common, tmp_path),
                  Agent("cut", relayed, tmp_path), Agent("stopped", relayed, tmp_path)]
        a, b, cut, stopped = agents
        wait_for(lambda: all(len(x.acks()) >= 20 for x in agents), 90, "every process to write on neon")

        relay.close()  # neon vanishes for `cut` and `stopped` only
        wait_for(lambda: all(x.active()[-1:] == ["supabase"] for x in (cut, stopped)), 30, "the cut ones to fail over")
        on_backup = len(cut.acks())
        wait_for(lambda: len(cut.acks()) >= on_backup + 40, 60, "the cut process to write on supabase")
        cut.finish(signal.SIGKILL)  # before any fail-back: neon never comes back for it
        assert cut.proc.returncode == -signal.SIGKILL
        for agent in (stopped, a, b):
            agent.finish(signal.SIGTERM)
            assert agent.proc.returncode == 0, agent.stderr.read_text()[-2000:]
            assert agent.lines[-1] == "ERRORS 0 ", agent.lines[-1]
        assert a.active() == b.active() == ["neon"], "a and b should never have left neon"
        assert stopped.active() == ["neon", "supabase"], "stopped should have ended on supabase"
        ended = time.monotonic()
    finally:
        relay.close()
        for agent in agents:
            agent.finish(signal.SIGKILL)

    acked = {agent.name: agent.acks() for agent in agents}
    assert all(len(v) >= 20 for v in acked.values()), {k: len(v) for k, v in acked.items()}
    assert len(set(acked["cut"])) == len(acked["cut"])
    before = stranded(env, acked["cut"])
    assert before > 0 and stranded(env, acked["stopped"]) > 0, "writes must be only on supabase before the monitor"

    time.sleep(max(0.0, 1.5 - (time.monotonic() - ended)))  # the monitor takes writes older than its 1 s margin
    started = time.monotonic()
    monitor = subprocess.run(
        [sys.executable, "-m", "agent_factory.cli", "monitor", "--once", "--json"],
        env={**common, "SYNC_MARGIN_SECONDS": "1", "MONITOR_BACKUP_MAX_AGE_HOURS": "0"}, cwd=tmp_path,
        capture_output=True, text=True, timeout=120)
    assert monitor.returncode == 0, monitor.stderr
    logger.info("fleet: %d messages acknowledged, %d by the killed process, %d of those not on neon before the "
                "monitor run, which took %.2f s", sum(map(len, acked.values())), len(acked["cut"]), before,
                time.monotonic() - started)  # the figures docs/FAILOVER.md quotes (pytest -o log_cli=true)
    result = json.loads(monitor.stdout)["result"]
    [supabase] = [d for d in result["divergence"] if d["backup"] == "supabase"]
    assert supabase["rows"] > 0 and supabase["merged"] is True

    assert stranded(env, acked["cut"]) == 0
    for name, acks in acked.items():
        assert_on_primary_once(env, acks, name, cut_off=name in ("cut", "stopped"))

