"""Benchmark 3: `health_check_all()` with one provider that accepts TCP and never answers.

Ours: one forced `health_check_all()` (the providers are probed concurrently).
Baseline: the same three forced checks one after the other (`health_check(name,
force=True)` per provider), which is what a sequential checker costs.
Target: ours <= 1.2 x one connect timeout. Runs are interleaved. A second
scenario hangs all three providers, where a sequential checker pays three
timeouts.
"""

from __future__ import annotations

from agent_factory.core import DatabaseManager

from agent_factory.local.hanging import HangingServer
from .harness import Context, Entry, median, timed

CONNECT_TIMEOUT = 2  # seconds; the smallest libpq accepts, so the benchmark stays short


def run(ctx: Context) -> list[Entry]:
    entries = [_scenario(ctx, ("railway",), reps=2 if ctx.quick else 5)]
    # All three hung: the case where checking one after the other costs the most.
    entries.append(_scenario(ctx, ("neon", "supabase", "railway"), reps=1 if ctx.quick else 3))
    return entries


def _scenario(ctx: Context, hung: tuple[str, ...], reps: int) -> Entry:
    ours: list[float] = []
    sequential: list[float] = []
    servers = {name: HangingServer() for name in hung}
    expected = {name: name not in hung for name in ("neon", "supabase", "railway")}
    try:
        urls = {f"{name.upper()}_DB_URL": server.url() for name, server in servers.items()}
        config = ctx.config(DATABASE_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT), **urls)
        with DatabaseManager(config) as db:
            for rep in range(reps):
                order = ("ours", "sequential") if rep % 2 == 0 else ("sequential", "ours")
                for which in order:
                    if which == "ours":
                        seconds, health = timed(lambda: db.health_check_all(force=True))
                        ours.append(seconds)
                    else:
                        seconds, health = timed(lambda: {n: db.health_check(n, force=True) for n in db.providers})
                        sequential.append(seconds)
                    if health != expected:
                        raise RuntimeError(f"unexpected health with {', '.join(hung)} hung: {health}")
                ctx.log(f"health ({len(hung)} hung) rep {rep + 1}/{reps}: concurrent {ours[-1]:.3f} s, "
                        f"sequential {sequential[-1]:.3f} s")
    finally:
        for server in servers.values():
            server.close()
    limit = 1.2 * CONNECT_TIMEOUT
    label = "one_hanging" if len(hung) == 1 else "all_hanging"
    return Entry(
        name=f"health.check_all_{label}",
        unit="s (median)",
        ours=median(ours),
        baseline=median(sequential),
        baseline_name="the same three checks run one after the other",
        target=f"ours <= 1.2 x connect timeout ({limit:.1f} s)",
        meets_target=median(ours) <= limit,
        details={"hung": list(hung), "connect_timeout_s": CONNECT_TIMEOUT, "reps": reps, "ours_s": _r(ours),
                 "sequential_s": _r(sequential), "ours_max_s": round(max(ours), 4)},
    )


def _r(values: list[float]) -> list[float]:
    return [round(v, 4) for v in values]
