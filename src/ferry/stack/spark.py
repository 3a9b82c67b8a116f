"""Spark standalone: a master (with its REST submission server) and one worker, on loopback.

Spark comes from the full pyspark wheel that ``scripts/setup.sh`` installs in ``.spark/`` (the
venv holds only the Spark provider's pyspark-client). Started on request: ``ferry stack up --spark``.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

from ferry.stack.errors import StackError
from ferry.stack.process import port_answers, spawn
from ferry.stack.service import PidFileService
from ferry.stack.settings import StackSettings, project_root


def spark_home() -> Path:
    return Path(os.environ.get("FERRY_SPARK_HOME") or project_root() / ".spark" / "pyspark")


def spark_environment(settings: StackSettings) -> dict[str, str]:
    """What spark-submit, the master and the worker need: SPARK_HOME, PATH, the driver's Python."""
    home = spark_home()
    return {
        "SPARK_HOME": str(home),
        "PATH": f"{home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOG_DIR": str(settings.logs),
        # Spark's web UIs (master, worker, driver) bind to this address, by default all
        # interfaces; their kill links must not be reachable from the network.
        "SPARK_LOCAL_IP": settings.host,
    }


class _SparkDaemon(PidFileService):
    start_timeout = 120.0
    main_class: str

    def _arguments(self) -> list[str]:
        raise NotImplementedError

    def _launch(self) -> None:
        spark_class = spark_home() / "bin" / "spark-class"
        if not spark_class.exists():
            raise StackError(f"{self.name}: Spark is not installed in {spark_home()}; run `make setup` "
                             f"— log: {self.log_file}")
        spawn([str(spark_class), self.main_class, *self._arguments()], pid_file=self.pid_file,
              log_file=self.log_file, env={**os.environ, **spark_environment(self.settings)})


class SparkMasterService(_SparkDaemon):
    name = "spark"
    main_class = "org.apache.spark.deploy.master.Master"

    def _arguments(self) -> list[str]:
        properties = self.settings.data("spark") / "master.conf"
        properties.write_text(
            "spark.master.rest.enabled true\n"
            f"spark.master.rest.port {self.settings.ports['spark-rest']}\n"
            f"spark.master.rest.host {self.settings.host}\n"
        )
        return ["--host", self.settings.host, "--port", str(self.port),
                "--webui-port", str(self.settings.ports["spark-ui"]), "--properties-file", str(properties)]

    def ready(self) -> bool:
        return port_answers(self.settings.host, self.port) and port_answers(
            self.settings.host, self.settings.ports["spark-rest"])

    def detail(self) -> str:
        return (f"spark://{self.endpoint}, REST http://{self.settings.host}:{self.settings.ports['spark-rest']}, "
                f"UI {self.settings.url('spark-ui')}")


class SparkWorkerService(_SparkDaemon):
    name = "spark-worker"
    main_class = "org.apache.spark.deploy.worker.Worker"

    def _arguments(self) -> list[str]:
        return [f"spark://{self.settings.host}:{self.settings.ports['spark']}", "--host", self.settings.host,
                "--cores", str(os.cpu_count() or 2), "--memory", "3g", "--webui-port", str(self.port),
                "--work-dir", str(self.settings.data("spark") / "work")]

    def partly_dead(self) -> bool:
        """A master that was restarted does not know this worker, and the worker's reconnection
        attempts can take minutes: restart it instead."""
        return port_answers(self.settings.host, self.settings.ports["spark-ui"]) and not self.ready()

    def ready(self) -> bool:
        """Registered with the master, not merely listening."""
        try:
            with urllib.request.urlopen(f"{self.settings.url('spark-ui')}/json/", timeout=2) as response:
                workers = json.load(response).get("workers", [])
        except OSError:
            return False
        return any(w.get("state") == "ALIVE" and str(w.get("webuiaddress", "")).endswith(f":{self.port}")
                   for w in workers)

    def detail(self) -> str:
        return f"UI {self.settings.url('spark-worker')}, work dir {self.settings.data('spark') / 'work'}"
