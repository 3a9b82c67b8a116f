"""SFTP sessions over OpenSSH's own ``ssh`` client, for the connections it can express exactly.

Why not paramiko alone: paramiko runs SSH's packet layer in Python, one round of message
building, encryption and MAC per 32 KiB packet, in the task's process; on the stack's two cores
that Python time was S3ToSFTP's wall time (issue 21's profile in bench/RESULTS.md). ``ssh -s
sftp`` does the packet layer in C, in a process of its own, and takes SFTP requests as large as
the server allows (``limits@openssh.com``: 255 KiB for OpenSSH's server) where a paramiko
channel packet holds 32 KiB. paramiko's ``SFTPClient`` still speaks SFTP over the pipe, so every
call the operators make (open, stat, posix-rename, listdir) is the same code either way.

Only a connection of the plain, safe shape takes this way: a key (``key_file``, or a
``private_key`` without a passphrase) and a pinned ``host_key``, no password, no proxy command.
Anything else, or no ``ssh`` on PATH, keeps paramiko, as does ``transport="paramiko"``. ssh gets
the key (copied) and the pinned host key alone in a private temporary directory, removed as soon
as the session is open, and no ssh_config, agent or default identity. A host key OpenSSH refuses
fails the task: paramiko would also consult ``~/.ssh/known_hosts``, so it gets no second try.
Any other failure to open the session is logged and paramiko tries, so a connection that works
with paramiko keeps working. Timeouts, retries and ``look_for_keys`` of the hook are paramiko's
and have no OpenSSH counterpart here beyond ``ConnectTimeout`` and a deadline for the session.
"""

from __future__ import annotations

import math
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

SSHTransport = Literal["auto", "openssh", "paramiko"]

#: paramiko's names for the algorithm kinds of ``disabled_algorithms``, as OpenSSH options.
_ALGORITHM_OPTIONS = {"ciphers": "Ciphers", "macs": "MACs", "kex": "KexAlgorithms",
                      "keys": "HostKeyAlgorithms", "pubkeys": "PubkeyAcceptedAlgorithms"}


#: Seconds ssh may take to open the session (TCP, key exchange, authentication, SFTP version)
#: beyond the connection's ``conn_timeout``; paramiko's banner and auth timeouts are 30 s each.
OPEN_DEADLINE = 60


class OpenSSHFailed(ConnectionError):
    """``ssh`` could not open the SFTP session; the message ends with what ssh said."""

    def __init__(self, message: str, *, host_key_refused: bool = False) -> None:
        super().__init__(message)
        self.host_key_refused = host_key_refused


class OpenSSHSocket:
    """Our end of a socket pair whose other end is ``ssh -s sftp``'s stdin and stdout.

    Not a ``socket.socket`` on purpose: paramiko then reads it with a plain blocking ``recv``
    (end of file when ssh exits) instead of its ``select`` loop, which fails for descriptors past
    1023. A pipelined ``SFTPFile`` also asks ``recv_ready`` (a Channel method), and log lines
    name the channel.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.send, self.recv, self.close, self.fileno = sock.send, sock.recv, sock.close, sock.fileno
        self.settimeout, self.gettimeout, self.setblocking = sock.settimeout, sock.gettimeout, sock.setblocking

    def recv_ready(self) -> bool:
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        return bool(poller.poll(0))

    def get_name(self) -> str:
        return "openssh"


def connection_extra(hook: Any, transport: str = "auto") -> dict[str, Any]:
    """The connection's extras (``private_key`` and its passphrase are not kept on the hook); none
    looked up for ``transport='paramiko'``, which needs only the hook."""
    if transport == "paramiko" or not hook.ssh_conn_id:
        return {}
    return hook.get_connection(hook.ssh_conn_id).extra_dejson


def openssh_refusal(hook: Any, extra: dict[str, Any] | None = None) -> str | None:
    """Why ``hook``'s connection cannot be handed to OpenSSH as it is, or None if it can."""
    if shutil.which("ssh") is None:
        return "no OpenSSH client (ssh) on PATH"
    if hook.password:
        return "the connection has a password"
    if getattr(hook, "host_proxy_cmd", None) or getattr(hook, "host_proxy", None):
        return "the connection uses a proxy command"
    if hook.host_key is None or hook.no_host_key_check or hook.allow_host_key_change:
        return "the connection does not pin a host key (host_key extra)"
    extra = connection_extra(hook) if extra is None else extra
    if extra.get("private_key_passphrase"):
        return "the connection's private key has a passphrase"
    if not (hook.key_file or extra.get("private_key")):
        return "the connection names no key (key_file or private_key extra)"
    if hook.key_file and not (os.path.isfile(hook.key_file) and os.access(hook.key_file, os.R_OK)):
        return f"the key file {hook.key_file} cannot be read"
    if set(hook.disabled_algorithms or {}) - set(_ALGORITHM_OPTIONS):
        return "disabled_algorithms names a kind OpenSSH has no option for"
    return None


