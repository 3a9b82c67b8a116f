"""One real round trip per service, through the Airflow providers' hooks and the stack's
connections (the ``AIRFLOW_CONN_*`` variables that ``ferry stack env`` exports)."""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.integration


def test_sql_on_postgres(stack):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id="inside_airbnb")
    hook.run("CREATE TABLE IF NOT EXISTS round_trip (id int, note text)")
    hook.run("TRUNCATE round_trip")
    hook.insert_rows("round_trip", [(1, "één"), (2, None)])
    assert hook.get_records("SELECT id, note FROM round_trip ORDER BY id") == [(1, "één"), (2, None)]
    assert hook.get_first("SELECT current_database()") == ("inside_airbnb",)


def test_put_get_on_s3(stack):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id="aws_default")
    hook.create_bucket("round-trip")
    hook.load_bytes(b"\x00\x01binary", key="a/b.bin", bucket_name="round-trip", replace=True)
    assert hook.get_key("a/b.bin", "round-trip").get()["Body"].read() == b"\x00\x01binary"
    assert hook.get_conn().meta.endpoint_url == stack.settings.url("s3")


def test_put_get_over_sftp(stack, tmp_path):
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    local = tmp_path / "in.txt"
    local.write_bytes(b"over sftp\n")
    remote_dir = str(tmp_path / "remote")
    hook = SFTPHook(ssh_conn_id="sftp_default")
    hook.create_directory(remote_dir)
    hook.store_file(f"{remote_dir}/out.txt", str(local))
    hook.retrieve_file(f"{remote_dir}/out.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_bytes() == b"over sftp\n"


def test_command_over_ssh(stack):
    from airflow.providers.ssh.hooks.ssh import SSHHook

    hook = SSHHook(ssh_conn_id="ssh_default")
    with hook.get_conn() as client:
        status, stdout, _ = hook.exec_ssh_client_command(client, "echo ok", get_pty=False, environment=None)
    assert (status, stdout) == (0, b"ok\n")


def test_wrong_host_key_is_refused(stack, monkeypatch):
    """Host keys are verified: a server presenting another key than the connection's is refused."""
    from airflow.providers.ssh.hooks.ssh import SSHHook
    from paramiko.ssh_exception import SSHException

    conn = json.loads(os.environ["AIRFLOW_CONN_SSH_DEFAULT"])
    # A syntactically valid ed25519 key that is not the stack's.
    conn["extra"]["host_key"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    monkeypatch.setenv("AIRFLOW_CONN_SSH_DEFAULT", json.dumps(conn))
    with pytest.raises(SSHException):
        SSHHook(ssh_conn_id="ssh_default").get_conn()
