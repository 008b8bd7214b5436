#!/usr/bin/python
"""Ansible module memory_schema_info: schema drift across providers (agent_factory.ops.schema_ops.schema_verify)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_schema_info
short_description: Compare every provider's schema with the expected one
extends_documentation_fragment:
  - agent_factory
description:
  - Calls C(agent_factory.ops.schema_ops.schema_verify), as C(agent-factory schema verify) does. Tables, columns,
    types, constraints, indexes and the migration version of every reachable provider are compared with the
    schema the shipped migrations produce.
  - Read-only; reports drift in I(ok) and I(differences) without failing, so playbooks decide (C(failed_when)).
options: {}
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Step 4 - Verify schema deployed correctly
  memory_schema_info: {}
  register: schema
  failed_when: not schema.ok
"""

RETURN = r"""
summary:
  description: One sentence for people.
  returned: always
  type: str
  sample: "schema v1 matches on neon, supabase, railway"
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
"""

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, open_manager, to_result

OPTIONS: dict[str, dict[str, object]] = {}


def main() -> None:
    module = memory_module(OPTIONS)
    from agent_factory.ops.schema_ops import schema_verify

    result = dict(changed=False, ok=False, versions={}, differences=[], drifted=[], unreachable={},
                  target_version=0, reference="", summary="")
    with error_boundary(module, result), open_manager(module) as db:
        report = schema_verify(db)
    result.update(to_result(report))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
