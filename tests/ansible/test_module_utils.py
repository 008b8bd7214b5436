"""module_utils/agent_factory_module.py, the code every module shares: spec, import guard, error boundary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ansible.module_utils
import pytest

from agent_factory.errors import ConfigError

from .conftest import MODULE_UTILS

if str(MODULE_UTILS) not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(MODULE_UTILS))  # as Ansible's payload has it

from ansible.module_utils import agent_factory_module as shared


@dataclass
class Recorder:
    """An AnsibleModule's fail_json, recorded: it exits like the real one (SystemExit)."""

    failed: list[dict[str, Any]] = field(default_factory=list)

    def fail_json(self, **kwargs: Any) -> None:
        self.failed.append(kwargs)
        raise SystemExit(1)


def test_argument_spec_adds_common_options_and_refuses_to_redefine_them():
    spec = shared.argument_spec(provider=dict(type="str"))
    assert spec["provider"] == {"type": "str"}
    assert {k: spec[k] for k in shared.COMMON_OPTIONS} == shared.COMMON_OPTIONS
    assert spec["provider_urls"]["no_log"] is True
    spec["project_dir"]["required"] = False
    assert shared.COMMON_OPTIONS["project_dir"]["required"] is True  # a fresh copy every time
    with pytest.raises(ValueError, match="env_file"):
        shared.argument_spec(env_file=dict(type="str"))


def test_error_boundary_reports_our_errors_as_their_message_with_the_result():
    module = Recorder()
    with pytest.raises(SystemExit):
        with shared.error_boundary(module, {"changed": False, "backups": []}):
            raise ConfigError("env file /x/.env does not exist")
    assert module.failed == [{"msg": "env file /x/.env does not exist", "changed": False, "backups": []}]


def test_error_boundary_reports_anything_else_as_unexpected_with_the_traceback():
    module = Recorder()
    with pytest.raises(SystemExit):
        with shared.error_boundary(module, {"changed": False}):
            {}["missing"]
    (failed,) = module.failed
    assert failed["msg"] == "unexpected KeyError: 'missing'"
    assert "Traceback" in failed["exception"] and failed["changed"] is False


def test_error_boundary_lets_exits_and_success_through():
    module = Recorder()
    with shared.error_boundary(module, {}):
        pass
    with pytest.raises(SystemExit):
        with shared.error_boundary(module, {}):
            raise SystemExit(0)  # exit_json / fail_json inside the block
    assert module.failed == []


# The import guard (memory_module without the package) runs for real in test_modules.py
# (test_package_missing_names_the_interpreter) and test_playbooks.py (test_interpreter_without_the_package_is_named).
