#!/usr/bin/python
"""Ansible module memory_backup_verify: check a backup file (agent_factory.ops.catalog.verify_backup)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_backup_verify
short_description: Verify a backup file, quickly or by restoring it into a scratch database
extends_documentation_fragment:
  - agent_factory
description:
  - Calls C(agent_factory.ops.catalog.verify_backup), as C(agent-factory backups verify) does. Quick checks are
    the manifest, size, sha256 and that the archive is readable; I(deep) also restores it into a scratch database
    and compares every table's row count with the manifest, then drops the scratch database.
  - A pass is recorded in the manifest and the catalog (C(verified_at)); this is bookkeeping, not a change.
  - Fails, naming the problem, for a missing, corrupt, truncated, unsigned, mis-signed or unknown-format file,
    and for a plain script holding a psql meta-command. The signing key comes from I(env_file) (C(BACKUP_SIGNING_KEY)).
  - In check mode only the quick file checks run (C(check_file)) and nothing is recorded.
options:
  path:
    description: The backup file (.dump or .sql), relative to I(project_dir).
    type: path
    required: true
  deep:
    description: Restore into a scratch database and compare row counts with the manifest.
    type: bool
    default: false
  allow_unsigned:
    description:
      - Accept a backup whose manifest carries no signature (made before backups were signed), as
        C(--allow-unsigned) does. A deep pass is what lets M(memory_restore) restore it with I(allow_unsigned).
    type: bool
    default: false
  target:
    description: Provider that hosts the scratch database for I(deep). Default is the backup's provider.
    type: str
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Test restore of last night's backup into a scratch database
  memory_backup_verify:
    path: backups/neon-2026-11-24T020000Z.dump
    deep: true
"""

RETURN = r"""
verification:
  description: What was checked.
  returned: success
  type: dict
  sample:
    path: /opt/agent-factory/backups/neon-2026-11-24T020000Z.dump
    provider: neon
    format: custom
    deep: true
    checks: ["sha256 matches"]
    row_counts: {"public.knowledge_atoms": 1965}
    scratch_database: af_verify_1a2b3c4d
    duration_s: 2.5
"""

from pathlib import Path

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, open_manager, to_result

OPTIONS = dict(
    path=dict(type="path", required=True),
    deep=dict(type="bool", default=False),
    target=dict(type="str"),
    allow_unsigned=dict(type="bool", default=False),
)


def main() -> None:
    module = memory_module(OPTIONS)
    from agent_factory.ops.catalog import check_file, verify_backup
    from agent_factory.ops.manifest import SigningKeys

    result = dict(changed=False, verification={})
    params = module.params
    with error_boundary(module, result), open_manager(module) as db:
        if module.check_mode:
            checked = check_file(Path(params["path"]), SigningKeys.from_config(db.config),
                                 allow_unsigned=params["allow_unsigned"])
            manifest = checked.manifest
            verification: object = dict(path=Path(params["path"]), provider=manifest.provider, format=manifest.format,
                                deep=False, checks=checked.checks, row_counts=manifest.row_counts)
        else:
            verification = verify_backup(db, params["path"], deep=params["deep"], target=params["target"],
                                         allow_unsigned=params["allow_unsigned"])
    result["verification"] = to_result(verification)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
