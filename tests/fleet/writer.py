"""An agent process for the fleet tests: writer threads on the memory API, one line per acknowledged write.

Run as `python writer.py NAME THREADS` with the providers in the environment
(it reads no .env: run it from an empty directory). Prints, flushed:

- `ACK <session_id> <text>` after `save_session`/`append_messages` returned
  (only then: a line is a write the library acknowledged);
- `ACTIVE <provider>` whenever the process's manager serves from another provider;
- `REFUSED <n>` and `ERRORS <n> <first error>` when it stops on SIGTERM.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time

from agent_factory.core import DatabaseManager
from agent_factory.errors import SessionNotOnProviderError
from agent_factory.memory import Message, PostgresMemoryStorage, Session

_print_lock = threading.Lock()


def say(line: str) -> None:
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def write(storage: PostgresMemoryStorage, name: str, seed: int, stop: threading.Event,
          counts: dict[str, int], errors: list[str]) -> None:
    rng = random.Random(seed)
    own: list[str] = []
    n = 0
    while not stop.is_set():
        n += 1
        text = f"{name}-{seed}-{n}"
        try:
            if not own or rng.random() < 0.3:
                session = Session(user_id=f"{name}-{seed}", messages=[Message("user", text)])
                storage.save_session(session)
                own.append(session.session_id)
                say(f"ACK {session.session_id} {text}")
            else:
                session_id = rng.choice(own)
                storage.append_messages(session_id, [{"role": "assistant", "content": text}])
                say(f"ACK {session_id} {text}")
        except SessionNotOnProviderError:  # the session is on the provider it failed over from: not acknowledged
            counts["refused"] += 1
        except Exception as exc:  # reported on exit
            errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)
        time.sleep(0.005)


def main() -> int:
    name, threads = sys.argv[1], int(sys.argv[2])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    db = DatabaseManager()
    storage = PostgresMemoryStorage(db)
    counts = {"refused": 0}
    errors: list[str] = []
    workers = [threading.Thread(target=write, args=(storage, name, i, stop, counts, errors)) for i in range(threads)]
    for worker in workers:
        worker.start()
    active = None
    while not stop.is_set():
        if db.active_provider != active:
            active = db.active_provider
            say(f"ACTIVE {active}")
        stop.wait(0.02)
    for worker in workers:
        worker.join(timeout=60)
    db.close()
    say(f"REFUSED {counts['refused']}")
    say(f"ERRORS {len(errors)} {errors[0] if errors else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
