"""SFTP sessions over OpenSSH's own ``ssh`` client, for the connections it can express exactly.

Why not paramiko alone: paramiko runs SSH's packet layer in Python, one round of message
building, encryption and MAC per 32 KiB packet, in the task's process; on the stack's two cores
that Python time was S3ToSFTP's wall time (issue 21's profile in bench/RESULTS.md). ``ssh -s
sftp`` does the packet layer in C, in a process of its own, and takes SFTP requests as large as
the server allows (``limits@openssh.com``: 255 KiB for OpenSSH's server) where a paramiko
channel packet holds 32 KiB. paramiko's ``SFTPClient`` still speaks SFTP over the pipe, so every
call the operators make (open, stat, posix-rename, listdir) is the same code either way.

Only a connection that OpenSSH can express exactly takes this way: a key (``key_file``, or a
``private_key`` without a passphrase) and a pinned ``host_key``, no password, no proxy command.
Anything else, or no ``ssh`` on PATH, keeps paramiko, as does ``transport="paramiko"``. If
OpenSSH cannot open the session, the reason is logged and paramiko tries with the same pinned
host key (which it enforces too), so a connection that works today keeps working.
"""

from __future__ import annotations

import select
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

SSHTransport = Literal["auto", "openssh", "paramiko"]

#: paramiko's names for the algorithm kinds of ``disabled_algorithms``, as OpenSSH options.
_ALGORITHM_OPTIONS = {"ciphers": "Ciphers", "macs": "MACs", "kex": "KexAlgorithms",
                      "keys": "HostKeyAlgorithms", "pubkeys": "PubkeyAcceptedAlgorithms"}


class OpenSSHFailed(ConnectionError):
    """``ssh`` could not open the SFTP session; the message ends with what ssh said."""


class OpenSSHSocket(socket.socket):
    """One end of a socket pair whose other end is ``ssh -s sftp``'s stdin and stdout.

    paramiko's SFTP code reads and writes any socket; a pipelined ``SFTPFile`` also asks
    ``recv_ready`` (a Channel method) before collecting answers, and its log lines name the
    channel.
    """

    def recv_ready(self) -> bool:
        return bool(select.select([self], [], [], 0)[0])

    def get_name(self) -> str:
        return "openssh"


def openssh_refusal(hook: Any) -> str | None:
    """Why ``hook``'s connection cannot be handed to OpenSSH as it is, or None if it can."""
    if shutil.which("ssh") is None:
        return "no OpenSSH client (ssh) on PATH"
    if hook.password:
        return "the connection has a password"
    if getattr(hook, "host_proxy_cmd", None) or getattr(hook, "host_proxy", None):
        return "the connection uses a proxy command"
    if hook.host_key is None or hook.no_host_key_check or hook.allow_host_key_change:
        return "the connection does not pin a host key (host_key extra)"
    extra = hook.get_connection(hook.ssh_conn_id).extra_dejson if hook.ssh_conn_id else {}
    if extra.get("private_key_passphrase"):
        return "the connection's private key has a passphrase"
    if not (hook.key_file or extra.get("private_key")):
        return "the connection names no key (key_file or private_key extra)"
    if set(hook.disabled_algorithms or {}) - set(_ALGORITHM_OPTIONS):
        return "disabled_algorithms names a kind OpenSSH has no option for"
    return None


def _known_hosts_line(hook: Any) -> str:
    host = hook.remote_host if (hook.port or 22) == 22 else f"[{hook.remote_host}]:{hook.port}"
    return f"{host} {hook.host_key.get_name()} {hook.host_key.get_base64()}\n"


def openssh_command(hook: Any, directory: Path) -> list[str]:
    """``ssh … -s host sftp`` for ``hook``'s connection; its key and known host written into
    ``directory`` (the caller's private temporary directory), nothing secret on the command line.

    ``-F none``: paramiko reads no ssh_config either (the hook's own look-up of proxy commands
    and identity files in ~/.ssh/config is already in ``hook``). ``BatchMode``: fail, never ask.
    """
    extra = hook.get_connection(hook.ssh_conn_id).extra_dejson if hook.ssh_conn_id else {}
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(_known_hosts_line(hook))
    key_file = hook.key_file
    if not key_file:
        key = directory / "key"
        key.touch(mode=0o600)
        key.write_text(extra["private_key"].strip() + "\n")
        key_file = str(key)
    options = {
        "BatchMode": "yes", "IdentitiesOnly": "yes", "IdentityAgent": "none",
        "UserKnownHostsFile": str(known_hosts), "GlobalKnownHostsFile": "/dev/null",
        "StrictHostKeyChecking": "yes", "UpdateHostKeys": "no", "CheckHostIP": "no",
        "Compression": "yes" if hook.compress else "no",
    }
    if hook.conn_timeout:
        options["ConnectTimeout"] = str(int(hook.conn_timeout))
    if getattr(hook, "keepalive_interval", 0):
        options["ServerAliveInterval"] = str(int(hook.keepalive_interval))
    if hook.ciphers:
        options["Ciphers"] = ",".join(hook.ciphers)
    for kind, names in (hook.disabled_algorithms or {}).items():
        if names and not (kind == "ciphers" and hook.ciphers):
            options[_ALGORITHM_OPTIONS[kind]] = "-" + ",".join(names)  # "-": OpenSSH's defaults minus these
    command = ["ssh", "-F", "none", "-i", key_file, "-p", str(hook.port or 22), "-l", hook.username]
    for name, value in options.items():
        command += ["-o", f"{name}={value}"]
    return [*command, "-s", "--", hook.remote_host, "sftp"]


