#!/usr/bin/python
"""Ansible module memory_maintenance: the monthly statistics tasks (agent_factory.ops.maintenance)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_maintenance
short_description: Update provider statistics, review pool sizes, or show query performance trends
extends_documentation_fragment:
  - agent_factory
description:
  - I(action=analyze) calls C(agent_factory.ops.maintenance.analyze), as C(agent-factory maintenance analyze)
    does. C(ANALYZE) runs on each of our tables whose statistics are stale; the result gives every table's
    autovacuum state. In check mode it reports which tables are stale and analyzes nothing.
  - I(action=pools) sums up the connection figures the monitor recorded since I(since_days) days
    (C(agent-factory maintenance pools)), with advice on C(DATABASE_POOL_MAX_SIZE). Changes nothing.
  - I(action=queries) stores a snapshot of C(pg_stat_statements) on I(provider) (default the primary) and returns
    the trend of each statement's mean time (C(agent-factory maintenance queries)). Reports, without failing,
    when the extension is not available.
options:
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
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Update provider statistics
  memory_maintenance:
    action: analyze
  register: statistics
"""

RETURN = r"""
summary:
  description: One line for people.
  returned: always
  type: str
  sample: "neon: analyzed 1 of 7 tables (settings); 0 dead tuples; autovacuum on"
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
"""

from datetime import timedelta

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, open_manager, to_result

OPTIONS = dict(
    action=dict(type="str", required=True, choices=["analyze", "pools", "queries"]),
    provider=dict(type="str"),
    since_days=dict(type="float", default=30),
)


def main() -> None:
    module = memory_module(OPTIONS)
    from agent_factory.ops.maintenance import analyze, pool_review, query_trends, snapshot_queries
    from agent_factory.state.store import StateStore, utcnow

    result = dict(changed=False, report=[], summary="")
    params = module.params
    since = utcnow() - timedelta(days=params["since_days"])
    failed = False
    with error_boundary(module, result), open_manager(module) as db:
        store = StateStore(db.config.state_dir)
        if params["action"] == "analyze":
            done = analyze(db, params["provider"], check=module.check_mode)
            failed = any(r.error for r in done)
            result.update(changed=any(r.changed for r in done), summary="; ".join(r.summary for r in done),
                          report=to_result(done))
        elif params["action"] == "pools":
            reviews = pool_review(store, db.config.pool_max_size, since)
            result["report"] = to_result(reviews)
            result["summary"] = "; ".join(f"{r.provider}: {r.advice}" for r in reviews) or \
                "no pool figures recorded yet (the monitor records them each run)"
        else:
            name = params["provider"] or db.primary_provider
            stored = snapshot_queries(db, store, name)
            trends = query_trends(store, name, since)
            result["report"] = to_result(trends)
            result["summary"] = (f"{name}: {len(trends)} statements with a trend" if trends else
                                 f"{name}: no trend yet ({stored} statements in this snapshot; "
                                 "pg_stat_statements may not be enabled)")
    if params["action"] == "analyze" and failed:
        module.fail_json(msg=f"ANALYZE failed: {result['summary']}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
