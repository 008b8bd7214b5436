#!/usr/bin/python
"""Ansible module memory_primary: switch the primary provider (agent_factory.ops.primary)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_primary
short_description: Make a provider the primary, after a forced health check
description:
  - Calls C(agent_factory.ops.primary.switch_primary), as C(agent-factory primary set NAME) does. The provider
    gets a forced health check, then C(DATABASE_PROVIDER) is rewritten in I(env_file) atomically, mode 0600,
    keeping every other line. Applications must be restarted to use it.
  - Fails, changing nothing, when the provider is unknown or fails its health check.
  - Supports check mode and diff mode (the C(DATABASE_PROVIDER) line before and after).
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
    description: The provider to make the primary.
    type: str
    required: true
  require_healthy:
    description: Refuse when the provider fails a forced health check.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author:
  - Agent Factory team
"""

EXAMPLES = r"""
- name: Step 2 - Update .env to use healthy provider
  memory_primary:
    project_dir: /opt/agent-factory
    provider: supabase
  register: switched
"""

RETURN = r"""
previous:
  description: The primary before.
  returned: success
  type: str
  sample: neon
current:
  description: The primary after (in check mode, as it would be).
  returned: success
  type: str
  sample: supabase
healthy:
  description: Result of the forced health check, null when I(require_healthy=false).
  returned: success
  type: bool
  sample: true
env_file:
  description: Absolute path of the env file.
  returned: success
  type: str
  sample: /opt/agent-factory/.env
"""

import os
import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

IMPORT_ERROR: str | None
try:
    from agent_factory.automation import argument_spec, module_config, provider_env
    from agent_factory.errors import AgentFactoryError
    from agent_factory.ops.primary import switch_primary
except ImportError:
    IMPORT_ERROR = traceback.format_exc()

    def argument_spec(**options: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Return the common options without the package, to report it missing."""
        return dict(project_dir=dict(type="path", required=True), env_file=dict(type="path", default=".env"),
                    provider_urls=dict(type="dict", no_log=True), **options)
else:
    IMPORT_ERROR = None

OPTIONS: dict[str, dict[str, Any]] = dict(
    provider=dict(type="str", required=True),
    require_healthy=dict(type="bool", default=True),
)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("agent-factory"), exception=IMPORT_ERROR)
    result: dict[str, Any] = dict(changed=False)
    params = module.params
    try:
        module_config(module)
        switched = switch_primary(params["env_file"], params["provider"], check=module.check_mode,
                                  require_healthy=params["require_healthy"],
                                  env={**os.environ, **provider_env(params["provider_urls"])})
    except AgentFactoryError as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # the module's boundary: one readable line, passwords masked by no_log_values
        module.fail_json(msg=f"unexpected {type(exc).__name__}: {exc}", exception=traceback.format_exc(), **result)
    result.update(changed=switched.changed, previous=switched.previous, current=switched.current,
                  healthy=switched.healthy, env_file=str(switched.env_file))
    if switched.changed and module._diff:
        result["diff"] = dict(before=switched.line_before, after=switched.line_after,
                              before_header=str(switched.env_file), after_header=str(switched.env_file))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
