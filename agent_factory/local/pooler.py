"""A real PgBouncer in transaction mode in front of one local provider, as Neon's `-pooler` endpoint is.

`agent-factory local up --pooler` starts it in front of neon; the provider's
variables then say what a pooled production provider says:
`NEON_DB_URL` -> the pooler, `NEON_DIRECT_URL` -> the server,
`NEON_PREPARED_STATEMENTS=false` and `NEON_POOLER=transaction`.

- PgBouncer (Debian's `pgbouncer`, found on PATH or in /usr/sbin) refuses to
  run as root; like the servers it runs as the unprivileged service user.
- Clients authenticate against an `auth_file` written mode 0600 (the
  application role and its password) and PgBouncer logs in to the server with
  SCRAM using it.
- Its files live in `<base>/pgbouncer/`: `pgbouncer.ini`, `userlist.txt`,
  `pooler.json` (provider and port), `pgbouncer.log`, `pgbouncer.pid`.
- A server that stops answering logins makes PgBouncer answer
  `08P01 server login has been failing`, which the library treats as the
  provider being down; `server_login_retry` is short (5 s) so the pooler
  notices the server's return quickly, and `query_wait_timeout` (5 s)
  bounds a query waiting for a server connection (PgBouncer waits
  `query_wait_timeout` before telling a client already waiting that the server is
  gone: behind a pooler that bound, not DATABASE_DEAD_PEER_TIMEOUT, limits that wait).
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from ..errors import LocalProviderError
from .cluster import (APP_DB, APP_USER, LocalProviders, _alive, _free_port, _make_traversable, _service_user, _url,
                      wait_for_port)

logger = logging.getLogger(__name__)

NAME = "pgbouncer"
_SEARCH = ("/usr/sbin", "/usr/local/sbin", "/usr/bin")


def find_pgbouncer() -> Path:
    """Return the pgbouncer executable; raise `LocalProviderError` saying how to install it."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path=os.pathsep.join(_SEARCH))
    if not found:
        raise LocalProviderError("pgbouncer not found; install it (Debian/Ubuntu: apt-get install pgbouncer)")
    return Path(found)


class LocalPooler:
    """PgBouncer (transaction mode) in front of the local provider `provider`, files under `home`."""

    def __init__(self, providers: LocalProviders, home: str | Path | None = None) -> None:
        self.providers = providers
        self.home = Path(home).absolute() if home is not None else providers.base_dir / NAME
        self._state = self.home / "pooler.json"

    @property
    def exists(self) -> bool:
        """Whether the pooler was created (by `create`)."""
        return self._state.is_file()

    def _info(self) -> dict[str, object]:
        if not self.exists:
            raise LocalProviderError("no local pooler; run `agent-factory local up --pooler`")
        return dict(json.loads(self._state.read_text()))

    @property
    def provider(self) -> str:
        """Return the name of the provider behind the pooler."""
        return str(self._info()["provider"])

    @property
    def port(self) -> int:
        """Return the port the pooler listens on (127.0.0.1)."""
        return int(str(self._info()["port"]))

    def create(self, provider: str = "neon") -> None:
        """Write the pooler's configuration in front of `provider` (once; a second call keeps the first)."""
        if self.exists:
            return
        server = self.providers.get(provider)
        self.home.mkdir(parents=True, exist_ok=True)
        user = _service_user()
        os.chmod(self.home, 0o700)
        port = _free_port()
        log, pidfile, auth = self.home / "pgbouncer.log", self.home / "pgbouncer.pid", self.home / "userlist.txt"
        ini = "\n".join([
            "[databases]",
            f"{APP_DB} = host=127.0.0.1 port={server.port} dbname={APP_DB}",
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {port}",
            "unix_socket_dir =",
            "auth_type = scram-sha-256",
            f"auth_file = {auth}",
            "pool_mode = transaction",
            "max_client_conn = 500",
            "default_pool_size = 20",
            "server_login_retry = 5",
            "server_connect_timeout = 5",
            "query_wait_timeout = 5",
            "ignore_startup_parameters = extra_float_digits",
            f"logfile = {log}",
            f"pidfile = {pidfile}",
            "",
        ])
        _write_owned(self.home / "pgbouncer.ini", ini, user)
        password = self.providers.password(provider)
        _write_owned(auth, f'"{APP_USER}" "{password}"\n', user)
        if user:
            _make_traversable(self.home)
            os.chown(self.home, user.pw_uid, user.pw_gid)
        tmp = self._state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"provider": provider, "port": port}))
        tmp.replace(self._state)
        logger.info("created local pooler in front of provider %s on 127.0.0.1:%s", provider, port)

    def start(self) -> None:
        """Start PgBouncer if it is not running; wait until it accepts connections.

        Raises `LocalProviderError` with the end of its log when it does not start within 30 s.
        """
        if self.pid() is not None:
            return
        (self.home / "pgbouncer.pid").unlink(missing_ok=True)
        user = _service_user()
        kwargs: dict[str, Any] = {}
        if user:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        result = subprocess.run([str(find_pgbouncer()), "-d", str(self.home / "pgbouncer.ini")],
                                capture_output=True, text=True, timeout=60, cwd="/",
                                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                **kwargs)
        if result.returncode != 0:
            raise LocalProviderError(f"pgbouncer failed to start: {(result.stderr or result.stdout).strip()[-400:]}")
        if not wait_for_port(self.port, 30):
            raise LocalProviderError(f"pgbouncer did not accept connections; see {self.home / 'pgbouncer.log'}")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop PgBouncer (SIGTERM; `sig` SIGKILL for a crash drill); return its pid, None when it was not running."""
        pid = self.pid()
        if pid is None:
            return None
        os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.01)
        return pid

    def pid(self) -> int | None:
        """Return the pid of the running PgBouncer, else None."""
        try:
            pid = int((self.home / "pgbouncer.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def url(self) -> str:
        """Return the application URL through the pooler (has the password)."""
        return _url(APP_USER, self.providers.password(self.provider), self.port, APP_DB)

    def env(self) -> dict[str, str]:
        """Return the provider's variables pointing through the pooler, its direct URL past it."""
        prefix = self.provider.upper()
        return {
            f"{prefix}_DB_URL": self.url(),
            f"{prefix}_DIRECT_URL": self.providers.url(self.provider),
            f"{prefix}_PREPARED_STATEMENTS": "false",
            f"{prefix}_POOLER": "transaction",
        }

    def status(self) -> dict[str, object]:
        """Return the pooler's status row, in the shape of `LocalProviders.status()`."""
        pid = self.pid()
        return {"name": NAME, "host": f"127.0.0.1:{self.port}/{APP_DB}", "major": None,
                "running": pid is not None, "pid": pid, "pooler_for": self.provider}


def _write_owned(path: Path, text: str, user: pwd.struct_passwd | None) -> None:
    """Write `text` to `path` with mode 0600, owned by the service user when there is one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


def local_env(providers: LocalProviders) -> dict[str, str]:
    """Return `providers.env()` with the pooled provider's variables when a local pooler was created."""
    pooler = LocalPooler(providers)
    return {**providers.env(), **(pooler.env() if pooler.exists else {})}
