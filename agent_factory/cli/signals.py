"""Stop long operations cleanly on SIGTERM and SIGINT.

`timeout`, cron wrappers and systemd stop a process with SIGTERM, whose default
action kills Python at once: no `finally` runs, so a backup would leave its
pg_dump running, its passfile and its partial file. Inside `interruptible()`
both signals raise `Interrupted` (a `KeyboardInterrupt`) in the main thread
instead: the running tool is killed, temporary files are removed on the way
out, and `main` prints one line and exits 1. A second signal during that
cleanup is ignored, so the cleanup finishes.
"""

from __future__ import annotations

import argparse
import functools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from .output import Outcome

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """The process received SIGTERM or SIGINT during an interruptible operation."""

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)


@contextmanager
def interruptible() -> Iterator[None]:
    """Raise `Interrupted` on the first SIGTERM or SIGINT in the body; ignore further ones until it ends.

    Outside the main thread (where Python cannot handle signals) the body runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        if received:
            return  # the first signal's cleanup is running: let it finish
        received.append(signum)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def stop_requested() -> Iterator[threading.Event]:
    """Yield an event the first SIGTERM or SIGINT sets (a loop ends after its current round); raise on the second.

    Outside the main thread the event is only set by the caller.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise Interrupted(signum)  # asked twice: stop now
        stop.set()

    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def stoppable(handler: Callable[[argparse.Namespace], Outcome]) -> Callable[[argparse.Namespace], Outcome]:
    """Wrap a command handler in `interruptible()`."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> Outcome:
        with interruptible():
            return handler(args)

    return run