@contextmanager
def _openssh_sftp(hook: Any) -> Iterator[Any]:
    import paramiko

    with tempfile.TemporaryDirectory(prefix="ferry-ssh-") as directory:
        ours, theirs = socket.socketpair()
        with tempfile.TemporaryFile() as stderr:
            try:
                ssh = subprocess.Popen(openssh_command(hook, Path(directory)), stdin=theirs, stdout=theirs,
                                       stderr=stderr, start_new_session=True)
            finally:
                theirs.close()
            sock = OpenSSHSocket(fileno=ours.detach())
            # Whole write requests (255 KiB) go into the pair in one send, not pieces.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
            try:
                try:
                    sftp = paramiko.SFTPClient(sock)
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    sock.close()
                    ssh.wait(timeout=10)
                    stderr.seek(0)
                    said = [line for line in stderr.read().decode(errors="replace").splitlines() if line.strip()]
                    reason = said[-1].strip() if said else f"ssh exited with status {ssh.returncode}"
                    raise OpenSSHFailed(f"OpenSSH could not open an SFTP session to "
                                          f"{hook.remote_host}:{hook.port or 22}: {reason}") from exc
                with sftp:
                    yield sftp
            finally:
                sock.close()
                try:
                    ssh.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    ssh.kill()
                    ssh.wait()


def check_transport(transport: str) -> None:
    if transport not in ("auto", "openssh", "paramiko"):
        raise ValueError(f"ssh_transport must be 'auto', 'openssh' or 'paramiko', not {transport!r}")


@contextmanager
def sftp_session(hook: Any, transport: SSHTransport = "auto", log: Any = None) -> Iterator[Any]:
    """A paramiko ``SFTPClient`` for ``hook``'s connection, over OpenSSH where it can carry the
    connection exactly (``auto``), always (``openssh``: ValueError naming why not), or never."""
    check_transport(transport)
    refusal = openssh_refusal(hook) if transport != "paramiko" else "ssh_transport='paramiko'"
    if transport == "openssh" and refusal:
        raise ValueError(f"ssh_transport='openssh' cannot carry connection {hook.ssh_conn_id!r}: {refusal}")
    if refusal is None:
        opened = False
        try:
            with _openssh_sftp(hook) as sftp:
                opened = True
                yield sftp
            return
        except OpenSSHFailed as exc:
            if opened or transport == "openssh":
                raise
            if log is not None:
                log.warning("%s; trying paramiko", exc)
    with hook.get_conn() as ssh, ssh.open_sftp() as sftp:
        yield sftp


def server_limits(sftp: Any) -> tuple[int, int] | None:
    """(largest read, largest write) an SFTP session over OpenSSH should ask for; None over a
    paramiko channel, whose packet size sets the limit instead.

    What the server says it takes (``limits@openssh.com``: 255 KiB each for OpenSSH's server,
    asked once per session), capped at 1 MiB; else 32 KiB, which every SFTP server must accept
    (draft-ietf-secsh-filexfer-02 §3 asks for 34000-byte packets). paramiko has no call for SFTP
    extensions but its own request method, which ``posix_rename`` uses the same way.
    """
    from paramiko.sftp import CMD_EXTENDED

    if not isinstance(sftp.sock, OpenSSHSocket):
        return None
    if not hasattr(sftp, "ferry_limits"):
        try:
            _, answer = sftp._request(CMD_EXTENDED, "limits@openssh.com")
            _packet, read, write, _handles = (answer.get_int64() for _ in range(4))
        except (OSError, EOFError):  # no such extension: SFTP_OP_UNSUPPORTED, raised as IOError
            read = write = 0
        sftp.ferry_limits = tuple(min(n, 1024 * 1024) if n else 32768 for n in (read, write))
    return sftp.ferry_limits
