"""Make our module_utils importable inside ansible-lint, so its `args` rule can run our modules' argument specs.

Ansible ships `module_utils/` inside each module's payload; ansible-lint instead
imports the module in its own process, where `ansible.module_utils` knows only
Ansible's files, and it drops the `args` check of any module whose import fails
(a warning, 0 failures). Loading this rules file (`rulesdir` in .ansible-lint)
adds our directory to the package's path, as the payload has it. It defines no
rule of its own.

ansible-lint does not apply `module_defaults`, where the playbooks set the
common options (`group/agent_factory.memory.all`), so for the lint only
`project_dir` is not required: `args` still reports unknown options and wrong
types and choices. Ansible itself requires `project_dir` after merging the
defaults (tests/ansible/test_playbooks.py runs every playbook).
"""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils

_MODULE_UTILS = str(Path(__file__).resolve().parents[1] / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils import agent_factory_module  # noqa: E402  # after the path is set

agent_factory_module.COMMON_OPTIONS["project_dir"]["required"] = False
