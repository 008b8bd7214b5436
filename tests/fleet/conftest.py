"""Fixtures of the fleet tests: a real PgBouncer in front of neon, and real iptables DROP rules.

Both need parts outside Python (Debian's `pgbouncer`, `iptables` and root for
the rules). Without them a test skips with the reason, except under CI
(`CI=true`, or `AGENT_FACTORY_REQUIRE_FLEET=1` as `.ci/run` sets), where a
missing part fails the test instead.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_factory.errors import LocalProviderError
from agent_factory.local import LocalPooler, LocalProviders
from agent_factory.local.pooler import find_pgbouncer


def require(condition: bool, reason: str) -> None:
    """Skip the test for `reason` unless `condition`; under CI fail instead."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("AGENT_FACTORY_REQUIRE_FLEET") == "1":
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pooler(local: LocalProviders) -> Iterator[LocalPooler]:
    """A real PgBouncer (transaction mode) in front of neon, as `local up --pooler` starts it."""
    try:
        find_pgbouncer()
    except LocalProviderError as exc:
        require(False, str(exc))
    home = Path(tempfile.mkdtemp(prefix="agent-factory-pooler-"))
    pooler = LocalPooler(local, home)
    pooler.create("neon")
    pooler.start()
    yield pooler
    pooler.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def pooled_env(env: dict[str, str], pooler: LocalPooler) -> Iterator[dict[str, str]]:
    """`env` with neon behind the pooler (NEON_DB_URL -> PgBouncer, NEON_DIRECT_URL -> the server)."""
    pooler.start()  # a test may have killed it
    yield {**env, **pooler.env()}
    pooler.start()


class Firewall:
    """iptables DROP rules on loopback ports, made by one test and all removed at its end."""

    def __init__(self) -> None:
        self._rules: list[list[str]] = []

    def drop(self, port: int) -> None:
        """Drop every packet to and from 127.0.0.1:`port` (both directions: the peer goes silent)."""
        for rule in (["INPUT", "-p", "tcp", "--dport", str(port)], ["INPUT", "-p", "tcp", "--sport", str(port)]):
            spec = [*rule, "-i", "lo", "-j", "DROP", "-m", "comment", "--comment", f"agent-factory-test-{os.getpid()}"]
            subprocess.run(["iptables", "-w", "-I", *spec], check=True, capture_output=True)
            self._rules.append(spec)

    def heal(self) -> None:
        """Remove every rule this firewall added."""
        while self._rules:
            spec = self._rules.pop()
            subprocess.run(["iptables", "-w", "-D", *spec], check=False, capture_output=True)

    def leftovers(self) -> list[str]:
        """Return the rules of this process still in the kernel (should be none after `heal`)."""
        out = subprocess.run(["iptables", "-w", "-S", "INPUT"], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if f"agent-factory-test-{os.getpid()}" in line]


def sweep_stale_rules() -> None:
    """Remove the DROP rules of test processes that died before their teardown (a SIGKILLed pytest)."""
    out = subprocess.run(["iptables", "-w", "-S", "INPUT"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        match = re.search(r"agent-factory-test-(\d+)", line)
        if match and line.startswith("-A ") and not os.path.exists(f"/proc/{match.group(1)}"):
            subprocess.run(["iptables", "-w", "-D", *shlex.split(line)[1:]], check=False, capture_output=True)


@pytest.fixture
def firewall() -> Iterator[Firewall]:
    """Real iptables DROP rules, removed after the test even when it fails (and checked gone)."""
    require(os.geteuid() == 0, "dropping packets needs root (iptables)")
    require(shutil.which("iptables") is not None, "iptables is not installed (apt-get install iptables)")
    probe = subprocess.run(["iptables", "-w", "-S", "INPUT"], capture_output=True, text=True)
    require(probe.returncode == 0, f"iptables does not work here: {probe.stderr.strip()[:200]}")
    sweep_stale_rules()
    wall = Firewall()
    try:
        yield wall
    finally:
        wall.heal()
        assert wall.leftovers() == [], "a DROP rule was left behind"
