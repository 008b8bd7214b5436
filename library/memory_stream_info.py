#!/usr/bin/python
"""Ansible module memory_stream_info: each backup's stream from the primary (agent_factory.ops.stream)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_stream_info
short_description: Report each backup's logical-replication stream from the primary, with its lag
extends_documentation_fragment:
  - agent_factory
description:
  - Calls C(agent_factory.ops.stream.stream_states), as C(agent-factory stream status) does.
  - Read-only; never fails for a stream's status, so playbooks decide (C(until), C(failed_when)) on I(ok),
    I(streaming) or a stream's C(lag_seconds).
options:
  providers:
    description: The backups (subscribers) to report; default every configured backup.
    type: list
    elements: str
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Wait until every stream has caught up
  memory_stream_info: {}
  register: streams
  until: streams.streaming | length == streams.streams | length
  retries: 30
  delay: 2
"""

RETURN = r"""
summary:
  description: One sentence with each stream's status and lag.
  returned: always
  type: str
  sample: "supabase streaming (0.4 s behind neon), railway streaming (0.3 s behind neon)."
ok:
  description: True when no stream is C(stopped) or C(unsupported) (the CLI's exit 0).
  returned: always
  type: bool
  sample: true
streams:
  description: Each backup's stream (subscriber, publisher, status, lag_seconds, lag_bytes, detail).
  returned: always
  type: list
  elements: dict
  sample:
    - subscriber: supabase
      publisher: neon
      status: streaming
      lag_seconds: 0.4
      lag_bytes: 0
      detail: "subscription enabled, worker running"
streaming:
  description: The backups whose status is C(streaming).
  returned: always
  type: list
  elements: str
  sample: ["supabase", "railway"]
max_lag_seconds:
  description: The largest known lag in seconds; null when none is known.
  returned: always
  type: float
  sample: 0.4
"""

from typing import TYPE_CHECKING

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, open_manager, to_result

if TYPE_CHECKING:
    from agent_factory.ops.stream import StreamState

OPTIONS = dict(providers=dict(type="list", elements="str"))


def main() -> None:
    module = memory_module(OPTIONS)
    from agent_factory.ops.stream import stream_states

    result = dict(changed=False, streams=[], streaming=[], max_lag_seconds=None, ok=False, summary="")
    with error_boundary(module, result), open_manager(module) as db:
        states = stream_states(db, subscribers=module.params["providers"])
    lags = [s.lag_seconds for s in states if s.lag_seconds is not None]
    result.update(streams=to_result(states), streaming=[s.subscriber for s in states if s.status == "streaming"],
                  max_lag_seconds=max(lags) if lags else None,
                  ok=not any(s.status in ("stopped", "unsupported") for s in states),
                  summary=", ".join(_line(s) for s in states) + ".")
    module.exit_json(**result)


def _line(s: StreamState) -> str:
    lag = f"{s.lag_seconds:.1f} s behind {s.publisher}" if s.lag_seconds is not None else "lag unknown"
    return f"{s.subscriber} {s.status.replace('_', ' ')} ({lag})"


if __name__ == "__main__":
    main()
