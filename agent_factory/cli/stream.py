"""`agent-factory stream setup|status|pause|resume|drop`: the primary's logical-replication streams.

See docs/CONTINUITY.md, "Streams".
"""

from __future__ import annotations

import argparse

from ..core import DatabaseManager
from ..ops import stream
from .output import EXIT_FAILED, EXIT_OK, Outcome

_ACTIONS = {
    "setup": (stream.setup_streams, "make every backup (or each --provider) follow the primary; idempotent"),
    "status": (stream.stream_states, "show each stream's state and lag"),
    "pause": (stream.pause_streams, "disable the subscriptions (the primary's slot keeps the changes)"),
    "resume": (stream.resume_streams, "enable the subscriptions again"),
    "drop": (stream.drop_streams, "drop the subscriptions, then their slots and publications on the primary"),
}
_FAILED = {"stopped", "unsupported"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "stream", help="stream the primary into each backup with logical replication (setup, status, ...)",
        description="Manage the logical-replication streams from the primary into the backups, one line per "
                    "stream. Exit 0 ok; 1 when a stream is stopped or unsupported (status) or an operation "
                    "failed; 2 on a usage or configuration error.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    for action, (_, help_text) in _ACTIONS.items():
        one = actions.add_parser(action, help=help_text, description=help_text)
        one.add_argument("--provider", action="append", metavar="NAME",
                         help="only this backup (repeatable; default: every backup)")
        one.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> Outcome:
    operation = _ACTIONS[args.action][0]
    with DatabaseManager() as db:
        states = operation(db, subscribers=args.provider)
    failed = args.action == "status" and any(s.status in _FAILED for s in states)
    failed = failed or (args.action in ("setup", "resume") and any(s.status == "stopped" for s in states))
    text = "\n".join(f"{s.publisher} -> {s.subscriber}  {s.status:<11} {s.detail}" for s in states) or "no backups"
    return Outcome(EXIT_FAILED if failed else EXIT_OK, text, {"streams": [s.to_dict() for s in states]})
