"""agent_factory.automation without Ansible: module_config and result conversion (the spec: tests/ansible)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from agent_factory.automation import (
    module_config,
    open_manager,
    provider_env,
    to_jsonable,
    to_result,
)
from agent_factory.cli import output
from agent_factory.errors import ConfigError

URL = "postgresql://agent:s3cret-pw@127.0.0.1:5999/agent_factory"


@dataclass
class FakeModule:
    """What automation needs of an AnsibleModule: params and no_log_values."""

    params: dict[str, Any]
    no_log_values: set[str] = field(default_factory=set)


@pytest.fixture(autouse=True)
def _keep_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(os.getcwd())  # module_config changes directory; restore it after each test
    for key in list(os.environ):
        if key.endswith("_DB_URL") or key.startswith("DATABASE_"):
            monkeypatch.delenv(key)


def test_module_config_chdirs_loads_env_file_and_hides_passwords(tmp_path: Path):
    (tmp_path / ".env").write_text(f"NEON_DB_URL={URL}\nSUPABASE_DB_URL=host=127.0.0.1 user=a password=pw2\n")
    module = FakeModule({"project_dir": str(tmp_path), "env_file": ".env", "provider_urls": None})
    config = module_config(module)
    assert Path.cwd() == tmp_path
    assert list(config.providers) == ["neon", "supabase"]
    assert {"s3cret-pw", "pw2"} <= module.no_log_values


def test_provider_urls_win_over_env_file(tmp_path: Path):
    (tmp_path / ".env").write_text("NEON_DB_URL=postgresql://a:old@127.0.0.1:1/x\n")
    module = FakeModule({"project_dir": str(tmp_path), "env_file": ".env", "provider_urls": {"neon": URL}})
    config = module_config(module)
    assert config.providers["neon"].url == URL
    assert "s3cret-pw" in module.no_log_values


def test_provider_urls_alone_need_no_env_file(tmp_path: Path):
    module = FakeModule({"project_dir": str(tmp_path), "env_file": ".env", "provider_urls": {"neon": URL}})
    assert list(module_config(module).providers) == ["neon"]


@pytest.mark.parametrize("params, message", [
    ({"project_dir": "/nonexistent/dir"}, "project_dir /nonexistent/dir is not a directory"),
    ({"env_file": "missing.env"}, "missing.env does not exist"),
    ({"provider_urls": {"Neon!": URL}}, "not a provider name"),
    ({"provider_urls": {"neon": 5}}, "must be a postgresql:// URL string"),
    ({"provider_urls": {"elsewhere": URL}}, "not in DATABASE_FAILOVER_ORDER"),
])
def test_module_config_bad_input_names_the_problem(tmp_path: Path, params: dict[str, Any], message: str):
    (tmp_path / ".env").write_text(f"NEON_DB_URL={URL}\n")
    module = FakeModule({"project_dir": str(tmp_path), "env_file": ".env", "provider_urls": None, **params})
    with pytest.raises(ConfigError, match=message) as info:
        module_config(module)
    assert "s3cret-pw" not in str(info.value)


def test_broken_env_file_is_a_config_error_naming_the_variable(tmp_path: Path):
    (tmp_path / ".env").write_text("NEON_DB_URL=mysql://u:p@h/x\n")
    with pytest.raises(ConfigError, match="NEON_DB_URL must start with postgresql://"):
        module_config(FakeModule({"project_dir": str(tmp_path), "env_file": ".env", "provider_urls": None}))


def test_open_manager_closes_the_manager(tmp_path: Path):
    (tmp_path / ".env").write_text(f"NEON_DB_URL={URL}\n")
    with open_manager(FakeModule({"project_dir": str(tmp_path), "env_file": ".env", "provider_urls": None})) as db:
        assert db.primary_provider == "neon"
    assert db._closed.is_set()


@dataclass
class Thing:
    path: Path
    at: datetime
    hidden: str = field(default="x", repr=False)

    @property
    def ok(self) -> bool:
        return True


def test_to_jsonable_is_what_the_cli_uses_and_to_result_adds_properties_and_absolute_paths(tmp_path: Path):
    assert output.to_jsonable is to_jsonable
    thing = Thing(Path("rel/file"), datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert to_jsonable(thing) == {"path": "rel/file", "at": "2026-01-02T00:00:00+00:00"}
    result = to_result([thing])
    assert result == [{"path": str(Path("rel/file").absolute()), "at": "2026-01-02T00:00:00+00:00", "ok": True}]


def test_provider_env():
    assert provider_env({"neon": URL}) == {"NEON_DB_URL": URL}
    assert provider_env(None) == {}
