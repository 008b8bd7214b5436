#!/usr/bin/python
"""Ansible module memory_credentials: rotate a provider's password, or check the configured ones log in."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_credentials
short_description: Rotate a memory provider's database password without downtime, or check the credentials
extends_documentation_fragment:
  - agent_factory
description:
  - I(action=rotate) calls C(agent_factory.ops.credentials.rotate_password), as C(agent-factory credentials rotate)
    does. It generates a strong password, sets it on the provider's role (as the role itself, or as
    C(NAME_ADMIN_URL) when configured; only a SCRAM-SHA-256 verifier is sent), proves that a new login works, and
    only then rewrites I(env_file) atomically, mode 0600. Running processes keep their connections and use the new
    password on their next one. The password never appears in the result.
  - I(action=check) re-reads the configuration and tries a new login on each provider (or I(provider)); it fails
    when one is refused. It never changes anything.
  - In check mode I(action=rotate) logs in and returns the plan, changing nothing.
options:
  action:
    description: C(rotate) the password of I(provider), or C(check) that the configured credentials log in.
    type: str
    default: check
    choices: [rotate, check]
  provider:
    description: The provider (required for C(rotate); C(check) checks every provider without it).
    type: str
  vault_prefix:
    description:
      - Production inventories keep the env in a vault variable (e.g. C(vault_agent_factory_env)); the result then
        names the vault variables to update from the rewritten I(env_file).
    type: str
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Rotate database credentials
  memory_credentials:
    action: rotate
    provider: neon
    vault_prefix: vault_agent_factory_env
  register: rotated
"""

RETURN = r"""
summary:
  description: What was rotated (or found, with I(action=check)) on each provider, one line each.
  returned: always
  type: str
  sample: "rotated the password of role neondb_owner on neon; new logins work; NEON_DB_URL updated in .env"
providers:
  description: One result per provider (one for C(rotate)); never a password.
  returned: success or when a check fails
  type: list
  elements: dict
  sample:
    - provider: neon
      role: neondb_owner
      changed: true
      logged_in: true
      old_password_refused: true
      variables: [NEON_DB_URL]
      vault_variables: [vault_agent_factory_env.NEON_DB_URL]
      summary: "rotated the password of role neondb_owner on neon; new logins work; NEON_DB_URL updated in .env"
"""

import os

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, module_config, to_result

OPTIONS = dict(
    action=dict(type="str", default="check", choices=["rotate", "check"]),
    provider=dict(type="str"),
    vault_prefix=dict(type="str"),
)


def main() -> None:
    module = memory_module(OPTIONS, required_if=[("action", "rotate", ["provider"])])
    from agent_factory.ops.credentials import check_credentials, rotate_password

    result = dict(changed=False, providers=[], summary="")
    params = module.params
    with error_boundary(module, result):
        module_config(module)
        if params["action"] == "rotate":
            if params["provider_urls"]:
                module.fail_json(msg="rotation writes the new password to env_file; do not give provider_urls",
                                 **result)
            done = [rotate_password(params["env_file"], params["provider"], check=module.check_mode,
                                    vault_prefix=params["vault_prefix"], env=os.environ)]
        else:
            done = check_credentials(params["env_file"], params["provider"], env=os.environ)
    result.update(changed=any(r.changed for r in done), providers=to_result(done),
                  summary="; ".join(r.summary for r in done))
    if params["action"] == "check" and not all(r.logged_in for r in done):
        module.fail_json(msg=f"a provider refused the configured credentials: {result['summary']}", **result)
    if params["action"] == "rotate" and not module.check_mode and not done[0].old_password_refused:
        module.fail_json(msg=f"the old password still logs in: {result['summary']}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
