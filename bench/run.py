"""Run the benchmarks: `python bench/run.py [--quick] [--only NAME] [--output PATH]`.

Starts three local providers (neon, supabase, railway) in a temporary
directory, applies the schema, runs each benchmark against its baseline in the
same process, prints a table and writes the results (default
bench/results/latest.json). The providers run with fsync off (durable=False):
every figure here compares two clients of the same servers, so the servers'
durability settings apply to both sides alike.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import Context, Entry, format_table, local_providers, machine, write_results  # noqa: E402

BENCHMARKS = ("memory", "memory_link", "failover", "failback", "health", "backup", "sync", "checkpoint",
              "checkpoint_link", "chat_history", "store", "partition", "pooler", "stream")
MODULES = {"memory": ("bench.memory_ops", "run"), "memory_link": ("bench.memory_ops", "run_link"),
           "failover": ("bench.failover", "run"), "failback": ("bench.failback", "run"),
           "health": ("bench.health", "run"),
           "backup": ("bench.backup_restore", "run"), "sync": ("bench.sync", "run"),
           "checkpoint": ("bench.checkpoint", "run"), "checkpoint_link": ("bench.checkpoint", "run_link"),
           "chat_history": ("bench.chat_history", "run"), "store": ("bench.store", "run"),
           "partition": ("bench.partition", "run"), "pooler": ("bench.pooler", "run"),
           "stream": ("bench.stream", "run")}
# Run only when named with --only (each writes its own results file with --output):
# partition drops packets with iptables (root) and its baseline waits out a 30 s cap per trial.
# stream writes for two minutes and keeps its own results file (bench/results/stream.json).
OPT_IN = ("partition", "pooler", "stream")
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "latest.json"
DURABLE = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few trials (under 2 minutes)")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}; "
                             f"{', '.join(OPT_IN)} run only when named")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results file (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="directory for providers and scratch files (default: a new temporary directory)")
    parser.add_argument("--no-peer", action="store_true",
                        help="skip the langchain-postgres comparison (its entries say so)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the library's log lines")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.verbose:  # the pools' reconnect warnings during failover drills are expected
        logging.getLogger("psycopg").setLevel(logging.CRITICAL)
    selected = args.only or [name for name in BENCHMARKS if name not in OPT_IN]

    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {message}", flush=True)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="agent-factory-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    entries: list[Entry] = []
    errors: list[str] = []
    machine_info: dict[str, object] = {}
    try:
        log(f"starting local providers under {workdir}")
        with local_providers(workdir, DURABLE) as local:
            ctx = Context(local=local, workdir=workdir, quick=args.quick, log=log, env=local.env(),
                          no_peer=args.no_peer)
            machine_info = machine(local, DURABLE)
            for name in selected:
                log(f"benchmark {name} ...")
                try:
                    module_name, function = MODULES[name]
                    entries.extend(getattr(importlib.import_module(module_name), function)(ctx))
                except Exception:
                    errors.append(f"{name}: {traceback.format_exc(limit=8)}")
                    log(f"benchmark {name} FAILED:\n{traceback.format_exc()}")
                finally:
                    ctx.ensure_running()
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.monotonic() - started
    write_results(args.output, machine_info, entries, quick=args.quick, seconds=seconds, errors=errors)
    print()
    print(format_table(entries))
    print(f"\n{len(entries)} entries in {seconds:.0f} s; results written to {args.output}")
    if errors:
        print(f"{len(errors)} benchmark(s) failed: {', '.join(e.split(':', 1)[0] for e in errors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
