"""The digits classifier's two servers: the endpoint server and the Chalice API in front of it.

``endpoint`` plays SageMaker's runtime (ferry.digits.endpoint); ``api`` is the seed's Chalice app
under ``chalice local``, calling that endpoint through boto3 as it would call SageMaker.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

from ferry.stack.process import spawn
from ferry.stack.service import PidFileService
from ferry.stack.settings import project_root


def api_project() -> Path:
    return project_root() / "api"


class _ProcessService(PidFileService):
    """A service that is one process we start, with the stack's environment."""

    def environment(self) -> dict[str, str]:
        from ferry.stack.environment import stack_environment

        return {**os.environ, **stack_environment(self.settings)}

    def detail(self) -> str:
        return self.settings.url(self.name)


class EndpointService(_ProcessService):
    name = "endpoint"

    @property
    def registry(self) -> Path:
        return self.settings.data("endpoint") / "endpoints.json"

    def _launch(self) -> None:
        spawn(
            [
                sys.executable,
                "-m",
                "ferry.digits.endpoint",
                "--host",
                self.settings.host,
                "--port",
                str(self.port),
                "--registry",
                str(self.registry),
                "--credentials",
                str(self.settings.home / "credentials.json"),
            ],
            pid_file=self.pid_file,
            log_file=self.log_file,
            env=self.environment(),
        )

    def ready(self) -> bool:
        return self.answers_http("/ping")

    def detail(self) -> str:
        url = self.settings.url(self.name)
        try:
            with urllib.request.urlopen(f"{url}/endpoints", timeout=1) as response:
                endpoints = json.loads(response.read())["Endpoints"]
        except (OSError, ValueError, KeyError):
            return f"{url} (SageMaker runtime API)"
        serving = ", ".join(f"{e['EndpointName']} ({e['Algorithm']})" for e in endpoints) or "no endpoints yet"
        return f"{url} (SageMaker runtime API): {serving}"


class ApiService(_ProcessService):
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
