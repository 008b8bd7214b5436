"""What every benchmark shares: result entries, statistics, the run context and the machine description.

A benchmark module exposes `run(ctx: Context) -> list[Entry]`. Only ratios
measured in the same run count: every entry carries its own baseline, measured
by the same process on the same providers, interleaved where the benchmark
allows it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from agent_factory.config import Config, load_config
from agent_factory.core import DatabaseManager
from agent_factory.local import LocalProviders, find_installs
from agent_factory.schema import apply_schema

REQUIRED_KEYS = ("name", "unit", "ours", "baseline", "baseline_name", "ratio", "target", "meets_target")


@dataclass
class Entry:
    """One measured figure beside its baseline; `ratio = ours / baseline` (lower is better)."""

    name: str
    unit: str
    ours: float | None
    baseline: float | None
    baseline_name: str
    target: str
    meets_target: bool | None
    ratio: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and self.ours is not None and self.baseline not in (None, 0):
            self.ratio = self.ours / self.baseline  # type: ignore[operator]

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["skipped"] is None:
            del data["skipped"]
        if not data["details"]:
            del data["details"]
        return data


def skipped(name: str, unit: str, baseline_name: str, target: str, reason: str) -> Entry:
    """Return an explicit entry for a comparison that could not run here (no numbers, no verdict)."""
    return Entry(name, unit, None, None, baseline_name, target, None, skipped=f"skipped: {reason}")


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Context:
    """Everything a benchmark needs: the running providers, their environment and the run's size."""

    local: LocalProviders
    workdir: Path
    quick: bool
    log: Callable[[str], None]
    env: dict[str, str] = field(default_factory=dict)
    no_peer: bool = False

    def __post_init__(self) -> None:
        self.env.setdefault("BACKUP_SIGNING_KEY", secrets.token_hex(32))  # backups refuse to run unsigned

    def config(self, **overrides: str) -> Config:
        """Return a library `Config` for the local providers, with a fresh state dir, plus overrides."""
        state = self.workdir / "state" / f"{time.monotonic_ns()}"
        values = {**self.env, "AGENT_FACTORY_STATE_DIR": str(state), **overrides}
        return load_config(env=values, env_file=None)

    def ensure_running(self) -> None:
        """Start any provider a benchmark killed."""
        for name in self.local.providers():
            if self.local.pid(name) is None:
                self.local.start(name)


@contextlib.contextmanager
def local_providers(workdir: Path, durable: bool) -> Iterator[LocalProviders]:
    """Start neon, supabase and railway under `workdir`, apply the schema to each, stop them on exit."""
    local = LocalProviders(workdir / "providers", durable=durable)
    try:
        local.up()
        values = {**local.env(), "AGENT_FACTORY_STATE_DIR": str(workdir / "state" / "setup")}
        with DatabaseManager(load_config(env=values, env_file=None)) as db:
            for name in db.providers:
                with db.provider_connection(name) as conn:
                    apply_schema(conn, name)
        yield local
    finally:
        local.down()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run `fn` and return (seconds, result)."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def machine(local: LocalProviders | None, durable: bool) -> dict[str, Any]:
    """Describe this machine: CPU, memory, OS, Python and library versions, PostgreSQL servers and tools."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "psycopg": psycopg.__version__,
        "durable_providers": durable,
        "pg_installs": [f"{i.major} ({i.version or i.bindir})" for i in find_installs()],
    }
    try:
        import psycopg_pool

        info["psycopg_pool"] = psycopg_pool.__version__
    except (ImportError, AttributeError):
        pass
    try:
        import langchain_postgres  # noqa: F401
        from importlib.metadata import version

        info["langchain_postgres"] = version("langchain-postgres")
    except ImportError:
        info["langchain_postgres"] = None
    if local is not None:
        servers = {}
        for name in local.providers():
            try:
                with psycopg.connect(local.url(name), connect_timeout=5) as conn:
                    servers[name] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            except psycopg.Error as exc:
                servers[name] = f"unreachable: {type(exc).__name__}"
        info["postgres_servers"] = servers
    info["git_commit"] = _git_commit()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_results(path: Path, machine_info: dict[str, Any], entries: list[Entry], *, quick: bool,
                  seconds: float, errors: list[str]) -> None:
    """Write the results file atomically: machine description, run facts and every entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": machine_info,
        "run": {"quick": quick, "seconds": round(seconds, 1),
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "errors": errors},
        "entries": [e.as_json() for e in entries],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def format_table(entries: list[Entry]) -> str:
    """Return the results as a Markdown table (the same text goes to the terminal and to docs)."""
    rows = [("benchmark", "unit", "ours", "baseline", "ratio", "target", "met", "baseline is")]
    for e in entries:
        if e.skipped:
            rows.append((e.name, e.unit, "-", "-", "-", e.target, e.skipped, e.baseline_name))
            continue
        met = "yes" if e.meets_target else ("NO" if e.meets_target is False else "n/a")
        rows.append((e.name, e.unit, _num(e.ours), _num(e.baseline), _num(e.ratio, ratio=True), e.target, met,
                     e.baseline_name))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _num(value: float | None, ratio: bool = False) -> str:
    if value is None or value != value:
        return "-"
    if ratio:
        return f"{value:.3f}"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"
