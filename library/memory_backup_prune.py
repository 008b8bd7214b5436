#!/usr/bin/python
"""Ansible module memory_backup_prune: delete backups outside the retention (agent_factory.ops.catalog)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_backup_prune
short_description: Delete the backups retention no longer keeps
description:
  - Calls C(agent_factory.ops.prune.prune_backups), as C(agent-factory backups prune) does.
  - A backup is kept when it is among the I(keep) newest of its provider, or younger than I(max_age_days), or
    its provider's newest verified backup (always kept). Every other one is deleted with its manifest.
  - Check mode lists what would be deleted and deletes nothing.
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
attributes:
  check_mode:
    support: full
author:
  - Agent Factory team
"""

EXAMPLES = r"""
- name: Keep a week of backups, and at least the 7 newest of each provider
  memory_backup_prune:
    project_dir: /opt/agent-factory
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

import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

IMPORT_ERROR: str | None
try:
    from agent_factory.automation import argument_spec, module_config, to_result
    from agent_factory.errors import AgentFactoryError
    from agent_factory.ops.prune import prune_backups
    from agent_factory.ops.manifest import SigningKeys
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
    keep=dict(type="int"),
    max_age_days=dict(type="float"),
    provider=dict(type="str"),
    backup_dir=dict(type="path", default="backups"),
)
REQUIRED_ONE_OF = [["keep", "max_age_days"]]


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(**OPTIONS), required_one_of=REQUIRED_ONE_OF,
                           supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("agent-factory"), exception=IMPORT_ERROR)
    result: dict[str, Any] = dict(changed=False, deleted=[], kept=[], actions=[], untouched=[])
    params = module.params
    name = None if params["provider"] in (None, "all") else params["provider"]
    try:
        config = module_config(module)
        if name:
            config.provider(name)
        pruned = prune_backups(StateStore(config.state_dir), keep=params["keep"], max_age_days=params["max_age_days"],
                               provider=name, backup_dir=params["backup_dir"], check=module.check_mode,
                               keys=SigningKeys.from_config(config))
    except AgentFactoryError as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # the module's boundary: one readable line, passwords masked by no_log_values
        module.fail_json(msg=f"unexpected {type(exc).__name__}: {exc}", exception=traceback.format_exc(), **result)
    result.update(to_result(pruned), changed=bool(pruned.deleted))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
