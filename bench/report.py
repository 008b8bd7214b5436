"""Render a results file as Markdown: `python bench/report.py [bench/results/latest.json]`.

Prints the machine, the table of every entry, and the memory operations'
p50/p99/ops/s for each subject (from the entries' details), as pasted into
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import Entry, format_table  # noqa: E402


def render(results: dict[str, Any]) -> str:
    machine, run = results["machine"], results["run"]
    entries = [Entry(**{k: v for k, v in e.items()}) for e in results["entries"]]
    lines = [
        f"Run of {run['when']} ({'quick' if run['quick'] else 'full'}, {run['seconds']:.0f} s, "
        f"commit {machine.get('git_commit')}) on {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gb']} GB, {machine['os']}; Python {machine['python']}, psycopg {machine['psycopg']}, "
        f"psycopg_pool {machine.get('psycopg_pool')}, langchain-postgres {machine.get('langchain_postgres')}; "
        f"servers {', '.join(f'{k} {v}' for k, v in machine['postgres_servers'].items())} "
        f"({'durable' if machine['durable_providers'] else 'fsync off'}).",
        "",
        format_table(entries),
        "",
        _memory_table(results["entries"]),
    ]
    if run.get("errors"):
        lines += ["", "Errors:", *[f"- {e.splitlines()[0]}" for e in run["errors"]]]
    return "\n".join(lines)


def _memory_table(entries: list[dict[str, Any]]) -> str:
    rows = ["| operation | c | ours p50 / p99 ms | ours ops/s | bare p50 / p99 ms | bare ops/s | "
            "peer p50 / p99 ms | peer ops/s | CPU busy ours / bare / peer |",
            "|---|---|---|---|---|---|---|---|---|"]
    for entry in entries:
        name = entry["name"]
        if not (name.startswith("memory.") and name.endswith(".p50")):
            continue
        _, op, c, _ = name.split(".")
        figures = entry.get("details", {})

        def cell(subject: str) -> tuple[str, str, str]:
            f = figures.get(subject)  # noqa: B023 - called in this iteration
            if not f:
                return "-", "-", "-"
            return (f"{f['p50_ms']:.2f} / {f['p99_ms']:.2f}", f"{f['ops_s']:,.0f}",
                    f"{f.get('machine_cpu_busy_pct', float('nan')):.0f}%")

        o, b, p = cell("ours"), cell("bare"), cell("peer")
        rows.append(f"| {op} | {c[1:]} | {o[0]} | {o[1]} | {b[0]} | {b[1]} | {p[0]} | {p[1]} | "
                    f"{o[2]} / {b[2]} / {p[2]} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else ROOT / "bench" / "results" / "latest.json"
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
