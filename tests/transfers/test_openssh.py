"""SFTP over OpenSSH's ``ssh`` (ferry.transfers.openssh) against the test stack's real sshd.

Both transports carry the same operators: each test that moves data runs over OpenSSH and over
paramiko and must give the same files. Hostile cases: a wrong pinned host key, a host name that
would be read as an ssh option, a private key from the connection that must not outlive the task.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from airflow.providers.ssh.hooks.ssh import SSHHook
from airflow.sdk.exceptions import AirflowException

from ferry.transfers import S3ToSFTPOperator, SFTPToS3Operator
from ferry.transfers.openssh import (
    OpenSSHFailed,
    OpenSSHSocket,
    openssh_command,
    openssh_refusal,
    server_limits,
    sftp_session,
)
from tests.transfers.conftest import get_body

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("stack")]


def connection(monkeypatch, name: str, **changes) -> str:
    """A copy of the stack's ``sftp_default`` with ``changes`` (``extra`` keys merged), as ``name``."""
    conn = json.loads(os.environ["AIRFLOW_CONN_SFTP_DEFAULT"])
    conn["extra"].update(changes.pop("extra", {}))
    for key in changes.pop("drop_extra", ()):
        conn["extra"].pop(key)
    conn.update(changes)
    monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", json.dumps(conn))
    return name


def open_session(conn_id: str) -> None:
    with sftp_session(SSHHook(ssh_conn_id=conn_id), "openssh"):
        pass


def test_the_stack_connection_goes_over_openssh_with_the_servers_request_sizes():
    hook = SSHHook(ssh_conn_id="sftp_default")
    assert openssh_refusal(hook) is None
    with sftp_session(hook) as sftp:
        assert isinstance(sftp.sock, OpenSSHSocket)
        assert server_limits(sftp) == (261120, 261120)  # OpenSSH sftp-server: 256 KiB less 1 KiB
    with sftp_session(SSHHook(ssh_conn_id="sftp_default"), "paramiko") as sftp:
        assert not isinstance(sftp.sock, OpenSSHSocket)
        assert server_limits(sftp) is None


@pytest.mark.parametrize("transport", ["openssh", "paramiko"])
def test_both_transports_copy_the_same_bytes_both_ways(s3, bucket, tmp_path, transport):
    body = os.urandom(9 * 1024 * 1024 + 5)  # two S3 ranges, many SFTP requests, none of them full
    s3.put_object(Bucket=bucket, Key="src/data.bin", Body=body)
    S3ToSFTPOperator(task_id="t", s3_bucket=bucket, s3_key="src/data.bin", sftp_path=str(tmp_path / "out.bin"),
                     ssh_transport=transport).execute({})
    assert (tmp_path / "out.bin").read_bytes() == body
    assert os.listdir(tmp_path) == ["out.bin"]
    SFTPToS3Operator(task_id="t", sftp_path=str(tmp_path / "out.bin"), s3_bucket=bucket, s3_key="back/data.bin",
                     ssh_transport=transport, part_size=5 * 1024 * 1024).execute({})
    assert get_body(s3, bucket, "back/data.bin") == body


def test_connections_openssh_cannot_express_keep_paramiko(monkeypatch):
    no_pin = connection(monkeypatch, "sftp_no_pin", drop_extra=["host_key"], extra={"no_host_key_check": "true"})
    password = connection(monkeypatch, "sftp_password", password="secret")
    assert "pin a host key" in openssh_refusal(SSHHook(ssh_conn_id=no_pin))
    assert "password" in openssh_refusal(SSHHook(ssh_conn_id=password))
    with sftp_session(SSHHook(ssh_conn_id=no_pin)) as sftp:  # auto: works, over paramiko
        assert not isinstance(sftp.sock, OpenSSHSocket)
        assert sftp.stat("/").st_size is not None
    with pytest.raises(ValueError, match="cannot carry connection 'sftp_password': the connection has a password"):
        open_session(password)
    with pytest.raises(ValueError, match="ssh_transport must be"):
        S3ToSFTPOperator(task_id="t", s3_bucket="b", s3_key="k", sftp_path="/p", ssh_transport="telnet")


