#!/usr/bin/python
"""Ansible module memory_schema: deploy migrations or fix the memory_type constraint (agent_factory.ops.schema_ops)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_schema
short_description: Deploy pending schema migrations, or fix the memory_type constraint
extends_documentation_fragment:
  - agent_factory
description:
  - I(state=deployed) calls C(agent_factory.ops.schema_ops.deploy), as C(agent-factory schema deploy) does.
    Each pending migration runs in its own transaction; objects that exist are never altered or dropped.
  - I(state=constraints_fixed) calls C(fix_constraints), as C(agent-factory schema fix-constraints) does. It
    replaces C(session_memories_memory_type_check) with the canonical list, and refuses, changing nothing
    anywhere, when existing rows would violate it.
  - Fails when a targeted provider could not be deployed or fixed (unreachable, failed, blocked); the result
    keeps what was changed on the others.
  - Check mode runs the same planning code and writes nothing.
options:
  state:
    description: C(deployed) applies pending migrations; C(constraints_fixed) repairs the memory_type constraint.
    type: str
    default: deployed
    choices: [deployed, constraints_fixed]
  provider:
    description:
      - Provider name, or C(all).
      - Default for C(deployed) is the primary; for C(constraints_fixed) every provider.
    type: str
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Step 2 - Test schema change on neon (dry run)
  memory_schema:
    provider: neon
  check_mode: true

- name: Fix the memory_type constraint everywhere
  memory_schema:
    state: constraints_fixed
"""

RETURN = r"""
summary:
  description: One sentence for people.
  returned: always
  type: str
  sample: "applied 0002_add_index on neon"
ok:
  description: Whether every targeted provider was deployed (or fixed, or could be).
  returned: always
  type: bool
  sample: true
providers:
  description: One entry per targeted provider with its status.
  returned: always
  type: list
  elements: dict
  sample:
    - provider: neon
      status: applied
      applied: ["0002_add_index"]
      pending: []
      current_version: 1
      target_version: 2
      error: null
"""

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, open_manager, to_result

OPTIONS = dict(
    state=dict(type="str", default="deployed", choices=["deployed", "constraints_fixed"]),
    provider=dict(type="str"),
)
CHANGED = {False: ("applied", "replaced"), True: ("would_apply", "would_replace")}


def main() -> None:
    module = memory_module(OPTIONS)
    from agent_factory.ops.schema_ops import ConstraintFixResult, DeployResult, deploy, fix_constraints

    result = dict(changed=False, ok=False, providers=[], summary="")
    name = module.params["provider"]
    everyone = name == "all"
    with error_boundary(module, result), open_manager(module) as db:
        outcome: DeployResult | ConstraintFixResult
        if module.params["state"] == "deployed":
            outcome = deploy(db, None if everyone else name, all_providers=everyone, check=module.check_mode)
        else:
            outcome = fix_constraints(db, None if everyone else name, check=module.check_mode)
    result.update(ok=outcome.ok, summary=outcome.summary, providers=to_result(outcome.providers),
                  changed=any(p.status in CHANGED[module.check_mode] for p in outcome.providers))
    if not outcome.ok:
        module.fail_json(msg=outcome.summary, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
