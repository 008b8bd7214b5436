"""The README's main job: stream the primary into the backups, save a session, see it reach each backup within
seconds, kill the primary, fail over and back, lose nothing.

Run by `make demo` after `agent-factory local up`; uses the local providers
under `var/local` and the `.env` that `local up` wrote. If the primary is
already down (an operator's `agent-factory local kill neon`), the demo shows
the failover and leaves the primary down.
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
from .ops.stream import setup_streams
from .replication import sync_pair
from .state import StateStore

CATCH_UP_TIMEOUT_S = 30.0


def run(local_dir: str = "var/local") -> None:
    """Run the demo, printing each step; raises AgentFactoryError if a step fails."""
    local = LocalProviders(local_dir)
    # Short health TTL so fail-back shows within seconds (production default: 60 s).
    config = dataclasses.replace(load_config(), health_ttl=1.0, failback_checks=3)
    primary = config.primary
    backup = next(name for name in config.failover_order if name != primary)
    primary_was_up = local.pid(primary) is not None
    with DatabaseManager(config) as db:
        storage = PostgresMemoryStorage(db)
        print(f"[1] providers: {db.health_check_all()}  primary: {primary}")
        streaming = _stream(db) if primary_was_up else []

        session = Session(user_id="demo-user", metadata={"topic": "failover demo"})
        session.add_message("user", "Remember that the pump P-101 trips at 80 C.")
        session.add_message("assistant", "Noted: P-101 trips at 80 C.")
        storage.save_session(session)
        storage.save_session(session)  # idempotent: saving twice duplicates nothing
        saved_at = time.monotonic()
        print(f"[2] saved session {session.session_id} on {db.active_provider}: "
              f"{len(storage.load_session(session.session_id).messages)} messages")  # type: ignore[union-attr]

        if primary_was_up:
            for name in streaming:
                seconds = _until_loadable(db, name, session.session_id, saved_at)
                print(f"[3] {name} has it {seconds:.2f} s after the save (streamed)" if seconds is not None
                      else f"[3] {name} does not have it after {CATCH_UP_TIMEOUT_S:.0f} s: see `agent-factory "
                           "stream status`")
            if backup not in streaming:
                warm = sync_pair(db, primary, backup)  # what `agent-factory monitor` does every run
                print(f"[3] warmed {backup} by sync (no stream): {warm.summary()}")
            local.kill(primary)
            print(f"[4] SIGKILLed the primary ({primary})")
        else:
            print(f"[3] the primary ({primary}) is already down: the demo leaves it down")
        killed_at = time.perf_counter()
        storage.append_messages(session.session_id, [{"role": "user", "content": "Still there?"}])
        elapsed_ms = (time.perf_counter() - killed_at) * 1000
        print(f"[5] appended on {db.active_provider} {elapsed_ms:.0f} ms later; "
              f"the session holds {len(storage.load_session(session.session_id).messages)} messages")  # type: ignore[union-attr]
        time.sleep(0.2)  # the failover event is recorded off the request thread
        events = StateStore(config.state_dir).failovers()
        if events:
            last = events[-1]
            print(f"[6] recorded: {last.at:%H:%M:%S} {last.from_provider} -> {last.to_provider} ({last.reason})")
        if not primary_was_up:
            return

        local.start(primary)
        print(f"[7] restarted {primary}; failing back after {config.failback_checks} passing checks "
              "and a merge of what the backup took ...")
        deadline = time.monotonic() + 30
        while db.active_provider != primary and time.monotonic() < deadline:
            time.sleep(0.2)
        print(f"[8] serving from {db.active_provider}")

    with DatabaseManager(config) as fresh:  # a new process would see this
        loaded = PostgresMemoryStorage(fresh).load_session(session.session_id)
        count = len(loaded.messages) if loaded else 0
        print(f"[9] a fresh manager on {fresh.active_provider} loads the session with {count} messages")
        PostgresMemoryStorage(fresh).delete_session(session.session_id)


def _stream(db: DatabaseManager) -> list[str]:
    """Set up the primary's streams (idempotent); return the backups that follow it, printing each state."""
    try:
        states = setup_streams(db)
    except AgentFactoryError as exc:
        print(f"[1] streams not set up ({exc}); the backups are warmed by sync")
        return []
    for state in states:
        print(f"[1] stream {state.publisher} -> {state.subscriber}: {state.status} ({state.detail})")
    return [s.subscriber for s in states if s.status in ("streaming", "catching_up")]


def _until_loadable(db: DatabaseManager, backup: str, session_id: str, since: float) -> float | None:
    """Poll `backup` until the session's messages are there; return the seconds since `since`, None on timeout."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        with db.provider_connection(backup) as conn:
            row = conn.execute("SELECT count(*) FROM session_memories WHERE session_id = %s "
                               "AND message_index IS NOT NULL AND deleted_at IS NULL", (session_id,)).fetchone()
            conn.rollback()
        if row and row[0] >= 2:
            return time.monotonic() - since
        time.sleep(0.02)
    return None


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
