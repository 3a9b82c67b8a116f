"""The MongoDB service: SecantusDB, a MongoDB-compatible server on WiredTiger, on loopback.

Why SecantusDB: MongoDB itself is neither in Debian nor on PyPI, and nothing can be downloaded
here. SecantusDB (``secantusdb`` on PyPI) speaks MongoDB's wire protocol and reports server
8.2: pymongo, the provider's ``MongoHook`` and ferry's ``MongoToS3Operator`` talk to it as to
``mongod``, with cursors, batches and server-side aggregation. It is GPL-2.0, so it runs as a
separate server process (``python -m secantus``) from its own venv, ``.tools/secantusdb``, which
``scripts/setup.sh`` installs from ``tools/secantusdb/requirements.txt`` (hash-locked); it is not a
dependency of ferry, and ferry never imports it. ``FERRY_SECANTUS_PYTHON`` names another Python
that has ``secantusdb`` installed.

Who gets in: SCRAM-SHA-256 with the generated ``mongo_user``/``mongo_password``. SecantusDB
provisions users only through a server started without ``--auth``, so the first start runs it
once on a random loopback port with an empty database, creates the user, stops it, and only
then starts the real server with ``--auth``. Data lives in ``$FERRY_HOME/data/mongo`` and is
kept across ``down``/``up``.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from ferry.stack.errors import StackError
from ferry.stack.process import free_port, port_answers, spawn, stop_pid
from ferry.stack.service import PidFileService
from ferry.stack.settings import project_root


def secantus_python() -> Path:
    """The Python that runs SecantusDB: its own venv's, never ferry's (SecantusDB is GPL-2.0)."""
    configured = os.environ.get("FERRY_SECANTUS_PYTHON")
    python = Path(configured) if configured else project_root() / ".tools" / "secantusdb" / "bin" / "python"
    if not python.exists():
        raise StackError(f"mongo: SecantusDB is not installed ({python} does not exist): run scripts/setup.sh, "
                         "which installs it into .tools/secantusdb, or set FERRY_SECANTUS_PYTHON")
    return python


class MongoService(PidFileService):
    name = "mongo"
    stop_timeout = 30.0

    @property
    def data_dir(self) -> Path:
        return self.settings.data("mongo")

    @property
    def _provisioned_marker(self) -> Path:
        return self.data_dir / ".ferry-user-created"

    def uri(self, database: str = "") -> str:
        creds = self.settings.credentials
        user, password = quote(creds.mongo_user, safe=""), quote(creds.mongo_password, safe="")
        return f"mongodb://{user}:{password}@{self.endpoint}/{database}?authSource=admin"

    def client(self, **options):
        """A pymongo client logged in as the stack's user."""
        import pymongo

        return pymongo.MongoClient(self.uri(), serverSelectionTimeoutMS=5_000, **options)

    def _argv(self, port: int, *, auth: bool) -> list[str]:
        return [str(secantus_python()), "-m", "secantus", "--host", self.settings.host, "--port", str(port),
                "--storage-path", str(self.data_dir), *(["--auth"] if auth else [])]

    def _create_user(self) -> None:
        """Start the server once without auth on a random port, create the user, stop it."""
        import pymongo

        port = free_port(self.settings.host)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(self._argv(port, auth=False), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + self.start_timeout
            while not port_answers(self.settings.host, port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise StackError(f"mongo: could not start to create its user — log: {self.log_file}")
                time.sleep(0.2)
            creds = self.settings.credentials
            with pymongo.MongoClient(f"mongodb://{self.settings.host}:{port}", serverSelectionTimeoutMS=5_000) as c:
                if not c.admin.command("usersInfo", creds.mongo_user)["users"]:
                    c.admin.command("createUser", creds.mongo_user, pwd=creds.mongo_password,
                                    roles=[{"role": "root", "db": "admin"}])
        finally:
            stop_pid(proc.pid, timeout=self.stop_timeout)
            proc.wait()
        self._provisioned_marker.touch()

    def _launch(self) -> None:
        if not self._provisioned_marker.exists():
            self._create_user()
        spawn(self._argv(self.port, auth=True), pid_file=self.pid_file, log_file=self.log_file)

    def ready(self) -> bool:
        return port_answers(self.settings.host, self.port)

    def detail(self) -> str:
        user = self.settings.credentials.mongo_user
        return f"mongodb://{self.endpoint} (SecantusDB, user {user}), log: {self.log_file}"
