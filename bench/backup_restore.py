"""Benchmark 4: backup and restore, ours against pg_dump and pg_restore run directly.

The primary (neon) is seeded server-side (INSERT ... SELECT generate_series
into `session_memories`) until the database is at least 1 GB (about 10 MB in
--quick). Then, alternating ours and direct runs (ABBA):

- backup (3 repetitions, 1 in --quick): `agent_factory.ops.backup.backup(db, "neon")` (custom format) against
  the same pg_dump binary run directly with the same options
  (`--format=custom --compress=6 --no-owner --no-privileges
  --lock-wait-timeout=60000`). Ours also exports a snapshot, counts every
  table's rows in it while pg_dump runs, fsyncs, hashes and lists the archive;
  the hashing and listing (verification) are timed separately and reported
  apart; the dump entry is ours minus verification.
- restore (2 repetitions, 1 in --quick): `agent_factory.ops.restore.restore(db, "neon", file)` against
  pg_restore run directly with the same options (`--clean --if-exists
  --no-owner --no-privileges --single-transaction --exit-on-error`) and the
  same table of contents (the library skips the schemas and extensions the
  target already has; the direct run gets the same list, made before timing).
  The load entry compares ours' load step (`RestoreResult.restore_s`) with it;
  the checks before and after, the pre-restore backup and the whole RTO are
  reported apart. A parallel `pg_restore -j 2` (not possible in one
  transaction) is measured too, for reference. Every restore is followed by an
  untimed VACUUM ANALYZE so the next one starts from the same state.

Each figure is the fastest of its repetitions (noise on a shared machine only
adds time); the medians are in the entry details.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agent_factory.core import DatabaseManager
from agent_factory.ops import backup as backup_module
from agent_factory.ops import catalog as catalog_module
from agent_factory.ops import pgtools
from agent_factory.ops import restore as restore_module

from .harness import Context, Entry, median

PROVIDER = "neon"
DUMP_OPTIONS = ["--no-owner", "--no-privileges", "--no-comments", "--no-publications", "--no-subscriptions",
                "--lock-wait-timeout=60000", "--format=custom", "--compress=6"]
RESTORE_OPTIONS = ["--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "--clean",
                   "--if-exists"]
PARALLEL_JOBS = 2
FULL_BYTES = 1_100_000_000  # pg_database_size to reach in the full run (>= 1 GB with margin)
QUICK_BYTES = 25_000_000
BATCH_ROWS = 250_000

_SEED_SQL = """
INSERT INTO session_memories (id, session_id, user_id, memory_type, message_index, content, metadata, created_at)
SELECT gen_random_uuid(), 'seed-' || (g / 200), 'user-' || (g %% 997),
       CASE WHEN g %% 2 = 0 THEN 'message_user' ELSE 'message_assistant' END, g %% 200,
       jsonb_build_object('role', CASE WHEN g %% 2 = 0 THEN 'user' ELSE 'assistant' END,
                          'content', md5(g::text) || ' ' || md5((g + 1)::text) || ' ' || md5((g * 7)::text) || ' '
                                     || md5((g * 13)::text) || ' ' || md5((g * 31)::text) || ' '
                                     || md5((g * 37)::text) || ' ' || md5((g * 41)::text)),
       jsonb_build_object('turn', g %% 200, 'tokens', g %% 513),
       now() - make_interval(secs => g)
FROM generate_series(%s::bigint, %s::bigint) AS g
"""


def run(ctx: Context) -> list[Entry]:
    reps = 1 if ctx.quick else 3
    work = Path(tempfile.mkdtemp(prefix="bench-backup-", dir=ctx.workdir))
    try:
        with DatabaseManager(ctx.config()) as db:
            size = _seed(ctx, db, QUICK_BYTES if ctx.quick else FULL_BYTES)
            target = pgtools.target_for(db, PROVIDER)
            with target.connect(purpose="bench") as conn:
                num, _ = pgtools.server_version(conn)
            pg_dump = pgtools.pick_tool("pg_dump", num // 10000)
            _check_dump_options(target)
            backups = _backups(ctx, db, target, pg_dump, work, reps)
            restores = _restores(ctx, db, target, work, backups["file"], 1 if ctx.quick else 2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _entries(size, backups, restores)


# ---- seeding ----------------------------------------------------------------------------


def _seed(ctx: Context, db: DatabaseManager, want_bytes: int) -> int:
    start = time.perf_counter()
    with db.provider_connection(PROVIDER) as conn:
        conn.autocommit = True
        offset = next_g = 10_000_000  # ids far from any other benchmark's
        batch = BATCH_ROWS if want_bytes > 100_000_000 else 20_000
        while True:  # at least one batch, so the archive always holds seeded rows
            conn.execute(_SEED_SQL, (next_g, next_g + batch - 1))
            next_g += batch
            size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
            ctx.log(f"seeded {next_g - offset:,} rows, database {size / 1e6:,.0f} MB")
            if size >= want_bytes:
                break
        conn.execute("VACUUM ANALYZE session_memories")
        conn.autocommit = False
    ctx.log(f"seeding took {time.perf_counter() - start:.1f} s")
    return size


# ---- backup -----------------------------------------------------------------------------


def _check_dump_options(target: pgtools.PgTarget) -> None:
    """Fail loudly if the library's pg_dump options drift from the ones the direct run uses."""
    dump_args = getattr(backup_module, "_dump_args", None)
    if dump_args is None:
        return
    theirs = sorted(a for a in dump_args(target, "custom") if not a.startswith("--dbname="))
    if theirs != sorted(DUMP_OPTIONS):
        raise RuntimeError(f"the library's pg_dump options changed: {theirs} vs the direct run's {DUMP_OPTIONS}")


