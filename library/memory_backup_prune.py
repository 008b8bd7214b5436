#!/usr/bin/python
"""Ansible module memory_backup_prune: delete backups outside the retention (agent_factory.ops.catalog)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_backup_prune
short_description: Delete the backups retention no longer keeps
extends_documentation_fragment:
  - agent_factory
description:
  - Calls C(agent_factory.ops.prune.prune_backups), as C(agent-factory backups prune) does.
  - A backup is kept when it is among the I(keep) newest of its provider, or younger than I(max_age_days), or
    its provider's newest verified backup (always kept). Every other one is deleted with its manifest.
  - Check mode lists what would be deleted and deletes nothing.
options:
  keep:
    description: Keep the N newest backups of each provider.
    type: int
  max_age_days:
    description: Keep backups younger than this many days.
    type: float
  provider:
    description: Only this provider's backups, or C(all). Default is every provider.
    type: str
  backup_dir:
    description: Directory whose manifests are considered too, relative to I(project_dir).
    type: path
    default: backups
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Keep a week of backups, and at least the 7 newest of each provider
  memory_backup_prune:
    keep: 7
    max_age_days: 7
"""

RETURN = r"""
deleted:
  description: Backups deleted (in check mode, that would be deleted).
  returned: always
  type: list
  elements: str
  sample: [/opt/agent-factory/backups/neon-2026-11-01T020000Z.dump]
kept:
  description: Backups kept.
  returned: always
  type: list
  elements: str
  sample: [/opt/agent-factory/backups/neon-2026-11-24T020000Z.dump]
actions:
  description: One line per deletion with the reason.
  returned: always
  type: list
  elements: str
  sample: ["delete /opt/agent-factory/backups/neon-2026-11-01T020000Z.dump (23.0 days old, #9 of provider neon)"]
untouched:
  description: Catalog entries prune never deletes (outside I(backup_dir), unsigned, untrusted, invalid), with why.
  returned: always
  type: list
  elements: str
  sample: ["/opt/agent-factory/backups/neon-2026-10-01T020000Z.dump: unsigned (...); prune deletes only signed backups"]
"""

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, module_config, to_result

OPTIONS = dict(
    keep=dict(type="int"),
    max_age_days=dict(type="float"),
    provider=dict(type="str"),
    backup_dir=dict(type="path", default="backups"),
)
REQUIRED_ONE_OF = [["keep", "max_age_days"]]


def main() -> None:
    module = memory_module(OPTIONS, required_one_of=REQUIRED_ONE_OF)
    from agent_factory.ops.prune import prune_backups
    from agent_factory.ops.manifest import SigningKeys
    from agent_factory.state.store import StateStore

    result = dict(changed=False, deleted=[], kept=[], actions=[], untouched=[])
    params = module.params
    name = None if params["provider"] in (None, "all") else params["provider"]
    with error_boundary(module, result):
        config = module_config(module)
        if name:
            config.provider(name)
        pruned = prune_backups(StateStore(config.state_dir), keep=params["keep"], max_age_days=params["max_age_days"],
                               provider=name, backup_dir=params["backup_dir"], check=module.check_mode,
                               keys=SigningKeys.from_config(config))
    result.update(to_result(pruned), changed=bool(pruned.deleted))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
