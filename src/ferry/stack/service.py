"""What every service of the stack can do: start (and wait until it answers), stop, report."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

from ferry.stack.process import port_answers, read_pid, require_free_port, stop_pid, wait_until
from ferry.stack.settings import StackSettings


class Service(ABC):
    """One server of the stack, listening on ``settings.ports[self.name]``."""

    name: str
    #: Seconds to wait for the service to answer after starting it.
    start_timeout: float = 60.0

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings

    @property
    def port(self) -> int:
        return self.settings.ports[self.name]

    @property
    def log_file(self) -> Path:
        return self.settings.logs / f"{self.name}.log"

    @property
    def endpoint(self) -> str:
        return f"{self.settings.host}:{self.port}"

    @abstractmethod
    def is_running(self) -> bool:
        """True if this stack's process for the service is alive."""

    @abstractmethod
    def _launch(self) -> None:
        """Start the process(es); return without waiting for readiness."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the service if it runs; keep its data."""

    def ready(self) -> bool:
        return port_answers(self.settings.host, self.port)

    def answers_http(self, path: str) -> bool:
        """True if ``GET <service URL><path>`` gets any HTTP answer, even an error status."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.settings.url(self.name)}{path}", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def alive(self) -> bool:
        """While starting: False means the service died and waiting longer is pointless."""
        return self.is_running()

    def after_ready(self) -> None:
        """Work done once the service answers (create databases, buckets…)."""

    def require_free(self) -> None:
        """Before launching: fail if another program holds what the service needs (its port)."""
        require_free_port(self.name, self.settings.host, self.port, self.log_file)

    def partly_dead(self) -> bool:
        """True if the service runs but cannot recover by itself (a component died, a worker lost
        its master): ``start`` then restarts it instead of waiting for it."""
        return False

    def start(self) -> bool:
        """Start the service unless it already runs; return True if this call started it."""
        if self.is_running() and self.partly_dead():
            self.stop()
        if self.is_running():
            if not self.ready():
                wait_until(self.ready, service=self.name, log_file=self.log_file, timeout=self.start_timeout)
            self.after_ready()
            return False
        self.require_free()
        self._launch()
        try:
            wait_until(
                self.ready,
                service=self.name,
                log_file=self.log_file,
                timeout=self.start_timeout,
                alive=self.alive,
            )
            self.after_ready()
        except BaseException:
            self.stop()
            raise
        return True

    def status_line(self) -> str:
        state = "up" if self.is_running() and self.ready() else "down"
        return f"{self.name:<12} {state:<5} {self.endpoint:<22} {self.detail()}"

    def detail(self) -> str:
        """Extra words for the status line (a URL, a user name)."""
        return f"log: {self.log_file}"


class PidFileService(Service):
    """A service that is one process we spawn, tracked by ``$FERRY_HOME/run/<name>.pid``."""

    #: Seconds to wait for the process to exit on SIGTERM before killing it.
    stop_timeout: float = 20.0

    @property
    def pid_file(self) -> Path:
        return self.settings.run / f"{self.name}.pid"

    def is_running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def stop(self) -> None:
        if (pid := read_pid(self.pid_file)) is not None:
            stop_pid(pid, timeout=self.stop_timeout)
        self.pid_file.unlink(missing_ok=True)


class ProcessService(PidFileService):
    """A service that is one process we start, with the stack's environment."""

    def environment(self) -> dict[str, str]:
        from ferry.stack.environment import stack_environment

        return {**os.environ, **stack_environment(self.settings)}

    def detail(self) -> str:
        return self.settings.url(self.name)