def _known_hosts_line(hook: Any) -> str:
    host = hook.remote_host if (hook.port or 22) == 22 else f"[{hook.remote_host}]:{hook.port}"
    return f"{host} {hook.host_key.get_name()} {hook.host_key.get_base64()}\n"


def _path_option(path: Path) -> str:
    """A path as an ssh -o value: quoted (spaces would make it a list) and ``%`` doubled (ssh
    expands ``%`` tokens in file options)."""
    if '"' in str(path):
        raise OpenSSHFailed(f"the temporary directory {path.parent} has a quote in its name")
    return '"' + str(path).replace("%", "%%") + '"'


def openssh_command(hook: Any, directory: Path, extra: dict[str, Any] | None = None) -> list[str]:
    """``ssh … -s host sftp`` for ``hook``'s connection; its key (a copy) and known host written
    into ``directory`` (the caller's private temporary directory), nothing secret on the command line.

    ``-F none``: no ssh_config (paramiko reads none either; the hook's own look-up of proxy
    commands and identity files in ~/.ssh/config is already in ``hook``). ``BatchMode``: fail,
    never ask. ``IdentityFile`` names the copy alone: ssh adds no default identities.
    """
    extra = connection_extra(hook) if extra is None else extra
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(_known_hosts_line(hook))
    key = directory / "key"
    key.touch(mode=0o600)  # made private before the secret is in it
    key.write_text(Path(hook.key_file).read_text() if hook.key_file else extra["private_key"].strip() + "\n")
    options = {
        "BatchMode": "yes", "IdentitiesOnly": "yes", "IdentityAgent": "none", "IdentityFile": _path_option(key),
        "UserKnownHostsFile": _path_option(known_hosts), "GlobalKnownHostsFile": "/dev/null",
        "StrictHostKeyChecking": "yes", "UpdateHostKeys": "no", "CheckHostIP": "no",
        "Compression": "yes" if hook.compress else "no",
    }
    if hook.conn_timeout:
        options["ConnectTimeout"] = str(max(1, math.ceil(hook.conn_timeout)))
    if getattr(hook, "keepalive_interval", 0):
        options["ServerAliveInterval"] = str(int(hook.keepalive_interval))
    if hook.ciphers:
        options["Ciphers"] = ",".join(hook.ciphers)
    for kind, names in (hook.disabled_algorithms or {}).items():
        if names and not (kind == "ciphers" and hook.ciphers):
            options[_ALGORITHM_OPTIONS[kind]] = "-" + ",".join(names)  # "-": OpenSSH's defaults minus these
    command = ["ssh", "-F", "none", "-p", str(hook.port or 22), "-l", hook.username]
    for name, value in options.items():
        command += ["-o", f"{name}={value}"]
    return [*command, "-s", "--", hook.remote_host, "sftp"]


#: What ssh prints when the server's key is not the pinned one.
_HOST_KEY_REFUSALS = ("host key verification failed", "remote host identification has changed")


