#!/usr/bin/python
"""Ansible module memory_stream_info: each backup's stream from the primary (agent_factory.ops.stream)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_stream_info
short_description: Report each backup's logical-replication stream from the primary, with its lag
description:
  - Calls C(agent_factory.ops.stream.stream_states), as C(agent-factory stream status) does.
  - Read-only; never fails for a stream's status, so playbooks decide (C(until), C(failed_when)) on I(ok),
    I(streaming) or a stream's C(lag_seconds).
requirements:
  - the agent-factory package in the Python that runs the module (C(ansible_python_interpreter))
options:
  project_dir:
    description: Directory of the agent-factory project; the module changes to it, relative paths start there.
    type: path
    required: true
  env_file:
    description: Dotenv file with the provider URLs (C(NEON_DB_URL), ...), relative to I(project_dir).
    type: path
    default: .env
  provider_urls:
    description: Provider URLs by name, over I(env_file) and the environment (for example from a vault).
    type: dict
  providers:
    description: The backups (subscribers) to report; default every configured backup.
    type: list
    elements: str
attributes:
  check_mode:
    support: full
author:
  - Agent Factory team
"""

EXAMPLES = r"""
- name: Wait until every stream has caught up
  memory_stream_info:
    project_dir: /opt/agent-factory
  register: streams
  until: streams.streaming | length == streams.streams | length
  retries: 30
  delay: 2
"""

RETURN = r"""
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
ok:
  description: True when no stream is C(stopped) or C(unsupported) (the CLI's exit 0).
  returned: always
  type: bool
  sample: true
summary:
  description: One sentence with each stream's status and lag.
  returned: always
  type: str
  sample: "supabase streaming (0.4 s behind neon), railway streaming (0.3 s behind neon)."
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from agent_factory.automation import argument_spec, open_manager, to_result
    from agent_factory.errors import AgentFactoryError
    from agent_factory.ops.stream import stream_states
except ImportError:
    IMPORT_ERROR = traceback.format_exc()

    def argument_spec(**options):
        """Return the common options without the package, to report it missing."""
        return dict(project_dir=dict(type="path", required=True), env_file=dict(type="path", default=".env"),
                    provider_urls=dict(type="dict", no_log=True), **options)
else:
    IMPORT_ERROR = None

OPTIONS = dict(providers=dict(type="list", elements="str"))


def main():
    module = AnsibleModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("agent-factory"), exception=IMPORT_ERROR)
    result = dict(changed=False, streams=[], streaming=[], max_lag_seconds=None, ok=False, summary="")
    try:
        with open_manager(module) as db:
            states = stream_states(db, subscribers=module.params["providers"])
    except AgentFactoryError as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # the module's boundary: one readable line, passwords masked by no_log_values
        module.fail_json(msg=f"unexpected {type(exc).__name__}: {exc}", exception=traceback.format_exc(), **result)
    lags = [s.lag_seconds for s in states if s.lag_seconds is not None]
    result.update(streams=to_result(states), streaming=[s.subscriber for s in states if s.status == "streaming"],
                  max_lag_seconds=max(lags) if lags else None,
                  ok=not any(s.status in ("stopped", "unsupported") for s in states),
                  summary=", ".join(_line(s) for s in states) + ".")
    module.exit_json(**result)


def _line(s):
    lag = f"{s.lag_seconds:.1f} s behind {s.publisher}" if s.lag_seconds is not None else "lag unknown"
    return f"{s.subscriber} {s.status.replace('_', ' ')} ({lag})"


if __name__ == "__main__":
    main()
