"""Airflow itself: api-server, scheduler, dag-processor and triggerer on the stack's PostgreSQL.

Started only when asked for (``ferry stack up --airflow``, ``make up``): the tests and the
demo run DAGs in-process with ``dag.test()`` and need only the metadata database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from ferry.stack.environment import airflow_config, stack_environment
from ferry.stack.errors import StackError
from ferry.stack.process import read_pid, spawn, stop_pid
from ferry.stack.service import Service

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Airflow's log server binds every interface (its host is hard-coded); everything runs on this
#: machine, so the api-server reads task logs from disk and the log servers are not started.
ARGUMENTS = {"scheduler": ["--skip-serve-logs"], "triggerer": ["--skip-serve-logs"]}


def airflow_executable() -> str:
    return str(Path(sys.executable).parent / "airflow")


def migrate_metadata_db(env: dict[str, str], log_file: Path) -> None:
    """``airflow db migrate``: idempotent, and quick when the schema is already current."""
    with open(log_file, "ab") as log:
        result = subprocess.run([airflow_executable(), "db", "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise StackError(f"airflow: `airflow db migrate` failed — log: {log_file}")


class AirflowService(Service):
    name = "airflow"
    start_timeout = 180.0

    def _pid_file(self, component: str) -> Path:
        return self.settings.run / f"airflow-{component}.pid"

    def _component_log(self, component: str) -> Path:
        return self.settings.logs / f"airflow-{component}.log"

    def _env(self) -> dict[str, str]:
        return {**os.environ, **stack_environment(self.settings)}

    def write_passwords_file(self) -> None:
        config = airflow_config(self.settings)
        path = Path(config["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"admin": self.settings.credentials.airflow_admin_password}, f)

    def is_running(self) -> bool:
        return any(read_pid(self._pid_file(c)) is not None for c in COMPONENTS)

    def alive(self) -> bool:
        return all(read_pid(self._pid_file(c)) is not None for c in COMPONENTS)

    def partly_dead(self) -> bool:
        # The scheduler, triggerer and dag-processor exit when PostgreSQL goes away, while the
        # api-server stays up: waiting for such a deployment to become healthy never ends.
        return not self.alive()

    def _launch(self) -> None:
        env = self._env()
        self.write_passwords_file()
        migrate_metadata_db(env, self.log_file)
        for component in COMPONENTS:
            spawn(
                [airflow_executable(), component, *ARGUMENTS.get(component, [])],
                env=env,
                pid_file=self._pid_file(component),
                log_file=self._component_log(component),
            )

    def ready(self) -> bool:
        if not self.alive():
            return False
        try:
            with urllib.request.urlopen(f"{self.settings.url('airflow')}/api/v2/monitor/health", timeout=2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        for component in reversed(COMPONENTS):
            if (pid := read_pid(self._pid_file(component))) is not None:
                stop_pid(pid)
            self._pid_file(component).unlink(missing_ok=True)

    def status_line(self) -> str:
        states = {c: read_pid(self._pid_file(c)) is not None for c in COMPONENTS}
        state = "up" if all(states.values()) and self.ready() else "partly" if any(states.values()) else "down"
        components = ", ".join(f"{c} {'up' if alive else 'down'}" for c, alive in states.items())
        return f"{self.name:<12} {state:<5} {self.endpoint:<22} {self.detail()}; {components}"

    def detail(self) -> str:
        return f"{self.settings.url('airflow')} (login admin / `ferry stack password`)"