@contextmanager
def _openssh_sftp(hook: Any, extra: dict[str, Any]) -> Iterator[Any]:
    import paramiko

    directory = Path(tempfile.mkdtemp(prefix="ferry-ssh-"))  # 0700
    ssh: subprocess.Popen[bytes] | None = None
    sock: OpenSSHSocket | None = None
    with tempfile.TemporaryFile() as stderr:
        try:
            ours, theirs = socket.socketpair()
            with theirs:
                ssh = subprocess.Popen(openssh_command(hook, directory, extra), stdin=theirs, stdout=theirs,
                                       stderr=stderr, start_new_session=True)
            # Whole write requests (255 KiB) go into the pair in one send, not pieces.
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
            sock = OpenSSHSocket(ours)
            deadline = (hook.conn_timeout or 0) + OPEN_DEADLINE
            watchdog = threading.Timer(deadline, ssh.kill)  # a server that never answers
            watchdog.start()
            try:
                sftp = paramiko.SFTPClient(sock)
            except (paramiko.SSHException, paramiko.sftp.SFTPError, OSError, EOFError) as exc:
                sock.close()
                _reap(ssh)
                stderr.seek(0)
                said = [line.strip() for line in stderr.read().decode(errors="replace").splitlines() if line.strip()]
                reason = said[-1] if said else (f"no session within {deadline} s" if not watchdog.is_alive() else
                                                f"ssh exited with status {ssh.returncode}")
                refused = any(refusal in line.lower() for line in said for refusal in _HOST_KEY_REFUSALS)
                raise OpenSSHFailed(f"OpenSSH could not open an SFTP session to {hook.remote_host}:"
                                    f"{hook.port or 22}: {reason}", host_key_refused=refused) from exc
            finally:
                watchdog.cancel()
                # ssh read the key and the known host while logging in: they need not stay on disk.
                shutil.rmtree(directory, ignore_errors=True)
            with sftp:
                yield sftp
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            if sock is not None:
                sock.close()
            if ssh is not None:
                _reap(ssh)


def _reap(ssh: subprocess.Popen[bytes]) -> None:
    """Wait for ssh, whose socket is closed, to exit; kill it if it has not within 10 s."""
    try:
        ssh.wait(timeout=10)
    except subprocess.TimeoutExpired:
        ssh.kill()
        ssh.wait()


def check_transport(transport: str) -> None:
    if transport not in ("auto", "openssh", "paramiko"):
        raise ValueError(f"ssh_transport must be 'auto', 'openssh' or 'paramiko', not {transport!r}")


@contextmanager
def sftp_session(hook: Any, transport: SSHTransport = "auto", log: Any = None,
                 extra: dict[str, Any] | None = None) -> Iterator[Any]:
    """A paramiko ``SFTPClient`` for ``hook``'s connection, over OpenSSH where it can carry the
    connection exactly (``auto``), always (``openssh``: ValueError naming why not), or never.

    ``extra`` is the connection's extras (:func:`connection_extra`) when the caller has them
    already: a session opened on another thread then looks nothing up there.
    """
    check_transport(transport)
    if extra is None:  # looked up once per session
        extra = connection_extra(hook, transport)
    refusal = openssh_refusal(hook, extra) if transport != "paramiko" else "ssh_transport='paramiko'"
    if transport == "openssh" and refusal:
        raise ValueError(f"ssh_transport='openssh' cannot carry connection {hook.ssh_conn_id!r}: {refusal}")
    if refusal is None:
        opened = False
        try:
            with _openssh_sftp(hook, extra) as sftp:
                opened = True
                yield sftp
            return
        except OpenSSHFailed as exc:
            if opened or transport == "openssh" or exc.host_key_refused:
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
            packet, read, write, _handles = (answer.get_int64() for _ in range(4))
        except (OSError, EOFError):  # no such extension: SFTP_OP_UNSUPPORTED, raised as IOError
            packet = read = write = 0
        if packet:  # a request's header must fit in the packet beside its data
            read, write = (min(n, packet - 1024) if n else 0 for n in (read, write))
        sftp.ferry_limits = tuple(min(n, 1024 * 1024) if n else 32768 for n in (read, write))
    return sftp.ferry_limits
