"""Create, start, stop and kill local PostgreSQL providers.

Each provider is a real server on 127.0.0.1 with its own port, data under
`<base>/<name>/data`, password authentication (scram-sha-256) and a generated
password, as a managed provider has. Servers run as an unprivileged system
user when this process is root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import secrets
import signal
import socket
import stat
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote
from typing import Any

from psycopg.conninfo import make_conninfo

from ..errors import LocalProviderError
from .binaries import PgInstall, server_installs

logger = logging.getLogger(__name__)

DEFAULT_NAMES = ("neon", "supabase", "railway")
APP_USER = "agent"
APP_DB = "agent_factory"
_SERVICE_USER = "agentfactory"


@dataclass
class LocalProvider:
    """What is known of one local provider (its password lives in a 0600 file, not here)."""

    name: str
    port: int
    major: int
    bindir: str

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}/{APP_DB}"


class LocalProviders:
    """The set of local providers under one base directory (default `var/local`)."""

    def __init__(self, base_dir: str | Path = "var/local", durable: bool = True) -> None:
        self.base_dir = Path(base_dir).absolute()
        self.durable = durable
        self._catalog_path = self.base_dir / "providers.json"

    # ---- catalog -----------------------------------------------------------

    def providers(self) -> dict[str, LocalProvider]:
        """Return the providers created so far, by name."""
        if not self._catalog_path.is_file():
            return {}
        raw = json.loads(self._catalog_path.read_text())
        return {name: LocalProvider(**entry) for name, entry in raw.items()}

    def _save(self, providers: dict[str, LocalProvider]) -> None:
        tmp = self._catalog_path.with_suffix(".tmp")
        _write_private(tmp, json.dumps({n: asdict(p) for n, p in providers.items()}, indent=2))
        tmp.replace(self._catalog_path)

    def get(self, name: str) -> LocalProvider:
        """Return one provider or raise `LocalProviderError` naming the known ones."""
        providers = self.providers()
        if name not in providers:
            known = ", ".join(providers) or "none (run `agent-factory local up` first)"
            raise LocalProviderError(f"no local provider named {name!r}; known: {known}")
        return providers[name]

    def password(self, name: str) -> str:
        """Return the application password of one provider."""
        return (self.base_dir / name / "password").read_text().strip()

    def url(self, name: str) -> str:
        """Return the application URL of one provider, `postgresql://...` as in .env.example (has the password)."""
        return _url(APP_USER, self.password(name), self.get(name).port, APP_DB)

    def admin_url(self, name: str) -> str:
        """Return the superuser URL of one provider (for fault drills and tests only)."""
        admin = (self.base_dir / name / "admin_password").read_text().strip()
        return _url("postgres", admin, self.get(name).port, "postgres")

    def app_admin_url(self, name: str) -> str:
        """Return the superuser URL of one provider's application database (NAME_ADMIN_URL, for streams)."""
        admin = (self.base_dir / name / "admin_password").read_text().strip()
        return _url("postgres", admin, self.get(name).port, APP_DB)

    def _data(self, name: str) -> Path:
        return self.base_dir / name / "data"

    # ---- lifecycle ---------------------------------------------------------

    def up(self, names: tuple[str, ...] = DEFAULT_NAMES) -> dict[str, LocalProvider]:
        """Create (first time) and start every named provider; return them all.

        Everything under the base directory is private: files 0600, directories
        0700 (the base directory 0710 with the service user's group when the
        servers run as that user, so that it can reach its data and nobody else can).
        """
        self.base_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._make_private()
        installs = server_installs()
        if not installs:
            raise LocalProviderError(
                "no PostgreSQL server binaries found; install them with `pip install pgserver` "
                "(bundles PostgreSQL 16) or your OS package, or set PG_BIN_DIR"
            )
        providers = self.providers()
        for index, name in enumerate(names):
            if name not in providers:
                # Spread providers over the available majors: real providers differ too.
                install = installs[(index % 2) % len(installs)]
                providers[name] = self._create(name, install)
                self._save(providers)
        for name in names:
            self.start(name)
            self.enable_pgvector(name)
            self.enable_streams(name)
        return {n: providers[n] for n in names}

    def _make_private(self) -> None:
        """Set the modes `up` promises on the base directory and what this code wrote in it (older installs too)."""
        user = _service_user()
        os.chmod(self.base_dir, 0o710 if user else 0o700)
        if user:
            os.chown(self.base_dir, os.geteuid(), user.pw_gid)
        for path in [self._catalog_path, *self.base_dir.glob("*/server.log"), *self.base_dir.glob("*/*password")]:
            if path.is_file():
                os.chmod(path, 0o600)
        for home in (p for p in self.base_dir.iterdir() if p.is_dir()):
            os.chmod(home, 0o700)

    def enable_pgvector(self, name: str) -> bool:
        """Create the `vector` extension in the application database as the admin role, where the server has it.

        Returns whether pgvector is installed there now; a server without it (Debian's
        PostgreSQL 15 here) is left as it is: that provider serves text search only.
        """
        import psycopg

        from ..vector import enable

        with psycopg.connect(self._admin_conninfo(name), autocommit=True, connect_timeout=10) as conn:
            return enable(conn, name)

    def enable_streams(self, name: str) -> None:
        """Make one provider able to publish and subscribe: `wal_level=logical` and REPLICATION for the app role.

        A provider created before streams existed is switched to `wal_level=logical`
        (ALTER SYSTEM) and restarted. Subscriptions are created through NAME_ADMIN_URL
        (`env`): PostgreSQL 15 lets only a superuser create one.
        """
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._admin_conninfo(name), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} REPLICATION").format(sql.Identifier(APP_USER)))
            row = conn.execute("SHOW wal_level").fetchone()
            logical = bool(row and row[0] == "logical")
            if not logical:
                conn.execute("ALTER SYSTEM SET wal_level = logical")
        if not logical:
            logger.info("local provider %s: restarting with wal_level=logical", name)
            self.stop(name)
            self.start(name)

    def _admin_conninfo(self, name: str) -> str:
        admin = (self.base_dir / name / "admin_password").read_text().strip()
        return make_conninfo(host="127.0.0.1", port=self.get(name).port, user="postgres", dbname=APP_DB,
                             password=admin)

    def _create(self, name: str, install: PgInstall) -> LocalProvider:
        home = self.base_dir / name
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        password, admin_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
        _write_secret(home / "password", password)
        _write_secret(home / "admin_password", admin_password)
        port = _free_port()
        data = self._data(name)
        user = _service_user()
        pwfile = home / "initdb.pw"
        _write_secret(pwfile, admin_password)
        if user:
            _make_traversable(self.base_dir)
            os.chown(home, user.pw_uid, user.pw_gid)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        try:
            self._run(
                install,
                "initdb",
                ["-D", str(data), "-U", "postgres", f"--pwfile={pwfile}", "--auth=scram-sha-256",
                 "--encoding=UTF8", "--locale=C"],
            )
        finally:
            pwfile.unlink(missing_ok=True)
        conf = [
            f"port = {port}",
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 100",
            "shared_buffers = 64MB",
            "password_encryption = 'scram-sha-256'",
            "wal_level = logical",  # streams (docs/CONTINUITY.md): every provider can publish
        ]
        if any(install.bindir.parent.glob("lib/**/pg_stat_statements.so")):
            conf.append("shared_preload_libraries = 'pg_stat_statements'")
        if not self.durable:
            conf += ["fsync = off", "full_page_writes = off"]
        with open(data / "postgresql.conf", "a") as fh:
            fh.write("\n# agent-factory local provider\n" + "\n".join(conf) + "\n")
        provider = LocalProvider(name=name, port=port, major=install.major, bindir=str(install.bindir))
        self._start_process(provider)
        self._bootstrap(provider, admin_password, password)
        logger.info("created local provider %s on 127.0.0.1:%s (PostgreSQL %s)", name, port, install.major)
        return provider

    def _bootstrap(self, provider: LocalProvider, admin_password: str, password: str) -> None:
        import psycopg
        from psycopg import sql

        admin = make_conninfo(host="127.0.0.1", port=provider.port, user="postgres", dbname="postgres",
                              password=admin_password)
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(APP_USER), sql.Literal(password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(APP_DB), sql.Identifier(APP_USER)))
        with psycopg.connect(admin.replace("dbname=postgres", f"dbname={APP_DB}"), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(APP_USER)))
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(APP_USER)))
            except psycopg.Error:
                pass  # not preloaded on this build: slow-queries reports that clearly

    def start(self, name: str) -> LocalProvider:
        """Start one provider if it is not running (after `down` or `kill`)."""
        provider = self.get(name)
        if self._running_pid(name) is None:
            # A crashed postmaster can linger as a zombie whose pid the server
            # would mistake for a live one; its lock file is stale.
            (self._data(name) / "postmaster.pid").unlink(missing_ok=True)
            self._start_process(provider)
        return provider

    def _start_process(self, provider: LocalProvider) -> None:
        install = PgInstall(provider.major, Path(provider.bindir), "")
        data = self._data(provider.name)
        log = self.base_dir / provider.name / "server.log"
        user = _service_user()
        if not log.exists():
            _write_private(log, "")
            if user:
                os.chown(log, user.pw_uid, user.pw_gid)
        self._run(install, "pg_ctl", ["-D", str(data), "-l", str(log), "-w", "-t", "60", "start"])
        if not wait_for_port(provider.port, 30):
            raise LocalProviderError(f"local provider {provider.name} did not accept connections; see {log}")

    def stop(self, name: str) -> None:
        """Stop one provider cleanly (fast shutdown)."""
        provider = self.get(name)
        if self._running_pid(name) is not None:
            install = PgInstall(provider.major, Path(provider.bindir), "")
            self._run(install, "pg_ctl", ["-D", str(self._data(name)), "-m", "fast", "-w", "stop"])

    def down(self) -> None:
        """Stop every provider; their data stays for the next `up`."""
        for name in self.providers():
            self.stop(name)

    def kill(self, name: str) -> int:
        """SIGKILL one provider's postmaster and its backends, as a crash would; return the pid."""
        self.get(name)
        pid = self.pid(name)
        if pid is None:
            raise LocalProviderError(f"local provider {name} is not running")
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in [pid, *children]):
            time.sleep(0.01)
        logger.warning("killed local provider %s (pid %s)", name, pid)
        return pid

    def pid(self, name: str) -> int | None:
        """Return the postmaster pid of a running provider, else None."""
        self.get(name)
        return self._running_pid(name)

    def _running_pid(self, name: str) -> int | None:
        pidfile = self._data(name) / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def status(self) -> list[dict[str, object]]:
        """Return one row per provider: name, host, PostgreSQL major, running, pid."""
        rows = []
        for provider in self.providers().values():
            pid = self._running_pid(provider.name)
            rows.append({"name": provider.name, "host": provider.host, "major": provider.major,
                         "running": pid is not None, "pid": pid})
        return rows

    def env(self) -> dict[str, str]:
        """Return the environment variables pointing the library at these providers."""
        names = list(self.providers())
        values = {f"{n.upper()}_DB_URL": self.url(n) for n in names}
        # Superuser of the application database: used only by `stream` operations (PostgreSQL 15
        # lets only a superuser create a subscription); never logged.
        values.update({f"{n.upper()}_ADMIN_URL": self.app_admin_url(n) for n in names})
        values["DATABASE_FAILOVER_ORDER"] = ",".join(names)
        return values

    def _run(self, install: PgInstall, tool: str, args: list[str]) -> None:
        exe = install.tool(tool)
        if exe is None:
            raise LocalProviderError(f"{tool} not found in {install.bindir}")
        user = _service_user()
        kwargs: dict[str, Any] = {}
        if user:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [],
                      "env": {**os.environ, "HOME": user.pw_dir or "/tmp"}}
        result = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                                cwd="/", **kwargs)
        if result.returncode != 0:
            raise LocalProviderError(f"{tool} failed: {(result.stderr or result.stdout).strip()[-800:]}")


