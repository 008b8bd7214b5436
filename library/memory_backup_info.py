#!/usr/bin/python
"""Ansible module memory_backup_info: the backup catalog (agent_factory.ops.catalog)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_backup_info
short_description: List the backups on hand and each provider's newest verified one
extends_documentation_fragment:
  - agent_factory
description:
  - Calls C(agent_factory.ops.catalog.list_backups) and C(newest_backup), as C(agent-factory backups list) does.
  - Manifests found in I(backup_dir) that the catalog does not know yet are added to it first (backups copied
    from another host); the backups themselves are never touched, so the module never reports a change.
options:
  provider:
    description: Only this provider's backups, or C(all). Default is every provider.
    type: str
  backup_dir:
    description: Directory whose manifests are adopted into the catalog, relative to I(project_dir).
    type: path
    default: backups
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Step 4 - Verify backup exists from last night
  memory_backup_info: {}
  register: catalog

- name: Fail without a verified backup of the primary younger than a day
  ansible.builtin.assert:
    that: catalog.newest[catalog.primary] is not none and catalog.newest[catalog.primary].age_s < 86400
    fail_msg: no verified backup of the primary from the last 24 hours
"""

RETURN = r"""
backups:
  description: Catalogued backups, per provider newest first, with their age and state.
  returned: always
  type: list
  elements: dict
  sample:
    - provider: neon
      path: /opt/agent-factory/backups/neon-2026-11-24T020000Z.dump
      status: ok
      state: verified
      exists: true
      trust: signed
      problem: null
      age_s: 3600.0
      purpose: manual
      size_bytes: 1048576
newest:
  description: Per provider, its newest signed, verified backup whose file exists (as in I(backups)), or null.
  returned: always
  type: dict
  sample: {"neon": {"path": "/opt/agent-factory/backups/neon-2026-11-24T020000Z.dump", "age_s": 3600.0}}
primary:
  description: The configured primary provider.
  returned: always
  type: str
  sample: neon
"""

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, module_config, to_result

OPTIONS = dict(
    provider=dict(type="str"),
    backup_dir=dict(type="path", default="backups"),
)


def main() -> None:
    module = memory_module(OPTIONS)
    from agent_factory.ops.catalog import list_backups, newest_backup
    from agent_factory.ops.manifest import SigningKeys
    from agent_factory.state.store import StateStore

    result = dict(changed=False, backups=[], newest={}, primary=None)
    name = None if module.params["provider"] in (None, "all") else module.params["provider"]
    with error_boundary(module, result):
        config = module_config(module)
        names = [config.provider(name).name] if name else list(config.providers)
        state = StateStore(config.state_dir)
        entries = list_backups(state, name, module.params["backup_dir"], keys=SigningKeys.from_config(config))
        newest = {n: newest_backup(state, n) for n in names}
    rows = [dict(to_result(e.record), age_s=round(e.age_s, 1), state=e.state, exists=e.exists,
                 trust=e.trust, problem=e.problem) for e in entries]
    by_path = {row["path"]: row for row in rows}
    result.update(backups=rows, primary=config.primary,
                  newest={n: (by_path.get(r.path) if r else None) for n, r in newest.items()})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
