"""The stack as a whole: start services in order, roll back on failure, stop, report."""

from __future__ import annotations

from collections.abc import Iterable

from ferry.stack.airflow import AirflowService
from ferry.stack.digits import ApiService
from ferry.stack.docker_engine import DockerService
from ferry.stack.mongo import MongoService
from ferry.stack.postgres import PostgresService
from ferry.stack.s3 import S3Service
from ferry.stack.sagemaker import EndpointService, SageMakerService
from ferry.stack.service import Service
from ferry.stack.settings import StackSettings
from ferry.stack.spark import SparkMasterService, SparkWorkerService
from ferry.stack.sshd import SshdService

#: Started by ``ferry stack up``; Docker, Airflow and Spark only on request (--docker, --airflow, --spark).
CORE_SERVICES: tuple[type[Service], ...] = (
    PostgresService, S3Service, MongoService, SageMakerService, SshdService, EndpointService, ApiService
)
OPTIONAL_SERVICES: tuple[type[Service], ...] = (
    DockerService, AirflowService, SparkMasterService, SparkWorkerService
)
SPARK_SERVICES = ("spark", "spark-worker")


class Stack:
    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or StackSettings.from_env()
        self._services = {cls.name: cls for cls in CORE_SERVICES + OPTIONAL_SERVICES}

    def service(self, name: str) -> Service:
        return self._services[name](self.settings)

    def services(self, names: Iterable[str] | None = None) -> list[Service]:
        wanted = list(names) if names else [cls.name for cls in CORE_SERVICES]
        unknown = set(wanted) - set(self._services)
        if unknown:
            raise KeyError(f"unknown service(s): {', '.join(sorted(unknown))}")
        # Keep dependency order whatever order the caller named them in.
        return [self.service(n) for n in self._services if n in wanted]

    def up(self, names: Iterable[str] | None = None, *, echo=print) -> list[Service]:
        """Start what is not running; on any failure stop what this call started, then raise."""
        started: list[Service] = []
        services = self.services(names)
        try:
            for service in services:
                if service.start():
                    started.append(service)
                echo(service.status_line())
        except BaseException:
            for service in reversed(started):
                service.stop()
            raise
        return services

    def down(self, names: Iterable[str] | None = None, *, echo=print) -> None:
        names = list(names) if names else list(self._services)
        for service in reversed(self.services(names)):
            was_running = service.is_running()
            service.stop()
            if was_running:
                echo(f"{service.name:<12} stopped")

    def status(self) -> list[str]:
        return [self.service(name).status_line() for name in self._services]
