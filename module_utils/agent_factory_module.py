"""What every Ansible module in `library/` shares: options, the import guard, the manager and the error boundary.

Ansible ships this file inside each module's payload (ansible.cfg sets
`module_utils = module_utils`), so it works on a host where the agent-factory
package is missing, and says so naming the Python that ran the module. Modules
import it as `ansible.module_utils.agent_factory_module`, like
community.postgresql's `module_utils/postgres.py`; the docs of the common
options are the `agent_factory` doc fragment (`doc_fragments/`).

A module reads:

    module = memory_module(OPTIONS)           # fails cleanly without the package
    from agent_factory.ops.x import op        # after the guard, so the guard speaks first
    result = dict(changed=False, ...)
    with error_boundary(module, result), open_manager(module) as db:
        ...

`error_boundary` is the module's boundary written once: the one place where an
exception becomes `fail_json`. (A module still fails a result that is not ok
itself, with its summary.)
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ansible.module_utils import basic
from ansible.module_utils.basic import missing_required_lib

try:
    from agent_factory.automation import module_config, open_manager, provider_env, to_result
    from agent_factory.errors import AgentFactoryError
except ImportError:
    IMPORT_ERROR = traceback.format_exc()
    module_config = open_manager = provider_env = to_result = None  # memory_module fails before any is used
    AgentFactoryError = Exception
else:
    IMPORT_ERROR = None

__all__ = ["COMMON_OPTIONS", "IMPORT_ERROR", "argument_spec", "error_boundary", "memory_module", "module_config",
           "open_manager", "provider_env", "to_result"]

# The options of every module; documented once in doc_fragments/agent_factory.py.
COMMON_OPTIONS = dict(
    project_dir=dict(type="path", required=True),
    env_file=dict(type="path", default=".env"),
    provider_urls=dict(type="dict", no_log=True),
)


def argument_spec(**options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the common options plus `options` (a module's own), as a fresh dict; raise ValueError on a clash."""
    clash = set(options) & set(COMMON_OPTIONS)
    if clash:
        raise ValueError(f"options {', '.join(sorted(clash))} are common options; do not redefine them")
    spec = dict((name, dict(rules)) for name, rules in COMMON_OPTIONS.items())
    spec.update(options)
    return spec


def memory_module(options: dict[str, dict[str, Any]], **kwargs: Any) -> basic.AnsibleModule:
    """Return an `AnsibleModule` with the common options and `options`, check mode supported.

    Fails the task (`fail_json`) when the agent-factory package cannot be
    imported, naming `sys.executable`; after this returns, `agent_factory`
    imports work.
    """
    # basic.AnsibleModule looked up now, not at import: ansible-lint's args rule patches it per task
    module = basic.AnsibleModule(argument_spec=argument_spec(**options), supports_check_mode=True, **kwargs)
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("agent-factory"), exception=IMPORT_ERROR)  # names sys.executable
    return module


@contextmanager
def error_boundary(module: basic.AnsibleModule, result: dict[str, Any]) -> Iterator[None]:
    """Turn an error inside the block into `fail_json` with `result`: one readable line.

    `AgentFactoryError` gives its own message; anything else gives
    "unexpected <class>: <message>" plus the traceback. Passwords are masked
    by `module.no_log_values`, which `open_manager` fills.
    """
    try:
        yield
    except AgentFactoryError as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # the module's boundary
        module.fail_json(msg=f"unexpected {type(exc).__name__}: {exc}", exception=traceback.format_exc(),
                         **result)
