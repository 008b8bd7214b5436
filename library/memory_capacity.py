#!/usr/bin/python
"""Ansible module memory_capacity: database size per provider against its quota (agent_factory.ops.capacity)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_capacity
short_description: Report each memory provider's size, quota use, growth and days left
description:
  - Calls C(agent_factory.ops.capacity.capacity_report), as C(agent-factory capacity) does. Each provider is
    measured now (C(pg_database_size)); its largest tables and indexes are listed with dead tuples and a bloat
    estimate; growth per day comes from the monitor's recorded history over I(days), and days left from
    C(NAME_STORAGE_QUOTA_MB).
  - Fails when a provider is at 95 % of its quota or more, or cannot be measured. Changes nothing on the
    providers (the measurement is recorded in the state store as the monitor's are).
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
  provider:
    description: One provider; every provider when unset.
    type: str
  days:
    description: History window for the growth rate, in days (90 for quarterly planning).
    type: float
    default: 30
attributes:
  check_mode:
    support: full
author:
  - Agent Factory team
"""

EXAMPLES = r"""
- name: Check disk usage on all providers
  memory_capacity:
    project_dir: /opt/agent-factory
  register: capacity
"""

RETURN = r"""
providers:
  description: One entry per provider.
  returned: success or when a provider is critical
  type: list
  elements: dict
  sample:
    - provider: neon
      database_bytes: 7741555
      quota_bytes: 524288000
      used_pct: 1.5
      growth_bytes_per_day: 102400.0
      days_left: 5044.0
      state: ok
      summary: "neon: 7.4 MB of 500.0 MB (1.5 %, ok), 0.1 MB/day over 2016 samples, 5044 days left at that rate"
      relations: []
summary:
  description: One line per provider, for people.
  returned: always
  type: str
  sample: "neon: 7.4 MB of 500.0 MB (1.5 %, ok), growth unknown (needs 6 h of monitor history)"
"""

import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

IMPORT_ERROR: str | None
try:
    from agent_factory.automation import argument_spec, open_manager, to_result
    from agent_factory.errors import AgentFactoryError
    from agent_factory.ops.capacity import capacity_report
    from agent_factory.state.store import StateStore
except ImportError:
    IMPORT_ERROR = traceback.format_exc()

    def argument_spec(**options: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Return the common options without the package, to report it missing."""
        return dict(project_dir=dict(type="path", required=True), env_file=dict(type="path", default=".env"),
                    provider_urls=dict(type="dict", no_log=True), **options)
else:
    IMPORT_ERROR = None

OPTIONS: dict[str, dict[str, Any]] = dict(
    provider=dict(type="str"),
    days=dict(type="float", default=30),
)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("agent-factory"), exception=IMPORT_ERROR)
    result: dict[str, Any] = dict(changed=False, providers=[], summary="")
    try:
        with open_manager(module) as db:
            report = capacity_report(db, StateStore(db.config.state_dir), provider=module.params["provider"],
                                     days=module.params["days"])
    except AgentFactoryError as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # the module's boundary: one readable line, passwords masked by no_log_values
        module.fail_json(msg=f"unexpected {type(exc).__name__}: {exc}", exception=traceback.format_exc(), **result)
    result.update(providers=to_result(report), summary="; ".join(p.summary for p in report))
    bad = [p.provider for p in report if p.state in ("critical", "unknown")]
    if bad:
        module.fail_json(msg=f"at 95 % of the storage quota or not measured: {', '.join(bad)}: {result['summary']}",
                         **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
