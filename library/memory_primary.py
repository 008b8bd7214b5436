#!/usr/bin/python
"""Ansible module memory_primary: switch the primary provider (agent_factory.ops.primary)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_primary
short_description: Make a provider the primary, after a forced health check
extends_documentation_fragment:
  - agent_factory
description:
  - Calls C(agent_factory.ops.primary.switch_primary), as C(agent-factory primary set NAME) does. The provider
    gets a forced health check, then C(DATABASE_PROVIDER) is rewritten in I(env_file) atomically, mode 0600,
    keeping every other line. Applications must be restarted to use it.
  - Fails, changing nothing, when the provider is unknown or fails its health check.
  - Supports check mode and diff mode (the C(DATABASE_PROVIDER) line before and after).
options:
  provider:
    description: The provider to make the primary.
    type: str
    required: true
  require_healthy:
    description: Refuse when the provider fails a forced health check.
    type: bool
    default: true
attributes:
  diff_mode:
    support: full
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Step 2 - Update .env to use healthy provider
  memory_primary:
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

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, module_config, provider_env

OPTIONS = dict(
    provider=dict(type="str", required=True),
    require_healthy=dict(type="bool", default=True),
)


def main() -> None:
    module = memory_module(OPTIONS)
    from agent_factory.ops.primary import switch_primary

    result: dict[str, object] = dict(changed=False)
    params = module.params
    with error_boundary(module, result):
        module_config(module)
        switched = switch_primary(params["env_file"], params["provider"], check=module.check_mode,
                                  require_healthy=params["require_healthy"],
                                  env={**os.environ, **provider_env(params["provider_urls"])})
    result.update(changed=switched.changed, previous=switched.previous, current=switched.current,
                  healthy=switched.healthy, env_file=str(switched.env_file))
    if switched.changed and module._diff:
        result["diff"] = dict(before=switched.line_before, after=switched.line_after,
                              before_header=str(switched.env_file), after_header=str(switched.env_file))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