def _url(user: str, password: str, port: int, dbname: str) -> str:
    return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}/{quote(dbname, safe='')}"


def write_env_file(path: str | Path, values: dict[str, str]) -> None:
    """Set `values` in a dotenv file, keeping its other lines; the file is written atomically, mode 0600."""
    path = Path(path)
    lines = path.read_text().splitlines() if path.exists() else []
    remaining = dict(values)
    out = []
    for line in lines:
        key = line.split("=", 1)[0].strip()
        if key in remaining and not line.lstrip().startswith("#"):
            out.append(f"{key}={remaining.pop(key)}")
        else:
            out.append(line)
    out.extend(f"{k}={v}" for k, v in remaining.items())
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(out) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _is_root() -> bool:
    return os.geteuid() == 0


def _service_user() -> pwd.struct_passwd | None:
    """Return the unprivileged user servers run as when we are root, creating it if needed."""
    if not _is_root():
        return None
    for name in (os.environ.get("AGENT_FACTORY_PG_USER", ""), "postgres", _SERVICE_USER):
        if not name:
            continue
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _SERVICE_USER],
                   check=True, capture_output=True)
    return pwd.getpwnam(_SERVICE_USER)


def _make_traversable(path: Path) -> None:
    """Let the service user reach into `path`: add o+x to each ancestor that lacks it (`path` itself: see `up`)."""
    for parent in reversed(path.parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)


def _write_secret(path: Path, value: str) -> None:
    _write_private(path, value + "\n")


def _write_private(path: Path, text: str) -> None:
    """Write `path` created 0600 (never readable by others, not even for a moment)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, seconds: float) -> bool:
    """Return whether 127.0.0.1:`port` accepts TCP connections within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids
