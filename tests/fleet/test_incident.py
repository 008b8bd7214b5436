"""The fleet incident of issue 14, end to end: a silent partition, a process killed mid-incident, one monitor run.

Four real agent processes with three writer threads each
(DATABASE_DEAD_PEER_TIMEOUT=3, DATABASE_CONNECT_TIMEOUT=2). Two of them reach
neon through a loopback relay whose packets the kernel drops for 12 s (real
iptables DROP rules, both directions): neither is refused, their requests just
get no answer. They must fail over to supabase with no call waiting more than
6 s; one of them is SIGKILLed while it serves from supabase, the other stopped
there before the partition heals (so neither fails back). The other two keep
neon throughout. After the partition heals and one `agent-factory monitor
--once`, every message any process was told was saved is on neon through a
fresh manager, once, in order.
"""

from __future__ import annotations

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
FLEET = {"DATABASE_DEAD_PEER_TIMEOUT": "3", "DATABASE_CONNECT_TIMEOUT": "2", "DATABASE_HEALTH_TTL": "0.5"}
BOUND_S = 6.0  # no call may wait longer on a provider whose packets vanish
PARTITION_S = 12.0


@pytest.mark.timeout(300)
def test_partition_and_a_kill_mid_incident_lose_no_acknowledged_write(db, env, tmp_path, firewall):
    neon = urlsplit(env["NEON_DB_URL"])
    relay = CountingProxy(neon.hostname or "127.0.0.1", neon.port or 5432)
    common = {**process_env(env), **FLEET}
    relayed = {**common, "NEON_DB_URL": with_port(env["NEON_DB_URL"], relay.port)}
    agents: list[Agent] = []
    try:
        agents = [Agent("a", common, tmp_path), Agent("b", common, tmp_path),
                  Agent("killed", relayed, tmp_path), Agent("partitioned", relayed, tmp_path)]
        a, b, killed, partitioned = agents
        wait_for(lambda: all(len(x.acks()) >= 20 for x in agents), 90, "every process to write on neon")

        firewall.drop(relay.port)  # silence, not refusal: the kernel drops every packet to and from the relay
        cut_at = time.monotonic()
        wait_for(lambda: all(x.active()[-1:] == ["supabase"] for x in (killed, partitioned)), BOUND_S + 4,
                 "the partitioned processes to fail over")
        on_backup = len(killed.acks())
        wait_for(lambda: len(killed.acks()) >= on_backup + 30, 30, "the killed process to write on supabase")
        killed.finish(signal.SIGKILL)  # mid-incident: it never fails back
        assert killed.proc.returncode == -signal.SIGKILL
        time.sleep(max(0.0, PARTITION_S - (time.monotonic() - cut_at)))
        # Stopped before the partition heals, so it never fails back: only the monitor brings supabase's writes home.
        for agent in (partitioned, a, b):
            agent.finish(signal.SIGTERM)
            assert agent.proc.returncode == 0, agent.stderr.read_text()[-2000:]
            assert agent.lines[-1] == "ERRORS 0 ", agent.lines[-1]
        firewall.heal()
        assert a.active() == b.active() == ["neon"], "a and b should never have left neon"
        assert partitioned.active() == ["neon", "supabase"]
    finally:
        firewall.heal()
        relay.close()
        for agent in agents:
            agent.finish(signal.SIGKILL)

    for agent in agents:
        logger.info("fleet incident: %s acknowledged %d writes, longest call %.2f s", agent.name, len(agent.acks()),
                    max(agent.waits()))  # the figures docs/FAILOVER.md quotes (pytest -o log_cli=true)
        assert max(agent.waits()) <= BOUND_S, (agent.name, sorted(agent.waits())[-5:])
    acked = {agent.name: agent.acks() for agent in agents}
    assert stranded(env, acked["killed"]) > 0 and stranded(env, acked["partitioned"]) > 0, \
        "the cut-off processes' writes must be only on supabase before the monitor"

    time.sleep(1.5)  # the monitor takes writes older than its 1 s margin
    monitor = subprocess.run(
        [sys.executable, "-m", "agent_factory.cli", "monitor", "--once", "--json"],
        env={**process_env(env), "SYNC_MARGIN_SECONDS": "1", "MONITOR_BACKUP_MAX_AGE_HOURS": "0"}, cwd=tmp_path,
        capture_output=True, text=True, timeout=120)
    assert monitor.returncode == 0, monitor.stderr

    assert stranded(env, acked["killed"]) == 0
    for name, acks in acked.items():
        assert_on_primary_once(env, acks, name, cut_off=name in ("killed", "partitioned"))
