"""`agent-factory status-page`: run the Streamlit status page (needs the `status` extra).

The page reads the state store only (no database, no provider URL), so it
runs wherever `AGENT_FACTORY_STATE_DIR` is readable, with an environment
holding none of the alert, backup or database secrets (`page_environment`).
It has no login: it listens on 127.0.0.1 unless `--address` says otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError
from .output import EXIT_FAILED, Outcome, progress

INSTALL_HINT = "the status page needs the `status` extra: pip install 'agent-factory[status]'"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "status-page", help="serve the status page (Streamlit) from the state store; localhost by default",
        description="Serve the read-only status page: health, uptime, latency, backups/RPO, sync lag, restores "
                    "and the incident timeline, from the state store. No login: keep the default address "
                    "127.0.0.1 unless a proxy with authentication is in front.")
    parser.add_argument("--port", type=_port, default=8501, help="TCP port (default 8501)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--state-dir", help="the state store's directory (default: AGENT_FACTORY_STATE_DIR or ./var)")
    parser.set_defaults(handler=_status_page)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def streamlit_command(port: int, address: str) -> list[str]:
    """Return the command that serves the page; raises `ConfigError` when Streamlit is not installed."""
    app = importlib.util.find_spec("status_app")
    if importlib.util.find_spec("streamlit") is None or app is None or app.origin is None:
        raise ConfigError(INSTALL_HINT)
    # `status_app.serve` is `python -m streamlit` with the page's imports done before the first visitor.
    # No file watcher: a served page does not rerun when its source changes, and Streamlit's watcher walks every
    # imported module after each script run (0.1-0.5 s of server CPU on the first visit, docs/BENCHMARKS.md).
    return [sys.executable, "-m", "status_app.serve", "run", str(Path(app.origin).parent / "app.py"),
            "--server.headless", "true", "--server.address", address, "--server.port", str(port),
            "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "viewer", "--client.showErrorDetails", "type"]


# The page reads only the state store and these settings (status_app.data.page_settings); the server
# process gets them and what a Python program needs to run, never a token, password, key or provider URL.
PAGE_VARIABLES = frozenset({"AGENT_FACTORY_STATE_DIR", "MONITOR_BACKUP_MAX_AGE_HOURS", "MONITOR_RETENTION_DAYS",
                            "SYNC_MAX_LAG_MINUTES"})
_SYSTEM_VARIABLES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
                               "TERM", "VIRTUAL_ENV", "SYSTEMD_EXEC_PID", "INVOCATION_ID"})
_SYSTEM_PREFIXES = ("LC_", "PYTHON", "STREAMLIT_", "XDG_")


def page_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Return the part of `environ` the page's server may see: its settings and the system's basics.

    Everything else (TELEGRAM_*, SMTP_*, PAGERDUTY_*, BACKUP_SIGNING_KEY, *_DB_URL and any other secret) stays
    out of its process environment; the page needs none of it.
    """
    return {k: v for k, v in environ.items()
            if k in PAGE_VARIABLES or k in _SYSTEM_VARIABLES or k.startswith(_SYSTEM_PREFIXES)}


def _status_page(args: argparse.Namespace) -> Outcome:
    command = streamlit_command(args.port, args.address)
    env = page_environment(os.environ)
    if args.state_dir:
        state_dir = Path(args.state_dir).absolute()
        if not state_dir.is_dir():
            raise ConfigError(f"--state-dir {state_dir} is not a directory")
        env["AGENT_FACTORY_STATE_DIR"] = str(state_dir)
    progress(f"status page on http://{args.address}:{args.port} (Ctrl-C stops it)")
    sys.stdout.flush()
    # Become the Streamlit server: signals (Ctrl-C, a service manager's SIGTERM) reach it directly, and no
    # orphan is left behind when this process is stopped.
    os.execve(command[0], command, env)
    return Outcome(EXIT_FAILED, "unreachable")  # pragma: no cover
