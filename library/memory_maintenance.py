#!/usr/bin/python
"""Ansible module memory_maintenance: the monthly statistics tasks (agent_factory.ops.maintenance)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_maintenance
short_description: Update provider statistics, review pool sizes, or show query performance trends
description:
  - I(action=analyze) calls C(agent_factory.ops.maintenance.analyze), as C(agent-factory maintenance analyze)
    does. C(ANALYZE) runs on each of our tables whose statistics are stale; the result gives every table's
    autovacuum state. In check mode it reports which tables are stale and analyzes nothing.
  - I(action=pools) sums up the connection figures the monitor recorded since I(since_days) days
    (C(agent-factory maintenance pools)), with advice on C(DATABASE_POOL_MAX_SIZE). Changes nothing.
  - I(action=queries) stores a snapshot of C(pg_stat_statements) on I(provider) (default the primary) and returns
    the trend of each statement's mean time (C(agent-factory maintenance queries)). Reports, without failing,
    when the extension is not available.
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
    description: What to do.
    type: str
    required: true
    choices: [analyze, pools, queries]
  provider:
    description: One provider (C(analyze) defaults to every provider, C(queries) to the primary).
    type: str
  since_days:
    description: The period C(pools) and C(queries) look back over, in days.
    type: float
    default: 30
attributes:
  check_mode:
    support: full
author:
  - Agent Factory team
"""

EXAMPLES = r"""
- name: Update provider statistics
  memory_maintenance:
    project_dir: /opt/agent-factory
    action: analyze
  register: statistics
"""

RETURN = r"""
report:
  description: Per provider (C(analyze), C(pools)) or per statement (C(queries)).
  returned: success
  type: list
  elements: dict
  sample:
    - provider: neon
      check: false
      tables: []
      error: null
summary:
  description: One line for people.
  returned: always
  type: str
  sample: "neon: analyzed 1 of 7 tables (settings); 0 dead tuples; autovacuum on"
"""

import traceback
from typing import Any
from datetime import timedelta

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

IMPORT_ERROR: str | None
try:
    from agent_factory.automation import argument_spec, open_manager, to_result
    from agent_factory.errors import AgentFactoryError
    from agent_factory.ops.maintenance import analyze, pool_review, query_trends, snapshot_queries
    from agent_factory.state.store import StateStore, utcnow
except ImportError:
    IMPORT_ERROR = traceback.format_exc()

    def argument_spec(**options: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Return the common options without the package, to report it missing."""
        return dict(project_dir=dict(type="path", required=True), env_file=dict(type="path", default=".env"),
                    provider_urls=dict(type="dict", no_log=True), **options)
else:
    IMPORT_ERROR = None

OPTIONS: dict[str, dict[str, Any]] = dict(
    action=dict(type="str", required=True, choices=["analyze", "pools", "queries"]),
    provider=dict(type="str"),
    since_days=dict(type="float", default=30),
)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("agent-factory"), exception=IMPORT_ERROR)
    result: dict[str, Any] = dict(changed=False, report=[], summary="")
    params = module.params
    since = utcnow() - timedelta(days=params["since_days"])
    done: list[Any]  # each action's own records, all turned into dicts by to_result
    try:
        with open_manager(module) as db:
            store = StateStore(db.config.state_dir)
            if params["action"] == "analyze":
                done = analyze(db, params["provider"], check=module.check_mode)
                result.update(changed=any(r.changed for r in done), summary="; ".join(r.summary for r in done))
            elif params["action"] == "pools":
                done = pool_review(store, db.config.pool_max_size, since)
                result["summary"] = "; ".join(f"{r.provider}: {r.advice}" for r in done) or \
                    "no pool figures recorded yet (the monitor records them each run)"
            else:
                name = params["provider"] or db.primary_provider
                stored = snapshot_queries(db, store, name)
                done = query_trends(store, name, since)
                result["summary"] = (f"{name}: {len(done)} statements with a trend" if done else
                                     f"{name}: no trend yet ({stored} statements in this snapshot; "
                                     "pg_stat_statements may not be enabled)")
    except AgentFactoryError as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # the module's boundary: one readable line, passwords masked by no_log_values
        module.fail_json(msg=f"unexpected {type(exc).__name__}: {exc}", exception=traceback.format_exc(), **result)
    result["report"] = to_result(done)
    if params["action"] == "analyze" and any(r.error for r in done):
        module.fail_json(msg=f"ANALYZE failed: {result['summary']}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
