#!/usr/bin/python
"""Ansible module memory_stream: set up, pause or drop the primary's streams (agent_factory.ops.stream_plan)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_stream
short_description: Make the backups follow the primary by logical replication, pause or drop their streams
extends_documentation_fragment:
  - agent_factory
description:
  - Calls C(agent_factory.ops.stream_plan.converge_streams), which runs C(agent-factory stream setup), C(resume),
    C(pause) or C(drop) for the backups that need it. See docs/CONTINUITY.md and docs/RUNBOOK.md ("Streams").
  - I(state=present) makes every named backup follow the primary (sets up absent streams, resumes paused ones;
    idempotent). I(state=paused) keeps the streams but stops applying. I(state=absent) drops them.
  - A backup whose provider cannot subscribe (status C(unsupported)) is not acted on; it is listed in
    I(unsupported) and a warning says to keep it warm with C(agent-factory sync --follow).
  - Fails when a stream ends C(stopped) (set up and enabled but not applying), or when an action fails
    (missing privileges, a pooler URL, an unreachable provider), with one line saying what to do.
  - Check mode reads the streams' states and reports the actions it would run, changing nothing.
options:
  state:
    description: C(present) (every named backup follows the primary), C(paused) or C(absent).
    type: str
    default: present
    choices: [present, paused, absent]
  providers:
    description: The backups (subscribers) to act on; default every configured backup.
    type: list
    elements: str
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Make every backup follow the primary
  memory_stream: {}

- name: Pause the stream into supabase before a restore of neon
  memory_stream:
    state: paused
    providers: [supabase]
"""

RETURN = r"""
summary:
  description: One sentence with the actions and each stream's status.
  returned: always
  type: str
  sample: "streams present: setup supabase; supabase streaming, railway streaming."
actions:
  description: What ran (in check mode, would run), in order, as "ACTION BACKUP".
  returned: always
  type: list
  elements: str
  sample: ["setup supabase", "resume railway"]
streams:
  description:
    - Each named backup's stream after the run (in check mode, as found), with the keys that
      M(memory_stream_info) documents under its C(streams).
  returned: always
  type: list
  elements: dict
  sample: [{subscriber: railway, publisher: neon, status: paused, lag_seconds: null, lag_bytes: 0, detail: "paused"}]
unsupported:
  description: Backups that cannot subscribe; keep them warm with C(agent-factory sync --follow).
  returned: always
  type: list
  elements: str
  sample: []
stopped:
  description: Backups whose stream is enabled but not applying (the task fails while any).
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, open_manager, to_result

OPTIONS = dict(
    state=dict(type="str", default="present", choices=["present", "paused", "absent"]),
    providers=dict(type="list", elements="str"),
)


def main() -> None:
    module = memory_module(OPTIONS)
    from agent_factory.ops.stream_plan import converge_streams

    result = dict(changed=False, actions=[], streams=[], unsupported=[], stopped=[], summary="")
    with error_boundary(module, result), open_manager(module) as db:
        change = converge_streams(db, module.params["state"], subscribers=module.params["providers"],
                                  check=module.check_mode)
    result.update(changed=change.changed, actions=change.actions, streams=to_result(change.streams),
                  unsupported=change.unsupported, stopped=change.stopped, summary=change.summary())
    for name in change.unsupported:
        module.warn(f"{name} cannot subscribe: keep it warm with `agent-factory sync --follow --to {name}`")
    if not change.ok:
        module.fail_json(msg=result["summary"], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