@contextlib.contextmanager
def _phases(patches: list[tuple[Any, str, str]]) -> Iterator[dict[str, float]]:
    """Wrap module functions so that the time spent in each is added to its phase (outermost calls only)."""
    totals: dict[str, float] = {}
    active = threading.local()
    originals = []
    for module, attr, phase in patches:
        original = getattr(module, attr)
        originals.append((module, attr, original))

        def wrapper(*args: Any, __original: Callable[..., Any] = original, __phase: str = phase,
                    **kwargs: Any) -> Any:
            if getattr(active, "depth", 0):
                return __original(*args, **kwargs)
            active.depth = getattr(active, "depth", 0) + 1
            start = time.perf_counter()
            try:
                return __original(*args, **kwargs)
            finally:
                totals[__phase] = totals.get(__phase, 0.0) + time.perf_counter() - start
                active.depth -= 1

        setattr(module, attr, functools.wraps(original)(wrapper))
    try:
        yield totals
    finally:
        for module, attr, original in originals:
            setattr(module, attr, original)


def _direct(argv: list[str], password: str | None) -> float:
    env = {**os.environ, "PGPASSWORD": password or ""}
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed: {proc.stderr.strip()[-800:]}")
    return seconds


def _backups(ctx: Context, db: DatabaseManager, target: pgtools.PgTarget, pg_dump: pgtools.Tool, work: Path,
             reps: int) -> dict[str, Any]:
    ours_total: list[float] = []
    ours_verify: list[float] = []
    direct: list[float] = []
    sizes: dict[str, int] = {}
    keep: Path | None = None
    for rep in range(reps):
        for which in (("ours", "direct") if rep % 2 == 0 else ("direct", "ours")):
            if which == "ours":
                with _phases([(backup_module, "sha256_of", "verify"),
                              (backup_module, "check_archive", "verify")]) as phases:
                    start = time.perf_counter()
                    [result] = backup_module.backup(db, PROVIDER, backup_dir=work / "ours")
                    ours_total.append(time.perf_counter() - start)
                ours_verify.append(phases.get("verify", 0.0))
                sizes["ours"] = result.size_bytes or 0
                if keep is None:
                    keep = result.path
                else:
                    _remove_backup(result.path)
                ctx.log(f"backup ours: {ours_total[-1]:.2f} s (verification {ours_verify[-1]:.2f} s), "
                        f"{sizes['ours'] / 1e6:.0f} MB")
            else:
                out = work / f"direct-{rep}.dump"
                direct.append(_direct([str(pg_dump.path), f"--dbname={target.conninfo}", *DUMP_OPTIONS,
                                       f"--file={out}"], target.password))
                sizes["direct"] = out.stat().st_size
                out.unlink()
                ctx.log(f"backup direct pg_dump: {direct[-1]:.2f} s, {sizes['direct'] / 1e6:.0f} MB")
    return {"ours_total": ours_total, "ours_verify": ours_verify, "direct": direct, "sizes": sizes, "file": keep,
            "pg_dump": pg_dump.version}


