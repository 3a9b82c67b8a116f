"""ferry's local SageMaker: two services.

- ``sagemaker``: the control plane and CloudWatch Logs (ferry.sagemaker.control_plane). It
  trains for real (a worker process per job), keeps its state in SQLite under
  ``$FERRY_HOME/data/sagemaker``, lets in only the stack's key pair (SigV4 checked), and makes
  endpoints live on the ``endpoint`` service.
- ``endpoint``: SageMaker's runtime API (ferry.sagemaker.endpoint_server), serving the models.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

from ferry.stack.environment import stack_environment
from ferry.stack.process import port_answers, spawn
from ferry.stack.service import PidFileService, ProcessService
from ferry.stack.settings import REGION, StackSettings

#: Of the stack's variables, what the SageMaker servers need: the stack's S3 and its key pair
#: (they read channels and source bundles, write models) and the other AWS endpoints.
SAGEMAKER_NEEDS = ("FERRY_HOME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                   "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SAGEMAKER", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
                   "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_IAM",
                   "AWS_ENDPOINT_URL_KMS")

#: The stack's variables that hold secrets or lead to them (``ferry stack env`` exports them).
SECRET_PREFIXES = ("AIRFLOW", "AWS_", "PG")


def sagemaker_environment(settings: StackSettings) -> dict[str, str]:
    """The environment the control plane and the endpoint server start with.

    Not the stack's whole environment: those servers run users' code (training scripts, script
    models), so the database passwords, Airflow's Fernet key and JWT secret and the connections
    stay out, even when the shell that ran ``ferry stack up`` had evaluated ``ferry stack env``.
    Training scripts get less still (``ferry.sagemaker.script_mode.user_code_environment``).
    """
    stack = stack_environment(settings)
    own = {name: value for name, value in os.environ.items() if not name.startswith(SECRET_PREFIXES)}
    return {**own, **{name: stack[name] for name in SAGEMAKER_NEEDS}}


class SageMakerService(PidFileService):
    name = "sagemaker"

    def _launch(self) -> None:
        self.settings.credentials  # noqa: B018 - make sure credentials.json exists before the server reads it
        spawn(
            [sys.executable, "-m", "ferry.sagemaker.control_plane", "--host", self.settings.host,
             "--port", str(self.port), "--state", str(self.settings.data("sagemaker") / "control-plane.sqlite"),
             "--credentials", str(self.settings.home / "credentials.json"),
             "--runtime-url", self.settings.url("endpoint")],
            pid_file=self.pid_file,
            log_file=self.log_file,
            env=sagemaker_environment(self.settings),
        )

    def ready(self) -> bool:
        return port_answers(self.settings.host, self.port)

    def detail(self) -> str:
        return f"{self.settings.url(self.name)} (SageMaker control plane + CloudWatch Logs; trains for real)"


class EndpointService(ProcessService):
    name = "endpoint"

    def environment(self) -> dict[str, str]:
        # One BLAS thread: the server predicts small batches on its event loop, and BLAS's own
        # threads spinning beside it (and beside the clients) halved its throughput and doubled
        # its p99 at 16 clients on two cores (bench/RESULTS.md).
        single = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        return {**sagemaker_environment(self.settings), **single}

    @property
    def registry(self) -> Path:
        return self.settings.data("endpoint") / "endpoints.json"

    def _launch(self) -> None:
        spawn(
            [
                sys.executable,
                "-m",
                "ferry.sagemaker.endpoint_server",
                "--host",
                self.settings.host,
                "--port",
                str(self.port),
                "--registry",
                str(self.registry),
                "--credentials",
                str(self.settings.home / "credentials.json"),
                "--region",
                REGION,
            ],
            pid_file=self.pid_file,
            log_file=self.log_file,
            env=self.environment(),
        )

    def ready(self) -> bool:
        return self.answers_http("/ping")

    def detail(self) -> str:
        from botocore.credentials import Credentials

        from ferry.sagemaker.sigv4 import signed_request

        url = self.settings.url(self.name)
        try:
            request = signed_request("GET", f"{url}/endpoints", None, credentials=Credentials(
                self.settings.credentials.aws_access_key_id, self.settings.credentials.aws_secret_access_key),
                region=REGION)
            with urllib.request.urlopen(request, timeout=1) as response:
                endpoints = json.loads(response.read())["Endpoints"]
        except (OSError, ValueError, KeyError):
            return f"{url} (SageMaker runtime API)"
        serving = ", ".join(f"{e['EndpointName']} ({e['Algorithm']})" for e in endpoints) or "no endpoints yet"
        return f"{url} (SageMaker runtime API): {serving}"
