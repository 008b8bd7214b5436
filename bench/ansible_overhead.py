"""Benchmark: what a playbook costs over the same `agent-factory` command.

Ours: `ansible-playbook playbooks/health_check.yml` and `playbooks/backup.yml
-e provider=neon` on `inventory/local`. Baseline: the CLI command doing the
same work in one process, `agent-factory monitor --once` (every provider probed,
SELECT 1 and key-table counts) and `agent-factory backup --provider neon`.
Both run as fresh processes against the same providers, interleaved; the
figure is the wall time of the whole command, median of the runs. The
difference is Ansible's own start-up, inventory, templating and module
transfer (AnsiballZ) plus the module's interpreter start.

Standalone: `python bench/ansible_overhead.py [--quick] [--output FILE]`
starts its own providers; `run(ctx)` fits `bench/run.py`'s harness.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent_factory.local.cluster import write_env_file  # noqa: E402
from bench.harness import Context, Entry, format_table, local_providers, median  # noqa: E402

BIN = Path(sys.executable).parent
TARGET_S = 3.0  # playbook overhead we accept for an operator's command


def _environ(workdir: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items()
               if not k.endswith("_DB_URL") and not k.startswith(("DATABASE_", "ANSIBLE_", "AGENT_FACTORY_"))}
    environ.update(PATH=f"{BIN}{os.pathsep}{environ.get('PATH', '')}", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                   ANSIBLE_HOME=str(workdir / "ansible-home"), ANSIBLE_NOCOLOR="1")
    return environ


def _project(ctx: Context) -> Path:
    project = ctx.workdir / "ansible-project"
    project.mkdir(exist_ok=True)
    write_env_file(project / ".env", {**ctx.env, "AGENT_FACTORY_STATE_DIR": str(project / "state")})
    return project


def _run(cmd: list[str], cwd: Path, environ: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=environ, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {proc.stdout[-1500:]}{proc.stderr[-800:]}")
    return seconds


def _pair(ctx: Context, name: str, playbook: list[str], cli: list[str], baseline_name: str, reps: int) -> Entry:
    project = _project(ctx)
    environ = _environ(ctx.workdir)
    book = [str(BIN / "ansible-playbook"), str(ROOT / "playbooks" / playbook[0]),
            "-e", json.dumps({"project_dir": str(project), **dict(kv.split("=", 1) for kv in playbook[1:])})]
    command = [str(BIN / "agent-factory"), *cli]
    ours: list[float] = []
    base: list[float] = []
    _run(book, ROOT, environ)  # warm the page cache for both
    for rep in range(reps):
        for which in (("book", "cli") if rep % 2 == 0 else ("cli", "book")):
            if which == "book":
                ours.append(_run(book, ROOT, environ))
            else:
                base.append(_run(command, project, environ))
    shutil.rmtree(project / "backups", ignore_errors=True)
    o, b = median(ours), median(base)
    ctx.log(f"{name}: playbook {o:.2f} s, CLI {b:.2f} s, overhead {o - b:.2f} s")
    return Entry(name, "s (median)", round(o, 3), round(b, 3), baseline_name,
                 f"overhead (ours - baseline) <= {TARGET_S:g} s", o - b <= TARGET_S,
                 details={"overhead_s": round(o - b, 3), "runs": reps, "ours_s": [round(x, 3) for x in ours],
                          "baseline_s": [round(x, 3) for x in base]})


def run(ctx: Context) -> list[Entry]:
    """Measure health_check.yml and backup.yml (one provider) against their CLI commands."""
    reps = 2 if ctx.quick else 5
    return [
        _pair(ctx, "ansible.health_check", ["health_check.yml"], ["monitor", "--once"],
              "agent-factory monitor --once (same probes and counts, one process)", reps),
        _pair(ctx, "ansible.backup_one_provider", ["backup.yml", "provider=neon"],
              ["backup", "--provider", "neon"], "agent-factory backup --provider neon", reps),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs each instead of 5")
    parser.add_argument("--output", type=Path, help="also write the entries as JSON here")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="agent-factory-bench-ansible-"))
    try:
        with local_providers(workdir, durable=False) as local:
            ctx = Context(local=local, workdir=workdir, quick=args.quick, log=log, env=local.env())
            entries = run(ctx)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(format_table(entries))
    if args.output:
        args.output.write_text(json.dumps([e.as_json() for e in entries], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
