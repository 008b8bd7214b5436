#!/usr/bin/python
"""Ansible module memory_backup: back up providers with agent_factory.ops.backup."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_backup
short_description: Back up one memory provider, or all of them, with pg_dump
extends_documentation_fragment:
  - agent_factory
description:
  - Calls C(agent_factory.ops.backup.backup), as C(agent-factory backup) does.
  - Writes C(<backup_dir>/<provider>-<UTC time>.dump) (or C(.sql)) and a manifest beside it, both mode 0600,
    and records the backup in the state store catalog.
  - With I(provider=all) every provider is tried; the task fails when any of them failed, after the others were
    backed up.
  - Check mode connects and chooses pg_dump but writes nothing; the result lists the planned actions.
options:
  provider:
    description: Provider to back up, or C(all). Default is the primary (C(DATABASE_PROVIDER)).
    type: str
  format:
    description: C(custom) is a compressed pg_restore archive (.dump); C(plain) an SQL script (.sql).
    type: str
    default: custom
    choices: [custom, plain]
  backup_dir:
    description: Directory for the backups, relative to I(project_dir).
    type: path
    default: backups
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Back up every provider
  memory_backup:
    provider: all

- name: Back up supabase as a plain SQL script
  memory_backup:
    provider: supabase
    format: plain
  register: backup_result
"""

RETURN = r"""
summary:
  description: One sentence naming what was backed up and what failed.
  returned: always
  type: str
  sample: backed up neon, supabase, railway
backups:
  description: One entry per provider backed up (or, in check mode, planned).
  returned: always
  type: list
  elements: dict
  sample:
    - provider: neon
      status: ok
      ok: true
      changed: true
      path: /opt/agent-factory/backups/neon-2026-11-24T020000Z.dump
      manifest_path: /opt/agent-factory/backups/neon-2026-11-24T020000Z.dump.manifest.json
      format: custom
      size_bytes: 1048576
      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      row_counts: {"public.knowledge_atoms": 1965}
      duration_s: 1.2
      error: null
      actions: []
"""

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, open_manager, to_result

OPTIONS = dict(
    provider=dict(type="str"),
    format=dict(type="str", default="custom", choices=["custom", "plain"]),
    backup_dir=dict(type="path", default="backups"),
)


def main() -> None:
    module = memory_module(OPTIONS)
    from agent_factory.ops.backup import backup

    result = dict(changed=False, backups=[], summary="")
    name = module.params["provider"]
    everyone = name == "all"
    with error_boundary(module, result), open_manager(module) as db:
        backups = backup(db, None if everyone else name, all_providers=everyone, fmt=module.params["format"],
                         backup_dir=module.params["backup_dir"], check=module.check_mode)
    done = "planned" if module.check_mode else "ok"
    result["backups"] = to_result(backups)
    result["changed"] = any(b.status == done for b in backups)
    failed = [f"{b.provider}: {b.error}" for b in backups if not b.ok]
    verb = "would back up" if module.check_mode else "backed up"
    made = ", ".join(b.provider for b in backups if b.ok)
    result["summary"] = f"{verb} {made or 'nothing'}" + (f"; failed {'; '.join(failed)}" if failed else "")
    if failed:
        module.fail_json(msg=result["summary"], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
