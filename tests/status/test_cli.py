"""`agent-factory status-page`: a real server from the CLI, argument errors, and the hint when Streamlit is missing."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from agent_factory.cli import main
from agent_factory.cli.status_page import INSTALL_HINT, PAGE_VARIABLES, page_environment, streamlit_command
from agent_factory.errors import ConfigError

from .seed import Seed, seed
from .server import serve

CLI = shutil.which("agent-factory", path=str(Path(sys.executable).parent))


def test_status_page_serves_the_app_from_the_installed_package(tmp_path, now):
    seed(tmp_path / "state", Seed(now=now))
    command = [CLI or "agent-factory", "status-page", "--port", "{port}", "--state-dir", str(tmp_path / "state")]
    with serve(tmp_path / "elsewhere-not-used", tmp_path, command=command) as url:
        with urllib.request.urlopen(url, timeout=10) as answer:
            html = answer.read().decode()
    assert answer.status == 200 and "<html" in html


def test_serve_freezes_what_the_imports_loaded_before_the_server_starts():
    """`status_app.serve.prepare` keeps the imports' objects out of Streamlit's full collection after each run."""
    code = ("import gc, status_app.serve as serve; before = gc.get_freeze_count(); serve.prepare(); "
            "print(before, gc.get_freeze_count())")
    before, after = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            check=True, timeout=120).stdout.split())
    assert before == 0 and after > 50_000  # pandas, altair and Streamlit: ~140,000 objects


def test_the_command_is_headless_local_and_quiet():
    command = streamlit_command(8600, "127.0.0.1")
    assert command[:4] == [sys.executable, "-m", "status_app.serve", "run"]  # streamlit's CLI, imports done first
    assert Path(command[4]).name == "app.py" and Path(command[4]).parent.name == "status_app"
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options == {"--server.headless": "true", "--server.address": "127.0.0.1", "--server.port": "8600",
                       "--server.fileWatcherType": "none", "--browser.gatherUsageStats": "false",
                       "--client.toolbarMode": "viewer",
                       "--client.showErrorDetails": "type"}
    config = (Path(command[4]).parent / ".streamlit" / "config.toml").read_text()
    for line in ('headless = true', 'address = "127.0.0.1"', 'fileWatcherType = "none"', 'gatherUsageStats = false',
                 'toolbarMode = "viewer"', 'showErrorDetails = "type"'):
        assert line in config


def test_a_missing_state_dir_and_a_bad_port_are_named(tmp_path, capsys):
    assert main(["status-page", "--state-dir", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip() == f"configuration error: --state-dir {tmp_path / 'none'} is not a directory"
    with pytest.raises(SystemExit) as exit_info:
        main(["status-page", "--port", "99999"])
    assert exit_info.value.code == 2 and "'99999' is not a port number" in capsys.readouterr().err


def test_without_streamlit_it_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'agent-factory\[status\]'"):
        streamlit_command(8501, "127.0.0.1")
    assert "status" in INSTALL_HINT


def test_the_library_never_imports_streamlit():
    code = ("import sys, agent_factory, agent_factory.cli, agent_factory.ops.monitor, agent_factory.state;"
            "agent_factory.cli.build_parser(); print('streamlit' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


PAGE_SECRETS = {"TELEGRAM_BOT_TOKEN": "42:tg-Secret-Token", "TELEGRAM_CHAT_ID": "chat-4711",
                "SMTP_PASSWORD": "smtp-Secret-Pw", "PAGERDUTY_ROUTING_KEY": "pd-Secret-Key",
                "BACKUP_SIGNING_KEY": "sign-Secret-Key", "NEON_DB_URL": "postgresql://app:neon-Secret-Pw@h/app",
                "SUPABASE_DIRECT_URL": "postgresql://app:supa-Secret-Pw@h/app", "SOME_API_KEY": "other-Secret"}


def _environ_of_server_on(port: int) -> dict[str, str]:
    """The process environment of the page server listening on `port` (found by its command line)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"--server.port" in cmdline and cmdline[cmdline.index(b"--server.port") + 1] == str(port).encode():
                pairs = (proc / "environ").read_bytes().split(b"\0")
                return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)
        except (OSError, IndexError):
            continue
    raise AssertionError(f"no page server on port {port}")


def test_the_page_process_holds_no_secret_in_its_environment(tmp_path, now):
    seed(tmp_path / "state", Seed(now=now))
    command = [CLI or "agent-factory", "status-page", "--port", "{port}", "--state-dir", str(tmp_path / "state")]
    with serve(tmp_path / "elsewhere-not-used", tmp_path, command=command,
               env={**PAGE_SECRETS, "MONITOR_RETENTION_DAYS": "7"}) as url:
        environ = _environ_of_server_on(int(url.rsplit(":", 1)[1]))
    assert environ["MONITOR_RETENTION_DAYS"] == "7" and environ["AGENT_FACTORY_STATE_DIR"] == str(tmp_path / "state")
    assert "PATH" in environ
    dump = "\n".join(f"{k}={v}" for k, v in environ.items())
    for name, secret in PAGE_SECRETS.items():
        assert name not in environ and secret not in dump


def test_the_page_environment_lets_through_every_setting_the_page_reads():
    source = (Path(__file__).resolve().parents[2] / "status_app" / "data.py").read_text()
    read = set(re.findall(r"\"((?:AGENT_FACTORY|MONITOR|SYNC)_[A-Z_]+)\"", source))
    assert read and read <= PAGE_VARIABLES
    assert page_environment({"PATH": "/bin", "LC_ALL": "C", "TELEGRAM_BOT_TOKEN": "x", "NEON_DB_URL": "y"}) == \
        {"PATH": "/bin", "LC_ALL": "C"}


def test_the_service_unit_sets_no_environment():
    unit = (Path(__file__).resolve().parents[2] / "roles" / "status_page" / "templates" /
            "status_page.service.j2").read_text()
    assert "Environment" not in unit, "systemd starts the page with a clean environment; keep it so"
