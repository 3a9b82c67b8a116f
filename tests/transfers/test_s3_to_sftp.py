"""S3ToSFTPOperator against the test stack's S3 endpoint and OpenSSH sshd."""

from __future__ import annotations

import os

import pytest
from airflow.sdk.exceptions import AirflowException

from ferry.transfers import S3ToSFTPOperator
from ferry.transfers.sftp_sink import put_atomically

pytestmark = pytest.mark.integration


def copy(bucket: str, key: str, path: str):
    return S3ToSFTPOperator(task_id="copy", s3_bucket=bucket, s3_key=key, sftp_path=path).execute({})


def test_object_lands_in_missing_directories_with_no_temp_file(s3, bucket, tmp_path):
    body = os.urandom(20 * 1024 * 1024 + 17)  # several chunks, not a multiple of the chunk size
    s3.put_object(Bucket=bucket, Key="in/data.bin", Body=body)
    target = tmp_path / "a" / "b" / "data.bin"
    manifest = copy(bucket, "in/data.bin", str(target))
    assert target.read_bytes() == body
    assert manifest["files"] == [{"s3_key": "in/data.bin", "sftp_path": str(target), "bytes": len(body)}]
    assert os.listdir(target.parent) == ["data.bin"]


def test_prefix_copies_every_object_keeping_names(s3, bucket, tmp_path):
    for key in ("exp/a.csv", "exp/sub/b.csv", "other/c.csv"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    manifest = copy(bucket, "exp/", str(tmp_path / "out"))
    assert sorted(f["s3_key"] for f in manifest["files"]) == ["exp/a.csv", "exp/sub/b.csv"]
    assert (tmp_path / "out" / "a.csv").read_bytes() == b"exp/a.csv"
    assert (tmp_path / "out" / "sub" / "b.csv").read_bytes() == b"exp/sub/b.csv"


def test_directory_target_keeps_the_object_name_and_replaces_old_file(s3, bucket, tmp_path):
    (tmp_path / "report.json").write_text("old")
    s3.put_object(Bucket=bucket, Key="x/report.json", Body=b"new")
    copy(bucket, "x/report.json", str(tmp_path) + "/")
    assert (tmp_path / "report.json").read_text() == "new"


def test_empty_object(s3, bucket, tmp_path):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    copy(bucket, "empty", str(tmp_path / "empty"))
    assert (tmp_path / "empty").read_bytes() == b""


def test_missing_object_is_a_clear_error_and_writes_nothing(s3, bucket, tmp_path):
    with pytest.raises(AirflowException, match=f"s3://{bucket}/nope cannot be read"):
        copy(bucket, "nope", str(tmp_path / "nope"))
    with pytest.raises(AirflowException, match="no objects under"):
        copy(bucket, "empty-prefix/", str(tmp_path / "dir"))
    assert list(tmp_path.iterdir()) == []


def test_interrupted_stream_leaves_no_file_and_keeps_the_old_one(stack, tmp_path):
    from airflow.providers.ssh.hooks.ssh import SSHHook

    target = tmp_path / "keep.txt"
    target.write_text("old content")

    def broken():
        yield b"x" * 1_000_000
        raise ConnectionError("S3 stream reset")

    with SSHHook(ssh_conn_id="sftp_default").get_conn() as ssh, ssh.open_sftp() as sftp:
        with pytest.raises(ConnectionError):
            put_atomically(sftp, broken(), str(target), expected_size=2_000_000)
        with pytest.raises(OSError, match="size check failed"):
            put_atomically(sftp, iter([b"short"]), str(target), expected_size=10)
    assert target.read_text() == "old content"
    assert os.listdir(tmp_path) == ["keep.txt"]
