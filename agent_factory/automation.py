"""Glue the Ansible modules in `library/` need from the package: their configuration, a manager, JSON results.

The modules stay thin (parse options, call one `agent_factory.ops` function,
return its result). What they share that must work without this package (the
common options, the import guard, the error boundary) lives in
`module_utils/agent_factory_module.py`, which Ansible ships with each module;
that file re-exports what is here. This module never imports Ansible: `module`
is anything with `params` (a dict) and `no_log_values` (a set), as an
`AnsibleModule` has.

- `module_config(module)`: chdir to `project_dir`, load the configuration from
  `env_file` with `provider_urls` over it, and add every provider password to
  `module.no_log_values` so Ansible masks it in all output, even in messages.
- `open_manager(module)`: the same, as a `DatabaseManager` closed on exit.
- `to_jsonable` (the CLI's `--json` too) and `to_result` (module results: the
  properties `asdict` drops, absolute paths).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Protocol


from .config import Config, load_config, read_env
from .core import DatabaseManager
from .errors import ConfigError
from .redact import url_password

__all__ = ["RESULT_PROPERTIES", "module_config", "open_manager", "provider_env", "to_jsonable", "to_result"]

_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
# Properties of result dataclasses that modules return beside the fields.
RESULT_PROPERTIES = ("ok", "state", "drifted")


class ModuleLike(Protocol):
    """What this module needs of an `AnsibleModule`."""

    params: dict[str, Any]
    no_log_values: set[str]


def provider_env(provider_urls: Mapping[str, str] | None) -> dict[str, str]:
    """Return `{NAME_DB_URL: url}` for `provider_urls` (`{name: url}`).

    Raises `ConfigError` naming a key that is not a provider name or a value that is not a string.
    """
    env = {}
    for name, url in (provider_urls or {}).items():
        if not isinstance(name, str) or not _PROVIDER_NAME.match(name):
            raise ConfigError(f"provider_urls key {name!r} is not a provider name (lowercase, e.g. neon)")
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(f"provider_urls[{name}] must be a postgresql:// URL string")
        env[f"{name.upper()}_DB_URL"] = url
    return env


def module_config(module: ModuleLike) -> Config:
    """Chdir to `project_dir`, load the configuration and hide every provider password from Ansible's output.

    `provider_urls` wins over the environment, which wins over `env_file`
    (relative to `project_dir`). Raises `ConfigError` naming the problem: a
    missing `project_dir`, a missing `env_file` without `provider_urls`, an
    unreadable `env_file`, a provider URL outside DATABASE_FAILOVER_ORDER, or
    anything `load_config` refuses.
    """
    project = Path(module.params["project_dir"])
    if not project.is_dir():
        raise ConfigError(f"project_dir {project} is not a directory")
    os.chdir(project)
    env_file = Path(module.params.get("env_file") or ".env")
    urls = module.params.get("provider_urls") or {}
    for url in urls.values():  # before anything can fail with it in a message
        if isinstance(url, str):
            _hide_password(module, url)
    overrides = provider_env(urls)
    if not env_file.is_file() and not overrides:
        raise ConfigError(f"env file {env_file.absolute()} does not exist; run `agent-factory local up`, "
                          "copy .env.example, or give provider_urls")
    try:
        values = read_env({**os.environ, **overrides}, env_file if env_file.is_file() else None)
    except OSError as exc:
        raise ConfigError(f"cannot read env file {env_file.absolute()}: {exc.strerror}") from None
    for key, url in values.items():
        if key.endswith(("_DB_URL", "_DIRECT_URL", "_ADMIN_URL")) and url.strip():
            _hide_password(module, url)
    config = load_config(values, env_file=None)
    for name in urls:
        if name not in config.providers:
            raise ConfigError(f"provider_urls names {name}, which is not in DATABASE_FAILOVER_ORDER "
                              f"({', '.join(config.failover_order)}); add it there")
    for provider in config.providers.values():
        if provider.password:
            module.no_log_values.add(provider.password)
    for signing_key in (config.backup_signing_key, *config.backup_signing_previous):
        if signing_key:
            module.no_log_values.add(signing_key)
    return config


def _hide_password(module: ModuleLike, url: str) -> None:
    try:
        password = url_password(url)
    except Exception:  # a malformed URL: load_config names it; the raw value is hidden instead
        module.no_log_values.add(url)
        return
    if password:
        module.no_log_values.add(password)


@contextmanager
def open_manager(module: ModuleLike) -> Iterator[DatabaseManager]:
    """Yield a `DatabaseManager` on `module_config(module)`, closed on exit."""
    with DatabaseManager(module_config(module)) as db:
        yield db


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, paths, datetimes and enums into JSON-ready values."""
    return _convert(value, (), absolute=False)


def to_result(value: Any) -> Any:
    """Convert like `to_jsonable`, adding `RESULT_PROPERTIES` of dataclasses and making paths absolute."""
    return _convert(value, RESULT_PROPERTIES, absolute=True)


def _convert(value: Any, properties: tuple[str, ...], absolute: bool) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: _convert(getattr(value, f.name), properties, absolute)
                for f in dataclasses.fields(value) if f.repr}
        for name in properties:
            if isinstance(getattr(type(value), name, None), property):
                data[name] = _convert(getattr(value, name), properties, absolute)
        return data
    if isinstance(value, dict):
        return {str(k): _convert(v, properties, absolute) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_convert(v, properties, absolute) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value.absolute() if absolute else value)
    if isinstance(value, Enum):
        return value.value
    return value
