#!/usr/bin/python
"""Ansible module memory_capacity: database size per provider against its quota (agent_factory.ops.capacity)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_capacity
short_description: Report each memory provider's size, quota use, growth and days left
extends_documentation_fragment:
  - agent_factory
description:
  - Calls C(agent_factory.ops.capacity.capacity_report), as C(agent-factory capacity) does. Each provider is
    measured now (C(pg_database_size)); its largest tables and indexes are listed with dead tuples and a bloat
    estimate; growth per day comes from the monitor's recorded history over I(days), and days left from
    C(NAME_STORAGE_QUOTA_MB).
  - Fails when a provider is at 95 % of its quota or more, or cannot be measured. Changes nothing on the
    providers (the measurement is recorded in the state store as the monitor's are).
options:
  provider:
    description: One provider; every provider when unset.
    type: str
  days:
    description: History window for the growth rate, in days (90 for quarterly planning).
    type: float
    default: 30
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Check disk usage on all providers
  memory_capacity: {}
  register: capacity

- name: Warn the operator about a provider with less than 30 days left at its growth rate
  ansible.builtin.debug:
    msg: "{{ short | map(attribute='summary') | list }}"
  vars:
    short: "{{ capacity.providers | rejectattr('days_left', 'none') | selectattr('days_left', 'lt', 30) | list }}"
  when: short | length > 0
"""

RETURN = r"""
summary:
  description: Each provider's size against its limit, and its growth, in one line per provider.
  returned: always
  type: str
  sample: "neon: 7.4 MB of 500.0 MB (1.5 %, ok), growth unknown (needs 6 h of monitor history)"
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
"""

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, open_manager, to_result

OPTIONS = dict(
    provider=dict(type="str"),
    days=dict(type="float", default=30),
)


def main() -> None:
    module = memory_module(OPTIONS)
    from agent_factory.ops.capacity import capacity_report
    from agent_factory.state.store import StateStore

    result = dict(changed=False, providers=[], summary="")
    with error_boundary(module, result), open_manager(module) as db:
        report = capacity_report(db, StateStore(db.config.state_dir), provider=module.params["provider"],
                                 days=module.params["days"])
    result.update(providers=to_result(report), summary="; ".join(p.summary for p in report))
    bad = [p.provider for p in report if p.state in ("critical", "unknown")]
    if bad:
        module.fail_json(msg=f"at 95 % of the storage quota or not measured: {', '.join(bad)}: {result['summary']}",
                         **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
