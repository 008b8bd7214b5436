"""Profile one memory operation with pyinstrument: `python bench/profile.py OP [--subject ours|bare] [-n N]`.

Starts its own local providers (like run.py), seeds the same data, runs the
operation N times on one thread under pyinstrument and prints the call tree.
Use it on whatever misses its target in bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent_factory.core import DatabaseManager  # noqa: E402
from bench import memory_ops  # noqa: E402
from bench.harness import Context, local_providers  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("op", choices=memory_ops.OPS)
    parser.add_argument("--subject", choices=("ours", "bare"), default="ours")
    parser.add_argument("-n", type=int, default=2000, help="operations to profile (default: %(default)s)")
    parser.add_argument("--html", type=Path, help="also write pyinstrument's HTML report here")
    args = parser.parse_args(argv)
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="agent-factory-profile-"))
    try:
        with local_providers(workdir, durable=False) as local:
            ctx = Context(local=local, workdir=workdir, quick=True, log=print, env=local.env())
            with DatabaseManager(ctx.config()) as db:
                prepared = memory_ops._seed(db, quick=True)
                subject = (memory_ops.Ours(db, prepared) if args.subject == "ours"
                           else memory_ops.Bare(local.url("neon"), prepared))
                fn = subject.make(args.op, 0)
                for _ in range(50):
                    fn()
                profiler = Profiler(interval=0.0002)
                profiler.start()
                for _ in range(args.n):
                    fn()
                profiler.stop()
                subject.close()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
        if args.html:
            args.html.write_text(profiler.output_html())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