def test_a_wrong_pinned_host_key_fails_the_task_with_no_second_try(monkeypatch, s3, bucket, tmp_path, caplog):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                    serialization.PublicFormat.OpenSSH).decode()
    name = connection(monkeypatch, "sftp_wrong_host", extra={"host_key": other})
    with pytest.raises(OpenSSHFailed, match=r"OpenSSH could not open an SFTP session to 127\.0\.0\.1:\d+: "
                                              r"Host key verification failed\."):
        open_session(name)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    # auto: no second try with paramiko, which would also trust ~/.ssh/known_hosts
    monkeypatch.setattr(SSHHook, "get_conn", lambda self: pytest.fail("paramiko was tried"))
    with pytest.raises(AirflowException, match="Host key verification failed") as failure:
        S3ToSFTPOperator(task_id="t", s3_bucket=bucket, s3_key="k", sftp_path=str(tmp_path / "k"),
                         sftp_conn_id=name).execute({})
    assert "\n" not in str(failure.value)
    assert os.listdir(tmp_path) == []


def test_a_host_name_is_never_read_as_an_ssh_option(monkeypatch, tmp_path):
    planted = tmp_path / "planted"
    name = connection(monkeypatch, "sftp_hostile_host", host=f"-oProxyCommand=touch {planted}")
    with pytest.raises(OpenSSHFailed, match="OpenSSH could not open an SFTP session"):
        open_session(name)
    assert not planted.exists()


def test_a_private_key_from_the_connection_is_never_on_the_command_line_nor_left_on_disk(monkeypatch, tmp_path):
    key_file = json.loads(os.environ["AIRFLOW_CONN_SFTP_DEFAULT"])["extra"]["key_file"]
    key_text = Path(key_file).read_text()
    name = connection(monkeypatch, "sftp_inline_key", drop_extra=["key_file"], extra={"private_key": key_text})
    hook = SSHHook(ssh_conn_id=name)
    before = set(Path(tempfile.gettempdir()).glob("ferry-ssh-*"))
    command = openssh_command(hook, tmp_path)
    assert (tmp_path / "key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "key").read_text().strip() == key_text.strip()
    assert not any(key_text.splitlines()[1] in part for part in command)
    with sftp_session(hook, "openssh") as sftp:
        assert isinstance(sftp.sock, OpenSSHSocket)
        assert sftp.stat("/").st_size is not None
        # ssh read the key while logging in: its copy is gone while the session goes on.
        assert set(Path(tempfile.gettempdir()).glob("ferry-ssh-*")) == before


def test_a_failed_session_fails_the_task_in_one_line_and_writes_nothing(monkeypatch, s3, bucket, tmp_path):
    name = connection(monkeypatch, "sftp_refused", login="nobody-here")
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    with pytest.raises(AirflowException) as failure:
        S3ToSFTPOperator(task_id="t", s3_bucket=bucket, s3_key="k", sftp_path=str(tmp_path / "k"),
                         sftp_conn_id=name, ssh_transport="openssh").execute({})
    assert "\n" not in str(failure.value)
    assert "Permission denied" in str(failure.value)
    assert os.listdir(tmp_path) == []


def test_no_default_identity_and_no_token_expansion(monkeypatch, tmp_path):
    """A key file that cannot be read keeps paramiko (ssh would fall back to ~/.ssh/id_*), and the
    private directory's paths reach ssh quoted, their ``%`` doubled (ssh expands ``%`` tokens)."""
    missing = connection(monkeypatch, "sftp_missing_key", extra={"key_file": str(tmp_path / "nope")})
    assert "cannot be read" in openssh_refusal(SSHHook(ssh_conn_id=missing))
    odd = tmp_path / "a %d b"
    odd.mkdir()
    command = openssh_command(SSHHook(ssh_conn_id="sftp_default"), odd)
    assert f'IdentityFile="{tmp_path}/a %%d b/key"' in command
    assert f'UserKnownHostsFile="{tmp_path}/a %%d b/known_hosts"' in command
    assert "-i" not in command
