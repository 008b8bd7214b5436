"""Run the status page in a real Streamlit server on a free loopback port (tests and bench)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "status_app" / "app.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def streamlit_command(port: int, app: Path = APP) -> list[str]:
    """`python -m streamlit run` as `agent-factory status-page` runs it."""
    return [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
            "--server.address", "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none",
            "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "viewer", "--client.showErrorDetails", "type"]


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until `<url>/_stcore/health` answers "ok"; raise with the server's output if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the status page exited with {proc.returncode}: {_output(proc)}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read().decode() == "ok":
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the status page did not answer within {timeout} s")


def _output(proc: subprocess.Popen[bytes]) -> str:
    return proc.stdout.read().decode(errors="replace")[-2000:] if proc.stdout else ""


@contextmanager
def serve(state_dir: Path, cwd: Path, command: Sequence[str] | None = None,
          env: dict[str, str] | None = None) -> Iterator[str]:
    """Serve the page on the state store at `state_dir` (run from `cwd`, so no .env applies); yield its URL."""
    port = free_port()
    run_env = {**os.environ, "AGENT_FACTORY_STATE_DIR": str(state_dir), **(env or {})}
    run_env.pop("PYTHONPATH", None)  # the page must import status_app as installed, not from the checkout
    proc = subprocess.Popen(list(command or streamlit_command(port)) if command is None else
                            [c.replace("{port}", str(port)) for c in command],
                            cwd=cwd, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def chromium_path() -> str | None:
    """The system Chromium (Debian package `chromium`), or None."""
    return shutil.which("chromium")
