"""Switch the primary provider: the runbook's procedure 2, as one checked step.

`switch_primary` runs a forced health check of the new primary (unless told
not to), then rewrites `DATABASE_PROVIDER=` in the env file atomically (temp
file, rename), mode 0600, keeping every other line. The next process that
loads the configuration uses the new primary; a running application must be
restarted (runbook step 3). Check mode does the same checks and writes nothing.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from ..config import load_config
from ..core import DatabaseManager
from ..envfile import write_private
from ..errors import ConfigError, ProviderUnavailableError

logger = logging.getLogger(__name__)

VARIABLE = "DATABASE_PROVIDER"


@dataclass
class PrimarySwitchResult:
    """The outcome (or, in check mode, the plan) of switching the primary provider."""

    previous: str
    current: str
    changed: bool
    healthy: bool | None  # None: the health check was skipped
    env_file: Path
    check: bool = False

    @property
    def line_before(self) -> str:
        """The env file's line before the switch."""
        return f"{VARIABLE}={self.previous}\n"

    @property
    def line_after(self) -> str:
        """The env file's line after the switch (or, in check mode, as it would be)."""
        return f"{VARIABLE}={self.current}\n"


def switch_primary(
    env_file: str | Path,
    provider: str,
    *,
    check: bool,
    require_healthy: bool = True,
    env: Mapping[str, str] | None = None,
) -> PrimarySwitchResult:
    """Make `provider` the primary in `env_file`, after a forced health check of it.

    `env` (default `os.environ`) is layered over `env_file` to find the providers,
    as `load_config` does. Raises `ConfigError` when the file does not exist, the
    provider is not configured, or DATABASE_PROVIDER is set in `env` (it would
    override the file); `ProviderUnavailableError` when `require_healthy` and the
    provider fails its health check (within DATABASE_CONNECT_TIMEOUT). Nothing is
    written when it raises or with `check=True`.
    """
    path = Path(env_file)
    if not path.is_file():
        raise ConfigError(f"env file {path.absolute()} does not exist; the primary is set there ({VARIABLE}=)")
    environment = os.environ if env is None else env
    if (environment.get(VARIABLE) or "").strip():
        raise ConfigError(f"{VARIABLE} is set in the environment, which overrides {path}; unset it first")
    config = load_config(environment, path)
    name = provider.strip().lower()
    config.provider(name)  # raises ConfigError naming the configured providers
    previous = config.primary
    healthy: bool | None = None
    if require_healthy:
        with DatabaseManager(config) as db:
            health = db.health_details(force=True)[name]
        healthy = health.healthy
        if not healthy:
            raise ProviderUnavailableError(
                name, f"{health.error or 'health check failed'}; not switching the primary to it "
                      f"({previous} stays primary)")
    result = PrimarySwitchResult(previous, name, previous != name, healthy, path.absolute(), check)
    if result.changed and not check:
        _set_variable(path, name)
        logger.info("primary provider switched from %s to %s in %s", previous, name, path)
    return result


def _set_variable(path: Path, value: str) -> None:
    """Set DATABASE_PROVIDER in a dotenv file, keeping everything else byte for byte; atomic, mode 0600.

    The file is read with python-dotenv's own parser (the one `load_config`
    uses), so a `DATABASE_PROVIDER=` line inside a multi-line quoted value is
    part of that value and left alone. Raises `ConfigError`, writing nothing,
    if the result would not read back as every old value with `value` for DATABASE_PROVIDER.
    """
    text = path.read_text()
    out, done = [], False
    for binding in parse_stream(io.StringIO(text)):
        if binding.key == VARIABLE and not binding.error:
            if not done:
                out.append(f"{VARIABLE}={value}\n")
                done = True
            continue  # a repeated assignment would override ours
        out.append(binding.original.string)
    if not done:
        out.append(("\n" if out and not out[-1].endswith("\n") else "") + f"{VARIABLE}={value}\n")
    new = "".join(out)
    before = dotenv_values(stream=io.StringIO(text), interpolate=False)
    after = dotenv_values(stream=io.StringIO(new), interpolate=False)
    before[VARIABLE] = value
    if after != before:
        raise ConfigError(f"cannot set {VARIABLE} in {path} safely (its quoting is ambiguous); edit it by hand, "
                          "nothing was changed")
    write_private(path, new)
