#!/usr/bin/python
"""Ansible module memory_sync: merge providers with agent_factory.ops.sync."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_sync
short_description: Merge the rows one provider changed into another, or converge every provider
extends_documentation_fragment:
  - agent_factory
description:
  - Calls C(agent_factory.ops.sync.sync), as C(agent-factory sync --from A --to B) or C(agent-factory sync --all)
    does. Every row changed on the source since the pair's last sync is copied into the target; the newer
    version of a row (C(updated_at), then C(write_id)) wins, deletions (tombstones) included. See docs/CONTINUITY.md.
  - With I(mode=all) each reachable provider is merged into the hub (the primary, or the first reachable provider
    after it), then the hub into each; the task fails when a pair failed or a provider was unreachable, after
    the other pairs ran.
  - Each pair's run is recorded in the state store (its lag is what C(agent-factory verify) reports).
  - Check mode is the CLI's C(--dry-run). It counts what would be copied and writes nothing, not even the state
    store. C(changed) is true when rows would be copied.
options:
  mode:
    description:
      - C(pair) merges I(source) into I(target) (C(--from A --to B)); both are then required.
      - C(all) converges every provider (C(--all)); I(source) and I(target) must then be left out.
    type: str
    default: pair
    choices: [pair, all]
  source:
    description: Provider to copy changes from, with I(mode=pair).
    type: str
  target:
    description: Provider to copy changes into, with I(mode=pair); must differ from I(source).
    type: str
  full:
    description: Ignore the watermarks and compare every row (C(--full); after a restore).
    type: bool
    default: false
  wait:
    description: Seconds to wait for another sync into the same target to end; 0 fails at once when it is busy.
    type: float
    default: 0.0
"""

EXAMPLES = r"""
# project_dir comes from the play's module_defaults for group/agent_factory.memory.all, as in playbooks/.
- name: Converge every provider
  memory_sync:
    mode: all
  register: synced

- name: Merge the writes made on supabase during a failover into neon
  memory_sync:
    source: supabase
    target: neon
    wait: 30
"""

RETURN = r"""
summary:
  description: One sentence with the totals, the lag and what failed or was skipped.
  returned: always
  type: str
  sample: "4 syncs: 12 rows copied, 1 conflicts resolved, 1 tombstones applied, max lag 0.8 s."
ok:
  description: True when every pair synced and no provider was skipped.
  returned: always
  type: bool
  sample: true
pairs:
  description: One entry per pair synced (source into target), in the order run; C(tables) has one entry per table.
  returned: always
  type: list
  elements: dict
  sample:
    - source: supabase
      target: neon
      tables:
        - table: settings
          rows_copied: 3
          conflicts_resolved: 1
          tombstones_applied: 1
          rows_read: 3
          deferred: 0
          synced_through: "2026-11-24T21:30:00.120000+00:00"
          batches: 1
          longest_batch_s: 0.004
          oldest_written: "2026-11-24T21:12:03.511000+00:00"
      rows_copied: 3
      conflicts_resolved: 1
      tombstones_applied: 1
      synced_through: "2026-11-24T21:30:00.120000+00:00"
      lag_s: 0.8
      duration_s: 0.05
      dry_run: false
      ok: true
      error: null
hub:
  description: With I(mode=all), the provider everything went through; null for a pair.
  returned: always
  type: str
  sample: neon
skipped:
  description: With I(mode=all), providers that took no part, and why.
  returned: always
  type: dict
  sample: {"railway": "unreachable"}
dry_run:
  description: True in check mode (nothing was written).
  returned: always
  type: bool
  sample: false
rows_copied:
  description: Rows written (in check mode, that would be) over all pairs.
  returned: always
  type: int
  sample: 12
conflicts_resolved:
  description: Rows changed on both sides since the last sync, settled by the newer version.
  returned: always
  type: int
  sample: 1
tombstones_applied:
  description: Of I(rows_copied), deletions.
  returned: always
  type: int
  sample: 1
max_lag_s:
  description: The largest lag of a pair in seconds (how far its target is behind its source); null when unknown.
  returned: always
  type: float
  sample: 0.8
"""

from ansible.module_utils.agent_factory_module import error_boundary, memory_module, open_manager, to_result

OPTIONS = dict(
    mode=dict(type="str", default="pair", choices=["pair", "all"]),
    source=dict(type="str"),
    target=dict(type="str"),
    full=dict(type="bool", default=False),
    wait=dict(type="float", default=0.0),
)


def main() -> None:
    module = memory_module(OPTIONS, required_if=[("mode", "pair", ("source", "target"))])
    from agent_factory.ops.sync import sync
    from agent_factory.state.store import StateStore

    result = dict(changed=False, pairs=[], hub=None, skipped={}, dry_run=module.check_mode, ok=False,
                  rows_copied=0, conflicts_resolved=0, tombstones_applied=0, max_lag_s=None, summary="")
    params = module.params
    everyone = params["mode"] == "all"
    if everyone and (params["source"] is not None or params["target"] is not None):
        module.fail_json(msg="mode=all converges every provider: leave out source and target, "
                             "or use mode=pair to merge one provider into another", **result)
    if params["wait"] < 0:
        module.fail_json(msg=f"wait must be 0 or more seconds, not {params['wait']}", **result)
    with error_boundary(module, result), open_manager(module) as db:
        store = None if module.check_mode else StateStore(db.config.state_dir)
        report = sync(db, params["source"], params["target"], all_providers=everyone, check=module.check_mode,
                      store=store, wait_s=params["wait"], full=params["full"])
    result.update(to_result(report))
    result.update(changed=report.rows_copied > 0, rows_copied=report.rows_copied,
                  conflicts_resolved=report.conflicts_resolved, tombstones_applied=report.tombstones_applied,
                  max_lag_s=report.max_lag_s, summary=report.summary())
    if not report.ok:
        module.fail_json(msg=result["summary"], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
