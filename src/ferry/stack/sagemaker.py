"""The SageMaker control plane and CloudWatch Logs: moto's server, on a port of its own.

moto records training jobs, models and endpoints (it trains and serves nothing: ferry's
endpoint server plays the runtime). It keeps its state in memory only, which is acceptable
for records that the DAGs create again on every run; S3 data never lives here.
"""

from __future__ import annotations

import sys

from ferry.stack.process import spawn
from ferry.stack.service import PidFileService


class SageMakerService(PidFileService):
    name = "sagemaker"

    def _launch(self) -> None:
        spawn(
            [sys.executable, "-m", "moto.server", "-H", self.settings.host, "-p", str(self.port)],
            pid_file=self.pid_file,
            log_file=self.log_file,
        )

    def ready(self) -> bool:
        return self.answers_http("/moto-api/")

    def detail(self) -> str:
        return f"{self.settings.url(self.name)} (SageMaker control plane + CloudWatch Logs, moto)"
