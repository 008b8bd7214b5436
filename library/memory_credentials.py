#!/usr/bin/python
"""Ansible module memory_credentials: rotate a provider's password, or check the configured ones log in."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_credentials
short_description: Rotate a memory provider's database password without downtime, or check the credentials
description:
  - I(action=rotate) calls C(agent_factory.ops.credentials.rotate_password), as C(agent-factory credentials rotate)
    does. It generates a strong password, sets it on the provider's role (as the role itself, or as
    C(NAME_ADMIN_URL) when configured; only a SCRAM-SHA-256 verifier is sent), proves that a new login works, and
    only then rewrites I(env_file) atomically, mode 0600. Running processes keep their connections and use the new
    password on their next one. The password never appears in the result.
  - I(action=check) re-reads the configuration and tries a new login on each provider (or I(provider)); it fails
    when one is refused. It never changes anything.
  - In check mode I(action=rotate) logs in and returns the plan, changing nothing.
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
attributes:
  check_mode:
    support: full
author:
  - Agent Factory team
"""

EXAMPLES = r"""
- name: Rotate database credentials
  memory_credentials:
    project_dir: /opt/agent-factory
    action: rotate
    provider: neon
    vault_prefix: vault_agent_factory_env
  register: rotated
"""

RETURN = r"""
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
summary:
  description: One line per provider, for people.
  returned: always
  type: str
  sample: "rotated the password of role neondb_owner on neon; new logins work; NEON_DB_URL updated in .env"
"""

import os
import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

IMPORT_ERROR: str | None
try:
    from agent_factory.automation import argument_spec, module_config, to_result
    from agent_factory.errors import AgentFactoryError
    from agent_factory.ops.credentials import check_credentials, rotate_password
except ImportError:
    IMPORT_ERROR = traceback.format_exc()

    def argument_spec(**options: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Return the common options without the package, to report it missing."""
        return dict(project_dir=dict(type="path", required=True), env_file=dict(type="path", default=".env"),
                    provider_urls=dict(type="dict", no_log=True), **options)
else:
    IMPORT_ERROR = None

OPTIONS: dict[str, dict[str, Any]] = dict(
    action=dict(type="str", default="check", choices=["rotate", "check"]),
    provider=dict(type="str"),
    vault_prefix=dict(type="str"),
)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True,
                           required_if=[("action", "rotate", ["provider"])])
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("agent-factory"), exception=IMPORT_ERROR)
    result: dict[str, Any] = dict(changed=False, providers=[], summary="")
    params = module.params
    try:
        module_config(module)
        if params["action"] == "rotate":
            if params["provider_urls"]:
                module.fail_json(msg="rotation writes the new password to env_file; do not give provider_urls",
                                 **result)
            done = [rotate_password(params["env_file"], params["provider"], check=module.check_mode,
                                    vault_prefix=params["vault_prefix"], env=os.environ)]
        else:
            done = check_credentials(params["env_file"], params["provider"], env=os.environ)
    except AgentFactoryError as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # the module's boundary: one readable line, passwords masked by no_log_values
        module.fail_json(msg=f"unexpected {type(exc).__name__}: {exc}", exception=traceback.format_exc(), **result)
    result.update(changed=any(r.changed for r in done), providers=to_result(done),
                  summary="; ".join(r.summary for r in done))
    if params["action"] == "check" and not all(r.logged_in for r in done):
        module.fail_json(msg=f"a provider refused the configured credentials: {result['summary']}", **result)
    if params["action"] == "rotate" and not module.check_mode and not done[0].old_password_refused:
        module.fail_json(msg=f"the old password still logs in: {result['summary']}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
