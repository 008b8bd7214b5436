#!/usr/bin/python
"""Ansible module memory_verify: the runbook's deployment check (agent_factory.ops.verify)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_verify
short_description: Verify that the memory system can serve
description:
  - Calls C(agent_factory.ops.verify.verify), as C(agent-factory verify) and the runbook's
    C(verify_memory_deployment.py) do. Eight tests, imports, the manager, provider health, a storage round trip
    on a scratch session (deleted afterwards), the knowledge atom count, schema drift, each backup's sync lag and
    the rows each backup holds that the primary lacks.
  - Fails when the system cannot serve (no provider healthy or the round trip failed). Providers down, schema
    drift, sync lag or rows stranded on a backup alone are reported, not failed on.
  - Never reports a change; the scratch session is deleted again, so it runs in check mode too.
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
attributes:
  check_mode:
    support: full
author:
  - Agent Factory team
"""

EXAMPLES = r"""
- name: Step 4 - Verify restore worked
  memory_verify:
    project_dir: /opt/agent-factory
"""

RETURN = r"""
ok:
  description: Whether the system can serve.
  returned: always
  type: bool
  sample: true
summary:
  description: One sentence for people.
  returned: always
  type: str
  sample: "The memory system can serve: 3 of 3 providers healthy, storage round trip passed on neon."
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

import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

IMPORT_ERROR: str | None
try:
    from agent_factory.automation import argument_spec, open_manager, to_result
    from agent_factory.errors import AgentFactoryError
    from agent_factory.ops.verify import verify
except ImportError:
    IMPORT_ERROR = traceback.format_exc()

    def argument_spec(**options: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Return the common options without the package, to report it missing."""
        return dict(project_dir=dict(type="path", required=True), env_file=dict(type="path", default=".env"),
                    provider_urls=dict(type="dict", no_log=True), **options)
else:
    IMPORT_ERROR = None

OPTIONS: dict[str, dict[str, Any]] = dict()


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("agent-factory"), exception=IMPORT_ERROR)
    result: dict[str, Any] = dict(changed=False, ok=False, summary="", tests=[], text="")
    try:
        with open_manager(module) as db:
            report = verify(db)
    except AgentFactoryError as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # the module's boundary: one readable line, passwords masked by no_log_values
        module.fail_json(msg=f"unexpected {type(exc).__name__}: {exc}", exception=traceback.format_exc(), **result)
    result.update(ok=report.ok, summary=report.summary, tests=to_result(report.tests), text=report.text())
    if not report.ok:
        module.fail_json(msg=report.summary, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
