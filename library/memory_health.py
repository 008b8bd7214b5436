#!/usr/bin/python
"""Ansible module memory_health: the providers' health, as agent_factory.ops.monitor sees it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_health
short_description: Check the health of every memory provider
extends_documentation_fragment:
  - agent_factory
description:
  - Calls C(agent_factory.ops.monitor.collect_samples), as C(agent-factory monitor) does, without recording
    samples or sending alerts. A forced health check of every provider, then C(SELECT 1) and the row counts of
    the key tables on the healthy ones.
  - Fails when the requirement I(require) is not met; never changes anything.
options:
  require:
    description:
      - C(any) passes when at least one provider is healthy (the system can serve through failover).
      - C(all) passes only when every provider is healthy; C(primary) when the primary is.
    type: str
    default: any
    choices: [any, all, primary]
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Step 1 - Check provider health
  memory_health: {}
  register: health

- name: Require every provider to be healthy
  memory_health:
    require: all
"""

RETURN = r"""
summary:
  description: One line per provider state, for people.
  returned: always
  type: str
  sample: neon OK 2.1 ms, supabase OK 1.9 ms, railway DOWN (connection refused)
providers:
  description: One sample per provider, in failover order.
  returned: success or when the requirement is not met
  type: list
  elements: dict
  sample:
    - provider: neon
      healthy: true
      is_primary: true
      latency_ms: 2.1
      select_ms: 0.4
      error: null
      row_counts: {"session_memories": 40, "knowledge_atoms": 1965}
healthy:
  description: Names of the healthy providers.
  returned: success or when the requirement is not met
  type: list
  elements: str
  sample: [neon, supabase, railway]
down:
  description: Names of the providers that failed their check.
  returned: success or when the requirement is not met
  type: list
  elements: str
  sample: []
primary:
  description: The configured primary provider.
  returned: success or when the requirement is not met
  type: str
  sample: neon
"""

from typing import Any

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, open_manager, to_result

OPTIONS = dict(
    require=dict(type="str", default="any", choices=["any", "all", "primary"]),
)


def main() -> None:
    module = memory_module(OPTIONS)
    from agent_factory.ops.monitor import collect_samples, status_line
    from agent_factory.state.store import utcnow

    result: dict[str, Any] = dict(changed=False, providers=[], healthy=[], down=[], primary=None, summary="")
    with error_boundary(module, result), open_manager(module) as db:
        samples = collect_samples(db, utcnow())
        result["primary"] = db.primary_provider
    result["providers"] = to_result(samples)
    result["healthy"] = [s.provider for s in samples if s.healthy]
    result["down"] = [s.provider for s in samples if not s.healthy]
    result["summary"] = status_line(samples)
    require = module.params["require"]
    met = {"any": bool(result["healthy"]), "all": not result["down"],
           "primary": result["primary"] in result["healthy"]}[require]
    if not met:
        module.fail_json(msg=f"health requirement '{require}' not met: {result['summary']}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
