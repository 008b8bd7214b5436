"""Agent processes of the fleet tests (`writer.py`) and the checks made on what they were told was saved."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from agent_factory.core import DatabaseManager
from agent_factory.memory import PostgresMemoryStorage
from tests.conftest import make_config, wait_until

WRITER = Path(__file__).with_name("writer.py")


class Agent:
    """One writer process and the lines it printed so far."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.lines: list[str] = []
        self.stderr = cwd / f"{name}.stderr"
        with self.stderr.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, str(WRITER), name, "3"], env=env, cwd=cwd, text=True,
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

    def waits(self) -> list[float]:
        """How long each finished call took (acknowledged or raised), in seconds."""
        return [float(line.split()[-1]) for line in list(self.lines) if line.startswith(("ACK ", "WAIT "))]

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


def assert_on_primary_once(env: dict[str, str], acks: list[tuple[str, str]], name: str, *, cut_off: bool) -> None:
    """Assert each acknowledged message is on neon once, in order.

    A process cut off from neon may also have written messages it was never
    told were saved: one killed between the commit and its line, or an append
    whose connection broke as neon committed it and whose replay on supabase
    was refused (the session is not there). Those may be there too, nothing else.
    """
    with DatabaseManager(make_config(env)) as fresh:
        reader = PostgresMemoryStorage(fresh)
        for session_id, texts in _by_session(acks).items():
            loaded = reader.load_session(session_id)
            assert loaded is not None, f"{name}: session {session_id} is not on neon"
            contents = [m.content for m in loaded.messages]
            assert len(contents) == len(set(contents)), f"{name}: duplicates in session {session_id}"
            if cut_off:
                assert all(text.startswith(f"{name}-") for text in contents), contents
                contents = [text for text in contents if text in set(texts)]
            assert contents == texts, f"{name}: session {session_id} differs from what was acknowledged"
        assert fresh.active_provider == "neon"


def _by_session(acks: list[tuple[str, str]]) -> dict[str, list[str]]:
    sessions: dict[str, list[str]] = {}
    for session_id, text in acks:
        sessions.setdefault(session_id, []).append(text)
    return sessions
