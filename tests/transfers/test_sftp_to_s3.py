"""SFTPToS3Operator against the test stack's OpenSSH sshd and S3."""

from __future__ import annotations

import os

import pytest
from airflow.sdk.exceptions import AirflowException

from ferry.transfers import SFTPToS3Operator
from tests.transfers.conftest import get_body, keys, open_uploads

pytestmark = pytest.mark.integration


def copy(path: str, bucket: str, key: str, **kwargs) -> dict:
    return SFTPToS3Operator(task_id="copy", sftp_path=path, s3_bucket=bucket, s3_key=key, **kwargs).execute({})


def test_file_becomes_an_object_byte_for_byte(s3, bucket, tmp_path):
    body = os.urandom(20 * 1024 * 1024 + 17)  # several windows and parts, none of them full
    (tmp_path / "data.csv").write_bytes(body)
    manifest = copy(str(tmp_path / "data.csv"), bucket, "in/data.csv", part_size=5 * 1024 * 1024)
    assert get_body(s3, bucket, "in/data.csv") == body
    assert s3.head_object(Bucket=bucket, Key="in/data.csv")["ContentType"] == "text/csv"
    assert manifest["files"] == [{"sftp_path": str(tmp_path / "data.csv"), "s3_key": "in/data.csv",
                                  "bytes": len(body)}]


def test_directory_copies_every_file_under_it(s3, bucket, tmp_path):
    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out" / "a.txt").write_bytes(b"a")
    (tmp_path / "out" / "sub" / "b.txt").write_bytes(b"")
    (tmp_path / "out" / "link").symlink_to(tmp_path / "out" / "a.txt")
    copy(str(tmp_path / "out") + "/", bucket, "landing/")
    assert keys(s3, bucket) == ["landing/a.txt", "landing/sub/b.txt"]
    assert get_body(s3, bucket, "landing/sub/b.txt") == b""


def test_missing_file_is_a_clear_error_and_writes_nothing(s3, bucket, tmp_path):
    with pytest.raises(AirflowException, match=f"sftp:{tmp_path}/nope cannot be read"):
        copy(str(tmp_path / "nope"), bucket, "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AirflowException, match="no files under"):
        copy(str(tmp_path / "empty") + "/", bucket, "x/")
    assert keys(s3, bucket) == [] and open_uploads(s3, bucket) == []


def test_a_file_that_shrinks_while_read_leaves_no_object(s3, bucket, tmp_path, monkeypatch):
    import ferry.transfers.sftp_to_s3 as module

    (tmp_path / "f.bin").write_bytes(b"x" * 1000)
    real = module._windows
    monkeypatch.setattr(module, "_windows", lambda remote, size: real(remote, size - 10))
    with pytest.raises(AirflowException, match=r"size check failed.*nothing was written to s3://"):
        copy(str(tmp_path / "f.bin"), bucket, "f.bin")
    assert keys(s3, bucket) == [] and open_uploads(s3, bucket) == []
