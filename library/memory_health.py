#!/usr/bin/python
"""Ansible module memory_health: the providers' health, as agent_factory.ops.monitor sees it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_health
short_description: Check the health of every memory provider
description:
  - Calls C(agent_factory.ops.monitor.collect_samples), as C(agent-factory monitor) does, without recording
    samples or sending alerts. A forced health check of every provider, then C(SELECT 1) and the row counts of
    the key tables on the healthy ones.
  - Fails when the requirement I(require) is not met; never changes anything.
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
  require:
    description:
      - C(any) passes when at least one provider is healthy (the system can serve through failover).
      - C(all) passes only when every provider is healthy; C(primary) when the primary is.
    type: str
    default: any
    choices: [any, all, primary]
attributes:
  check_mode:
    support: full
author:
  - Agent Factory team
"""

EXAMPLES = r"""
- name: Step 1 - Check provider health
  memory_health:
    project_dir: /opt/agent-factory
  register: health

- name: Require every provider to be healthy
  memory_health:
    project_dir: /opt/agent-factory
    require: all
"""

RETURN = r"""
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
summary:
  description: One line per provider state, for people.
  returned: always
  type: str
  sample: neon OK 2.1 ms, supabase OK 1.9 ms, railway DOWN (connection refused)
"""

import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

IMPORT_ERROR: str | None
try:
    from agent_factory.automation import argument_spec, open_manager, to_result
    from agent_factory.errors import AgentFactoryError
    from agent_factory.ops.monitor import collect_samples, status_line
    from agent_factory.state.store import utcnow
except ImportError:
    IMPORT_ERROR = traceback.format_exc()

    def argument_spec(**options: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Return the common options without the package, to report it missing."""
        return dict(project_dir=dict(type="path", required=True), env_file=dict(type="path", default=".env"),
                    provider_urls=dict(type="dict", no_log=True), **options)
else:
    IMPORT_ERROR = None

OPTIONS: dict[str, dict[str, Any]] = dict(
    require=dict(type="str", default="any", choices=["any", "all", "primary"]),
)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("agent-factory"), exception=IMPORT_ERROR)
    result: dict[str, Any] = dict(changed=False, providers=[], healthy=[], down=[], primary=None, summary="")
    try:
        with open_manager(module) as db:
            samples = collect_samples(db, utcnow())
            result["primary"] = db.primary_provider
    except AgentFactoryError as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # the module's boundary: one readable line, passwords masked by no_log_values
        module.fail_json(msg=f"unexpected {type(exc).__name__}: {exc}", exception=traceback.format_exc(), **result)
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
