"""Doc fragment `agent_factory`: the options every module in `library/` shares.

The argument spec they document is in module_utils/agent_factory_module.py.
"""

from __future__ import annotations


class ModuleDocFragment:
    """The common options, for `extends_documentation_fragment: [agent_factory]`."""

    DOCUMENTATION = r"""
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
    description:
      - Provider URLs by name, over I(env_file) and the environment (for example from a vault).
      - Never shown in output (C(no_log)); passwords in these URLs are masked in every message.
    type: dict
requirements:
  - the agent-factory package in the Python that runs the module (C(ansible_python_interpreter))
attributes:
  check_mode:
    support: full
author:
  - Agent Factory team
"""
