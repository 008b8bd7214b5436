#!/usr/bin/python
"""Ansible module memory_backup_info: the backup catalog (agent_factory.ops.catalog)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_backup_info
short_description: List the backups on hand and each provider's newest verified one
description:
  - Calls C(agent_factory.ops.catalog.list_backups) and C(newest_backup), as C(agent-factory backups list) does.
  - Manifests found in I(backup_dir) that the catalog does not know yet are added to it first (backups copied
    from another host); the backups themselves are never touched, so the module never reports a change.
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
    description: Only this provider's backups, or C(all). Default is every provider.
    type: str
  backup_dir:
    description: Directory whose manifests are adopted into the catalog, relative to I(project_dir).
    type: path
    default: backups
attributes:
  check_mode:
    support: full
author:
  - Agent Factory team
"""

EXAMPLES = r"""
- name: Step 4 - Verify backup exists from last night
  memory_backup_info:
    project_dir: /opt/agent-factory
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

import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

IMPORT_ERROR: str | None
try:
    from agent_factory.automation import argument_spec, module_config, to_result
    from agent_factory.errors import AgentFactoryError
    from agent_factory.ops.catalog import list_backups, newest_backup
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
    provider=dict(type="str"),
    backup_dir=dict(type="path", default="backups"),
)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("agent-factory"), exception=IMPORT_ERROR)
    result: dict[str, Any] = dict(changed=False, backups=[], newest={}, primary=None)
    name = None if module.params["provider"] in (None, "all") else module.params["provider"]
    try:
        config = module_config(module)
        names = [config.provider(name).name] if name else list(config.providers)
        state = StateStore(config.state_dir)
        entries = list_backups(state, name, module.params["backup_dir"], keys=SigningKeys.from_config(config))
        newest = {n: newest_backup(state, n) for n in names}
    except AgentFactoryError as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # the module's boundary: one readable line, passwords masked by no_log_values
        module.fail_json(msg=f"unexpected {type(exc).__name__}: {exc}", exception=traceback.format_exc(), **result)
    rows = [dict(to_result(e.record), age_s=round(e.age_s, 1), state=e.state, exists=e.exists,
                 trust=e.trust, problem=e.problem) for e in entries]
    by_path = {row["path"]: row for row in rows}
    result.update(backups=rows, primary=config.primary,
                  newest={n: (by_path.get(r.path) if r else None) for n, r in newest.items()})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
