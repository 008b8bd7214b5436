#!/usr/bin/python
"""Ansible module memory_verify: the runbook's deployment check (agent_factory.ops.verify)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_verify
short_description: Verify that the memory system can serve
extends_documentation_fragment:
  - agent_factory
description:
  - Calls C(agent_factory.ops.verify.verify), as C(agent-factory verify) and the runbook's
    C(verify_memory_deployment.py) do. Eight tests, imports, the manager, provider health, a storage round trip
    on a scratch session (deleted afterwards), the knowledge atom count, schema drift, each backup's sync lag and
    the rows each backup holds that the primary lacks.
  - Fails when the system cannot serve (no provider healthy or the round trip failed). Providers down, schema
    drift, sync lag or rows stranded on a backup alone are reported, not failed on.
  - Never reports a change; the scratch session is deleted again, so it runs in check mode too.
options: {}
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Step 4 - Verify restore worked
  memory_verify: {}
"""

RETURN = r"""
summary:
  description: One sentence for people.
  returned: always
  type: str
  sample: "The memory system can serve: 3 of 3 providers healthy, storage round trip passed on neon."
ok:
  description: Whether the system can serve.
  returned: always
  type: bool
  sample: true
tests:
  description: The eight tests with their C([STATUS] detail) lines.
  returned: success or when the system cannot serve
  type: list
  elements: dict
  sample:
    - number: 3
      title: Testing provider health checks
      checks: [{status: OK, detail: "neon: healthy (2.1 ms)"}]
text:
  description: The report in the runbook's format.
  returned: success or when the system cannot serve
  type: str
  sample: "[TEST 1] Verifying imports...\n[OK] All imports successful"
"""

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, open_manager, to_result

OPTIONS: dict[str, dict[str, object]] = {}


def main() -> None:
    module = memory_module(OPTIONS)
    from agent_factory.ops.verify import verify

    result = dict(changed=False, ok=False, summary="", tests=[], text="")
    with error_boundary(module, result), open_manager(module) as db:
        report = verify(db)
    result.update(ok=report.ok, summary=report.summary, tests=to_result(report.tests), text=report.text())
    if not report.ok:
        module.fail_json(msg=report.summary, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