def _remove_backup(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
        backup_module.manifest_path(path).unlink(missing_ok=True)


# ---- restore ----------------------------------------------------------------------------


def _restores(ctx: Context, db: DatabaseManager, target: pgtools.PgTarget, work: Path, file: Path,
              reps: int) -> dict[str, Any]:
    manifest = backup_module.read_manifest(file)
    pg_restore = pgtools.pick_tool("pg_restore", pgtools.major_of(manifest.pg_dump_version))
    listing = pgtools.run_tool(pg_restore, ["--list", str(file)])
    with target.connect(purpose="bench") as conn:
        toc, _ = pgtools.filter_toc(listing, pgtools.target_objects(conn))
    list_file = work / "restore.list"
    list_file.write_text(toc)
    common = [str(pg_restore.path), f"--dbname={target.conninfo}", f"--use-list={list_file}"]
    single = [*common, *RESTORE_OPTIONS, str(file)]
    parallel = [*common, *[o for o in RESTORE_OPTIONS if o != "--single-transaction"], f"--jobs={PARALLEL_JOBS}",
                str(file)]
    out: dict[str, list[float]] = {k: [] for k in ("ours_load", "ours_total", "ours_check_file", "ours_row_counts",
                                                   "ours_pre_backup", "direct", "parallel")}
    for rep in range(reps):
        for which in (("ours", "direct", "parallel") if rep % 2 == 0 else ("parallel", "direct", "ours")):
            if which == "ours":
                patches = [(catalog_module, "check_file", "check_file"),  # called on restore's private copy
                           (restore_module, "backup_locked", "pre_backup"),
                           (pgtools, "table_row_counts", "row_counts")]
                with _phases(patches) as phases:
                    start = time.perf_counter()
                    result = restore_module.restore(db, PROVIDER, file, yes=True, backup_dir=work / "pre-restore")
                    total = time.perf_counter() - start
                if not result.ok:
                    raise RuntimeError(f"our restore reported {result.status}: {result.mismatches}")
                _remove_backup(result.pre_restore_backup)
                out["ours_total"].append(total)
                out["ours_load"].append(result.restore_s or float("nan"))
                out["ours_check_file"].append(phases.get("check_file", 0.0))
                out["ours_row_counts"].append(phases.get("row_counts", 0.0))
                out["ours_pre_backup"].append(phases.get("pre_backup", 0.0))
                ctx.log(f"restore ours: load {out['ours_load'][-1]:.2f} s, total {total:.2f} s (checks "
                        f"{out['ours_check_file'][-1]:.2f} s + row counts {out['ours_row_counts'][-1]:.2f} s, "
                        f"pre-restore backup {out['ours_pre_backup'][-1]:.2f} s)")
            else:
                seconds = _direct(single if which == "direct" else parallel, target.password)
                out[which].append(seconds)
                ctx.log(f"restore {which} pg_restore: {seconds:.2f} s")
            _settle(target)
    out["pg_restore"] = pg_restore.version  # type: ignore[assignment]
    return out


def _settle(target: pgtools.PgTarget) -> None:
    """Vacuum and analyze the freshly restored tables (untimed), so autovacuum does not run into the next restore."""
    with target.connect(purpose="bench") as conn:
        conn.execute("VACUUM ANALYZE")


# ---- entries ----------------------------------------------------------------------------


def _entries(size: int, b: dict[str, Any], r: dict[str, Any]) -> list[Entry]:
    # The fastest of the repetitions: on a shared machine noise only ever adds time.
    ours_dump = [t - v for t, v in zip(b["ours_total"], b["ours_verify"], strict=True)]
    dump, load, direct = min(ours_dump), min(r["ours_load"]), min(r["direct"])
    direct_dump = f"pg_dump {b['pg_dump']} -Fc run directly, same options"
    direct_restore = f"pg_restore {r['pg_restore']} run directly, same options and table of contents"
    facts = {"database_bytes": size, "archive_bytes": b["sizes"], "statistic": "fastest of the repetitions"}
    verification = [c + n for c, n in zip(r["ours_check_file"], r["ours_row_counts"], strict=True)]
    return [
        Entry("backup.custom.dump", "s (min)", dump, min(b["direct"]), direct_dump,
              "ours <= 1.05 x direct (verification excluded)", dump <= 1.05 * min(b["direct"]),
              details={**facts, "ours_s": _r(ours_dump), "direct_s": _r(b["direct"]),
                       "median_ratio": round(median(ours_dump) / median(b["direct"]), 3)}),
        Entry("backup.custom.verification", "s (min)", min(b["ours_verify"]), min(b["direct"]),
              f"{direct_dump} (the share of a dump that verification adds)",
              "informational (sha256 + pg_restore --list)",
              None, details={"ours_s": _r(b["ours_verify"])}),
        Entry("backup.custom.total", "s (min)", min(b["ours_total"]), min(b["direct"]), direct_dump,
              "informational (dump + snapshot row counts + verification)", None,
              details={"ours_s": _r(b["ours_total"])}),
        Entry("restore.custom.load", "s (min)", load, direct, direct_restore,
              "ours <= 1.05 x direct (checks and pre-restore backup excluded)", load <= 1.05 * direct,
              details={**facts, "ours_s": _r(r["ours_load"]), "direct_s": _r(r["direct"]),
                       "median_ratio": round(median(r["ours_load"]) / median(r["direct"]), 3)}),
        Entry("restore.custom.verification", "s (min)", min(verification), direct,
              f"{direct_restore} (the share of a restore that verification adds)",
              "informational (sha256 + pg_restore --list before; row counts before and after)", None,
              details={"check_file_s": _r(r["ours_check_file"]), "row_counts_s": _r(r["ours_row_counts"])}),
        Entry("restore.custom.rto_total", "s (min)", min(r["ours_total"]), direct, direct_restore,
              "informational (checks + pre-restore backup + load + row counts)", None,
              details={"ours_s": _r(r["ours_total"]), "pre_restore_backup_s": _r(r["ours_pre_backup"])}),
        Entry("restore.custom.load_vs_parallel", "s (min)", load, min(r["parallel"]),
              f"pg_restore -j {PARALLEL_JOBS} run directly (no --single-transaction: -j cannot use one)",
              "informational (ours keeps one transaction, so it cannot use -j)", None,
              details={"parallel_s": _r(r["parallel"])}),
    ]


def _r(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]
