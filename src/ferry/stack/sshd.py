"""OpenSSH ``sshd`` on loopback: SSH and SFTP with generated keys, host keys verified.

Users log in as the user that runs the stack, with a client key generated on first start.
The host key is also generated here, and the ``sftp_default``/``ssh_default`` connections
carry its public half so Airflow verifies it instead of auto-accepting whatever answers.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

from ferry.stack.errors import StackError
from ferry.stack.process import port_answers, spawn
from ferry.stack.service import PidFileService


def find_sshd() -> Path | None:
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    return Path(found) if found else None


class SshdService(PidFileService):
    name = "sshd"

    @property
    def keys(self) -> Path:
        return self.settings.data("sshd")

    @property
    def host_key(self) -> Path:
        return self.keys / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self.keys / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.keys / "known_hosts"

    @property
    def user(self) -> str:
        return getpass.getuser()

    def host_public_key(self) -> str:
        """``ssh-ed25519 AAAA…``, the form the SSH connection's ``host_key`` extra takes."""
        if not self.host_key.exists():
            self.ensure_keys()
        return " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])

    def ensure_keys(self) -> None:
        for key in (self.host_key, self.client_key):
            if not key.exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"ferry-{key.name}", "-f", str(key)],
                    check=True,
                    capture_output=True,
                )
        authorized = self.keys / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        host_public = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
        self.known_hosts.write_text(f"[{self.settings.host}]:{self.port} {host_public}\n")

    def _write_config(self) -> Path:
        config = self.keys / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            f"ListenAddress {self.settings.host}\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.settings.run / 'sshd.pidfile'}\n"
            f"AuthorizedKeysFile {self.keys / 'authorized_keys'}\n"
            f"AllowUsers {self.user}\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "UsePAM no\n"
            # The key files live in FERRY_HOME, whose parents we do not control (a temp dir
            # in tests); the keys themselves are 0600 and only ever used on loopback.
            "StrictModes no\n"
            "Subsystem sftp internal-sftp\n"
            "LogLevel INFO\n"
        )
        return config

    def _launch(self) -> None:
        sshd = find_sshd()
        if sshd is None:
            raise StackError(
                "sshd: OpenSSH server is not installed; run `make setup` "
                f"(apt-get install openssh-server) — log: {self.log_file}"
            )
        self.ensure_keys()
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation dir
        # -D: stay in the foreground so our pid file is sshd's; -e: log to our log file.
        spawn([str(sshd), "-D", "-e", "-f", str(self._write_config())], pid_file=self.pid_file, log_file=self.log_file)

    def ready(self) -> bool:
        return port_answers(self.settings.host, self.port)

    def detail(self) -> str:
        return f"user {self.user}, key {self.client_key}"
