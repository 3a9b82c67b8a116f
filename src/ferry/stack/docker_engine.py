"""The Docker engine: one that already answers, or Debian's ``dockerd`` under ``$FERRY_HOME``.

If ``DOCKER_HOST`` (or the default ``/var/run/docker.sock``) answers, the stack uses that engine
and never stops it. Otherwise it starts the ``dockerd`` of Debian's ``docker.io`` package
(installed by ``scripts/setup.sh``) as a private engine: its own socket, data root and exec root
under ``$FERRY_HOME``; no bridge, no iptables rules, so it changes nothing in the host's network
(containers run with ``network_mode="host"`` and reach the stack's loopback ports). Starting it
needs root, as dockerd does.

Once the engine answers, the images the pipelines run are built (``ferry.stack.docker_images``),
only when their inputs changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cached_property
from pathlib import Path

from ferry.stack.errors import StackError
from ferry.stack.process import spawn
from ferry.stack.service import PidFileService

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def engine_answers(url: str) -> bool:
    """True if a Docker engine answers ``/_ping`` at ``url`` (``unix://…`` or ``tcp://…``)."""
    import docker

    try:
        client = docker.APIClient(base_url=url, timeout=3)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except Exception:  # refused, missing socket, an HTTP error: not an engine we can use
        return False
    finally:
        client.close()


class DockerService(PidFileService):
    name = "docker"
    stop_timeout = 30.0

    @property
    def socket(self) -> Path:
        return self.settings.run / "docker.sock"

    @property
    def own_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def data_root(self) -> Path:
        return self.settings.data("docker")

    @property
    def exec_root(self) -> Path:
        return self.settings.run / "docker"

    @cached_property
    def external_url(self) -> str | None:
        """An engine that is not ours and already answers: ``DOCKER_HOST``, else the default socket."""
        for url in (os.environ.get("DOCKER_HOST"), DEFAULT_SOCKET):
            if url and url != self.own_url and engine_answers(url):
                return url
        return None

    @property
    def url(self) -> str:
        """What ``DOCKER_HOST`` should be: the engine that answers, or the one we would start."""
        return self.external_url or self.own_url

    @property
    def port(self) -> int:  # a unix socket, not a TCP port
        raise AttributeError("the docker service listens on a unix socket")

    @property
    def endpoint(self) -> str:
        return self.url

    def require_free(self) -> None:
        if self.socket.exists() and not engine_answers(self.own_url):
            self.socket.unlink()  # left by an engine that was killed

    def is_running(self) -> bool:
        return self.external_url is not None or super().is_running()

    def ready(self) -> bool:
        return engine_answers(self.url)

    def stop(self) -> None:
        if self.external_url is not None and not self.pid_file.exists():
            return  # not ours to stop
        super().stop()
        # dockerd mounts a network namespace under its exec root and may leave it on a kill.
        netns = self.exec_root / "netns"
        if netns.is_dir():
            for entry in netns.iterdir():
                subprocess.run(["umount", "-l", str(entry)], capture_output=True)

    def _launch(self) -> None:
        dockerd = shutil.which("dockerd") or ("/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None)
        if dockerd is None:
            raise StackError("docker: no Docker engine answers and dockerd is not installed; run `make setup` "
                             "(apt-get install docker.io) or set DOCKER_HOST to an engine")
        if os.geteuid() != 0:
            raise StackError("docker: no Docker engine answers, and starting ferry's own dockerd needs root; "
                             "set DOCKER_HOST to an engine you can use")
        self.exec_root.mkdir(mode=0o700, exist_ok=True)
        spawn([dockerd, "--host", self.own_url, "--data-root", str(self.data_root),
               "--exec-root", str(self.exec_root), "--pidfile", str(self.settings.run / "dockerd.pidfile"),
               # No bridge, no NAT rules: the host's network stays as it was.
               "--bridge=none", "--iptables=false", "--ip6tables=false",
               "--log-level", "warn"],
              pid_file=self.pid_file, log_file=self.log_file)

    def after_ready(self) -> None:
        import docker

        from ferry.stack.docker_images import ensure_images

        try:
            ensure_images(self.url, log_file=self.log_file)
        except docker.errors.DockerException as exc:
            raise StackError(f"docker: building the images failed: {exc} — log: {self.log_file}") from exc

    def detail(self) -> str:
        whose = "an engine that was already running" if self.external_url else "ferry's dockerd"
        return f"{whose}; data {self.data_root}, log: {self.log_file}"
