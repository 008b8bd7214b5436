#!/usr/bin/python
"""Ansible module memory_restore: restore a backup into a provider (agent_factory.ops.restore)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_restore
short_description: Restore a backup into a provider, with a pre-restore backup and row count checks
extends_documentation_fragment:
  - agent_factory
description:
  - Calls C(agent_factory.ops.restore.restore), as C(agent-factory restore --yes) does. The file is verified
    (manifest, size, sha256, archive) before anything else; then the provider's lock is taken, a pre-restore
    backup made, the backup loaded in one transaction (any error rolls it back, leaving the target as it was),
    row counts compared with the manifest and the deployment check run.
  - Fails when the row counts do not match the manifest (the result names the pre-restore backup to roll back
    to), and for a bad file, an unknown provider or a held lock, before anything is changed.
  - Restoring one provider's backup into another needs I(allow_cross_provider).
  - Check mode validates everything and returns the plan; nothing is changed.
options:
  backup:
    description: The backup file (.dump or .sql), relative to I(project_dir).
    type: path
    required: true
  provider:
    description: Target provider. Default is the provider the backup was made from.
    type: str
  allow_unsigned:
    description:
      - Accept a backup whose manifest carries no signature (made before backups were signed), as
        C(--allow-unsigned) does. The restore still needs a passed deep verification of this very file
        (M(memory_backup_verify) with I(deep) and I(allow_unsigned)).
    type: bool
    default: false
  allow_cross_provider:
    description: Allow restoring a backup of another provider (its data replaces the target's).
    type: bool
    default: false
  backup_dir:
    description: Where the pre-restore backup goes, relative to I(project_dir).
    type: path
    default: backups
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Step 3 - Restore from backup
  memory_restore:
    provider: neon
    backup: backups/neon-2026-11-24T020000Z.dump
  register: restored
"""

RETURN = r"""
restore:
  description: The restore (or, in check mode, its plan).
  returned: always
  type: dict
  sample:
    provider: neon
    backup_path: /opt/agent-factory/backups/neon-2026-11-24T020000Z.dump
    backup_provider: neon
    status: ok
    ok: true
    pre_restore_backup: /opt/agent-factory/backups/neon-2026-11-24T031500Z.dump
    row_counts_before: {"public.session_memories": 12}
    row_counts_after: {"public.session_memories": 40}
    expected_row_counts: {"public.session_memories": 40}
    mismatches: {}
    verify_ok: true
    duration_s: 4.2
    actions: []
    warnings: []
"""

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, open_manager, to_result

OPTIONS = dict(
    backup=dict(type="path", required=True),
    provider=dict(type="str"),
    allow_cross_provider=dict(type="bool", default=False),
    allow_unsigned=dict(type="bool", default=False),
    backup_dir=dict(type="path", default="backups"),
)


def main() -> None:
    module = memory_module(OPTIONS)
    from agent_factory.errors import ConfirmationRequiredError
    from agent_factory.ops.restore import restore

    result = dict(changed=False, restore={})
    params = module.params
    with error_boundary(module, result), open_manager(module) as db:
        try:
            restored = restore(db, params["provider"], params["backup"], check=module.check_mode,
                               yes=params["allow_cross_provider"], backup_dir=params["backup_dir"],
                               allow_unsigned=params["allow_unsigned"])
        except ConfirmationRequiredError as exc:  # the CLI's --yes is this module's allow_cross_provider
            module.fail_json(msg=f"{exc}; in Ansible set allow_cross_provider: true", **result)
    result.update(changed=True, restore=to_result(restored))
    if not restored.ok:
        detail = ", ".join(f"{t}: expected {a}, found {b}" for t, (a, b) in sorted(restored.mismatches.items()))
        module.fail_json(msg=f"restore into {restored.provider}: row counts differ from the manifest ({detail}); "
                             f"to roll back restore {restored.pre_restore_backup}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
