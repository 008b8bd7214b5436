"""A process SIGKILLed while it serves from a backup: one `agent-factory monitor --once` brings its writes home.

Three real agent processes write through the memory API. Neon becomes
unreachable for one of them only (its NEON_DB_URL goes through a loopback
relay the test closes), so that one fails over to supabase and writes there
while the others stay on neon; it is SIGKILLed before it can fail back.
Nothing else merges supabase into neon. After one monitor run, every write
any process was told was saved is on neon, read through a fresh manager, once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from agent_factory.core import DatabaseManager
from agent_factory.local.proxy import CountingProxy
from agent_factory.memory import PostgresMemoryStorage
from tests.conftest import make_config, wait_until, with_port

WRITER = Path(__file__).with_name("writer.py")
logger = logging.getLogger(__name__)


class Agent:
    """One writer process and the lines it printed so far."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.lines: list[str] = []
        self.stderr = cwd / f"{name}.stderr"
        with self.stderr.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, str(WRITER), name, "2"], env=env, cwd=cwd, text=True,
                                         stdout=subprocess.PIPE, stderr=err)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                if line.endswith("\n"):  # a line cut by SIGKILL was never complete: not counted
                    self.lines.append(line.rstrip("\n"))

    def acks(self) -> list[tuple[str, str]]:
        return [tuple(line.split()[1:3]) for line in list(self.lines) if line.startswith("ACK ")]  # type: ignore[misc]

    def active(self) -> list[str]:
        return [line.split()[1] for line in list(self.lines) if line.startswith("ACTIVE ")]

    def finish(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=90)
        self._reader.join(timeout=10)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    assert wait_until(predicate, timeout), f"timed out after {timeout} s waiting for {what}"


def process_env(env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.endswith(("_DB_URL", "_DIRECT_URL", "_POOLER")) and not k.startswith(("DATABASE_", "SYNC_"))}
    return {**base, **env}


@pytest.mark.timeout(300)
def test_writes_of_a_process_killed_while_failed_over_reach_the_primary_after_one_monitor_run(db, env, tmp_path):
    neon = urlsplit(env["NEON_DB_URL"])
    relay = CountingProxy(neon.hostname or "127.0.0.1", neon.port or 5432)
    common = process_env(env)
    agents: list[Agent] = []
    try:
        agents = [Agent("a", common, tmp_path), Agent("b", common, tmp_path),
                  Agent("cut", {**common, "NEON_DB_URL": with_port(env["NEON_DB_URL"], relay.port)}, tmp_path)]
        a, b, cut = agents
        wait_for(lambda: all(len(x.acks()) >= 20 for x in agents), 60, "every process to write on neon")

        relay.close()  # neon vanishes for `cut` only
        wait_for(lambda: cut.active()[-1:] == ["supabase"], 30, "the cut process to fail over")
        on_backup = len(cut.acks())
        wait_for(lambda: len(cut.acks()) >= on_backup + 40, 60, "the cut process to write on supabase")
        cut.finish(signal.SIGKILL)  # before any fail-back: neon never comes back for it
        assert cut.proc.returncode == -signal.SIGKILL
        for agent in (a, b):
            agent.finish(signal.SIGTERM)
            assert agent.proc.returncode == 0, agent.stderr.read_text()[-2000:]
            assert agent.active() == ["neon"], f"{agent.name} should never have left neon"
            assert agent.lines[-1] == "ERRORS 0 ", agent.lines[-1]
    finally:
        relay.close()
        for agent in agents:
            agent.finish(signal.SIGKILL)

    acked = {agent.name: agent.acks() for agent in agents}
    assert all(len(v) >= 20 for v in acked.values()), {k: len(v) for k, v in acked.items()}
    assert len(set(acked["cut"])) == len(acked["cut"])
    before = stranded(env, acked["cut"])
    assert before > 0, "the scenario must leave writes only on supabase before the monitor"

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
        assert_on_primary_once(env, acks, name, killed=name == "cut")


def stranded(env: dict[str, str], acks: list[tuple[str, str]]) -> int:
    """Return how many acknowledged messages a fresh manager cannot load from neon."""
    with DatabaseManager(make_config(env)) as fresh:
        assert fresh.health_check("neon", force=True)
        reader = PostgresMemoryStorage(fresh)
        missing = 0
        for session_id, texts in _by_session(acks).items():
            loaded = reader.load_session(session_id)
            contents = [m.content for m in loaded.messages] if loaded is not None else []
            missing += sum(1 for text in texts if text not in contents)
        assert fresh.active_provider == "neon"
    return missing


def assert_on_primary_once(env: dict[str, str], acks: list[tuple[str, str]], name: str, *, killed: bool) -> None:
    """Assert each acknowledged message is on neon once, in order.

    A killed process may also have written messages it never printed (killed
    between the commit and the line): those may be there too, nothing else.
    """
    with DatabaseManager(make_config(env)) as fresh:
        reader = PostgresMemoryStorage(fresh)
        for session_id, texts in _by_session(acks).items():
            loaded = reader.load_session(session_id)
            assert loaded is not None, f"{name}: session {session_id} is not on neon"
            contents = [m.content for m in loaded.messages]
            assert len(contents) == len(set(contents)), f"{name}: duplicates in session {session_id}"
            if killed:
                assert all(text.startswith(f"{name}-") for text in contents), contents
                contents = [text for text in contents if text in set(texts)]
            assert contents == texts, f"{name}: session {session_id} differs from what was acknowledged"
        assert fresh.active_provider == "neon"


def _by_session(acks: list[tuple[str, str]]) -> dict[str, list[str]]:
    sessions: dict[str, list[str]] = {}
    for session_id, text in acks:
        sessions.setdefault(session_id, []).append(text)
    return sessions
