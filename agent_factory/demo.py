"""The README's main job: save and load a session, kill the primary, watch failover and fail-back.

Run by `make demo` after `agent-factory local up`; uses the local providers
under `var/local` and the `.env` that `local up` wrote.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time

from .config import load_config
from .core import DatabaseManager
from .errors import AgentFactoryError
from .local import LocalProviders
from .memory import PostgresMemoryStorage, Session
from .state import StateStore


def run(local_dir: str = "var/local") -> None:
    """Run the demo, printing each step; raises AgentFactoryError if a step fails."""
    local = LocalProviders(local_dir)
    # Short health TTL so fail-back shows within seconds (production default: 60 s).
    config = dataclasses.replace(load_config(), health_ttl=1.0, failback_checks=3)
    with DatabaseManager(config) as db:
        storage = PostgresMemoryStorage(db)
        print(f"[1] providers: {db.health_check_all()}  primary: {db.primary_provider}")

        session = Session(user_id="demo-user", metadata={"topic": "failover demo"})
        session.add_message("user", "Remember that the pump P-101 trips at 80 C.")
        session.add_message("assistant", "Noted: P-101 trips at 80 C.")
        storage.save_session(session)
        storage.save_session(session)  # idempotent: saving twice duplicates nothing
        loaded = storage.load_session(session.session_id)
        assert loaded is not None
        print(f"[2] saved and loaded session {session.session_id} on {db.active_provider}: "
              f"{len(loaded.messages)} messages")

        local.kill(db.primary_provider)
        killed_at = time.perf_counter()
        print(f"[3] SIGKILLed the primary ({db.primary_provider})")
        # The backups hold no copy of neon's rows (no replication between
        # providers), so write the whole session: save_session is an upsert.
        session.add_message("user", "Still there?")
        storage.save_session(session)
        elapsed_ms = (time.perf_counter() - killed_at) * 1000
        print(f"[4] next write succeeded on {db.active_provider} {elapsed_ms:.0f} ms after the kill")
        events = StateStore(config.state_dir).failovers()
        if events:
            last = events[-1]
            print(f"[5] recorded: {last.at:%H:%M:%S} {last.from_provider} -> {last.to_provider} ({last.reason})")

        local.start(config.primary)
        print(f"[6] restarted {config.primary}; failing back after {config.failback_checks} passing checks...")
        deadline = time.monotonic() + 30
        while db.active_provider != config.primary and time.monotonic() < deadline:
            time.sleep(0.2)
        print(f"[7] serving from {db.active_provider}")
        storage.delete_session(session.session_id)


def main() -> int:
    """Entry point of `python -m agent_factory.demo`."""
    logging.basicConfig(level=logging.WARNING, format="    log: %(message)s")
    try:
        run()
    except AgentFactoryError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
