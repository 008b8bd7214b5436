"""Bring the streams to a wanted state (present, paused, absent) with a dry run: what Ansible's memory_stream runs.

`ops.stream` sets up, pauses, resumes and drops streams; this module decides
which of those a wanted state needs from the streams' current states, so
check mode and a real run share the plan (`changed` is true exactly when the
real run would act).

- present: every named backup follows the primary. Absent streams are set
  up, paused ones resumed; a backup whose provider cannot subscribe
  (`unsupported`) is left to `sync --follow` and reported, not acted on.
- paused: the stream exists but applies nothing (`stream pause`); an absent
  one is set up first, then paused.
- absent: the streams are dropped (`stream drop`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..core import DatabaseManager
from ..errors import ConfigError
from .stream import StreamState, drop_streams, pause_streams, resume_streams, setup_streams, stream_states

logger = logging.getLogger(__name__)

WantedState = Literal["present", "paused", "absent"]
WANTED_STATES: tuple[WantedState, ...] = ("present", "paused", "absent")


@dataclass
class StreamChange:
    """What `converge_streams` did (or, with check, would do): the actions and the streams' states after."""

    state: WantedState
    check: bool
    actions: list[str] = field(default_factory=list)  # "setup supabase", "resume railway", ...
    streams: list[StreamState] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when an action ran (or, with check, would run)."""
        return bool(self.actions)

    @property
    def unsupported(self) -> list[str]:
        """The backups that cannot subscribe (kept warm by `sync --follow` instead)."""
        return [s.subscriber for s in self.streams if s.status == "unsupported"]

    @property
    def stopped(self) -> list[str]:
        """The backups whose stream is set up and enabled but not applying (an incident)."""
        return [s.subscriber for s in self.streams if s.status == "stopped"]

    @property
    def ok(self) -> bool:
        """True when no stream is stopped (with state=present, after the run)."""
        return not self.stopped

    def summary(self) -> str:
        """Return one sentence for people."""
        verb = "would " if self.check else ""
        text = (f"streams {self.state}: " + (f"{verb}" + ", ".join(self.actions) if self.actions else "nothing to do")
                + "; " + ", ".join(f"{s.subscriber} {s.status.replace('_', ' ')}" for s in self.streams))
        if self.unsupported:
            text += f"; {', '.join(self.unsupported)} cannot subscribe: keep it warm with `agent-factory sync --follow`"
        return text + "."


def plan_streams(current: Sequence[StreamState], state: WantedState) -> list[tuple[str, str]]:
    """Return the (action, backup) pairs that bring `current` to `state`, in order.

    Raises `ConfigError` on a bad state.
    """
    if state not in WANTED_STATES:
        raise ConfigError(f"unknown stream state {state!r}; use one of {', '.join(WANTED_STATES)}")
    plan: list[tuple[str, str]] = []
    for s in current:
        if s.status == "unsupported":
            continue
        if state == "present":
            if s.status == "absent":
                plan.append(("setup", s.subscriber))
            elif s.status == "paused":
                plan.append(("resume", s.subscriber))
        elif state == "paused":
            if s.status == "absent":
                plan.append(("setup", s.subscriber))
            if s.status != "paused":
                plan.append(("pause", s.subscriber))
        elif s.status != "absent":
            plan.append(("drop", s.subscriber))
    return plan


_ACTIONS = {"setup": setup_streams, "resume": resume_streams, "pause": pause_streams, "drop": drop_streams}


def converge_streams(db: DatabaseManager, state: WantedState, *, subscribers: Sequence[str] | None = None,
                     check: bool = False) -> StreamChange:
    """Bring the named backups' streams (default: every backup) to `state`; return what was (or would be) done.

    Raises `ConfigError` for an unknown state or backup, and the `StreamError`
    of `ops.stream` when an action fails (privileges, a pooler URL, an
    unreachable provider); the actions before it stay done.
    """
    current = stream_states(db, subscribers=subscribers)
    plan = plan_streams(current, state)
    change = StreamChange(state, check, [f"{action} {name}" for action, name in plan], list(current))
    if check or not plan:
        return change
    for action in ("setup", "resume", "pause", "drop"):
        names = [name for a, name in plan if a == action]
        if names:
            logger.info("stream %s for %s", action, ", ".join(names))
            _ACTIONS[action](db, subscribers=names)
    change.streams = stream_states(db, subscribers=subscribers)
    return change
