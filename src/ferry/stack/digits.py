"""The digits classifier's API: the seed's Chalice app under ``chalice local``, calling the
``endpoint`` service (ferry.stack.sagemaker) through boto3 as it would call SageMaker.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ferry.stack.process import spawn
from ferry.stack.service import ProcessService
from ferry.stack.settings import project_root


def api_project() -> Path:
    return project_root() / "api"


class ApiService(ProcessService):
    name = "api"

    def _launch(self) -> None:
        # `chalice local` itself, through an entry point that turns off Nagle's algorithm.
        spawn(
            [
                sys.executable,
                "-m",
                "ferry.stack.chalice_local",
                "--project-dir",
                str(api_project()),
                "local",
                "--host",
                self.settings.host,
                "--port",
                str(self.port),
                "--stage",
                "local",
                "--no-autoreload",
            ],
            pid_file=self.pid_file,
            log_file=self.log_file,
            env=self.environment(),
            cwd=api_project(),
        )

    def ready(self) -> bool:
        return self.answers_http("/")

    def detail(self) -> str:
        return f"{self.settings.url(self.name)} (POST a JPEG/PNG; open in a browser to draw)"
