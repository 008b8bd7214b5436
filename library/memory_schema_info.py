#!/usr/bin/python
"""Ansible module memory_schema_info: schema drift across providers (agent_factory.ops.schema_ops.schema_verify)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_schema_info
short_description: Compare every provider's schema with the expected one
description:
  - Calls C(agent_factory.ops.schema_ops.schema_verify), as C(agent-factory schema verify) does. Tables, columns,
    types, constraints, indexes and the migration version of every reachable provider are compared with the
    schema the shipped migrations produce.
  - Read-only; reports drift in I(ok) and I(differences) without failing, so playbooks decide (C(failed_when)).
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
- name: Step 4 - Verify schema deployed correctly
  memory_schema_info:
    project_dir: /opt/agent-factory
  register: schema
  failed_when: not schema.ok
"""

RETURN = r"""
ok:
  description: No drift and at least one provider compared.
  returned: always
  type: bool
  sample: true
versions:
  description: Migration version per compared provider.
  returned: always
  type: dict
  sample: {"neon": 1, "supabase": 1, "railway": 1}
differences:
  description: Each difference as one readable line, prefixed with the provider.
  returned: always
  type: list
  elements: str
  sample: ["railway: index idx_session_memories_user missing"]
drifted:
  description: Providers with at least one difference.
  returned: always
  type: list
  elements: str
  sample: [railway]
unreachable:
  description: Providers that could not be compared, with the reason.
  returned: always
  type: dict
  sample: {}
target_version:
  description: The version of the shipped migrations.
  returned: always
  type: int
  sample: 1
summary:
  description: One sentence for people.
  returned: always
  type: str
  sample: "schema v1 matches on neon, supabase, railway"
"""

import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

IMPORT_ERROR: str | None
try:
    from agent_factory.automation import argument_spec, open_manager, to_result
    from agent_factory.errors import AgentFactoryError
    from agent_factory.ops.schema_ops import schema_verify
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
    result: dict[str, Any] = dict(changed=False, ok=False, versions={}, differences=[], drifted=[], unreachable={},
                  target_version=0, reference="", summary="")
    try:
        with open_manager(module) as db:
            report = schema_verify(db)
    except AgentFactoryError as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # the module's boundary: one readable line, passwords masked by no_log_values
        module.fail_json(msg=f"unexpected {type(exc).__name__}: {exc}", exception=traceback.format_exc(), **result)
    result.update(to_result(report))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
