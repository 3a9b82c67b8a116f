"""S3ToSFTPOperator against the test stack's S3 endpoint and OpenSSH sshd."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException

from ferry.transfers import S3ToSFTPOperator
from ferry.transfers.failures import SourceChanged
from ferry.transfers.sftp_sink import put_atomically
from tests.transfers.conftest import on_operator_s3_calls

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


def ssh_children() -> list[int]:
    """This process's ssh children (the OpenSSH transport's), from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and stat.with_name("comm").read_text().strip() == "ssh":
                children.append(int(stat.parent.name))
    return children


def test_missing_object_is_a_clear_error_and_writes_nothing(s3, bucket, tmp_path):
    with pytest.raises(AirflowException, match=f"s3://{bucket}/nope cannot be read"):
        copy(bucket, "nope", str(tmp_path / "nope"))
    with pytest.raises(AirflowException, match="no objects under"):
        copy(bucket, "empty-prefix/", str(tmp_path / "dir"))
    # The SSH session opened while the objects were listed is closed with the failure.
    assert ssh_children() == []
    assert list(tmp_path.iterdir()) == []
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
        with pytest.raises(SourceChanged, match="size check failed"):
            put_atomically(sftp, iter([b"short"]), str(target), expected_size=10)
    assert target.read_text() == "old content"
    assert os.listdir(tmp_path) == ["keep.txt"]



class KeysSeaweedFSRefuses:
    """The real S3 client, plus objects under keys that AWS accepts and SeaweedFS refuses.

    SeaweedFS answers InvalidRequest to keys with ``.`` or ``..`` segments and folds ``//`` into
    ``/`` (test_seaweedfs_refuses_dot_segments_and_folds_double_slashes); AWS stores them as
    given. So listing and reading those few keys are played here; everything else is the real
    S3, and the SFTP side is the real sshd.
    """

    def __init__(self, client, extra: dict[str, bytes]):
        self._client, self._extra = client, extra

    def __getattr__(self, name):
        return getattr(self._client, name)

    def get_paginator(self, operation):
        real, extra = self._client.get_paginator(operation), self._extra

        class Paginator:
            def paginate(self, **kwargs):
                pages = list(real.paginate(**kwargs))
                added = [{"Key": k, "Size": len(v)} for k, v in extra.items() if k.startswith(kwargs["Prefix"])]
                pages[-1] = {**pages[-1], "Contents": sorted([*pages[-1].get("Contents", []), *added],
                                                             key=lambda item: item["Key"])}
                return pages

        return Paginator()

    def head_object(self, *, Bucket, Key):
        if Key in self._extra:
            return {"ContentLength": len(self._extra[Key])}
        return self._client.head_object(Bucket=Bucket, Key=Key)

    def get_object(self, *, Bucket, Key, **kwargs):
        if Key in self._extra:
            from botocore.response import StreamingBody

            return {"Body": StreamingBody(io.BytesIO(self._extra[Key]), len(self._extra[Key]))}
        return self._client.get_object(Bucket=Bucket, Key=Key, **kwargs)


@pytest.fixture
def hostile_s3(s3, monkeypatch):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    def install(extra: dict[str, bytes]) -> None:
        monkeypatch.setattr(S3Hook, "get_conn", lambda self: KeysSeaweedFSRefuses(s3, extra))

    return install


def test_seaweedfs_refuses_dot_segments_and_folds_double_slashes(s3, bucket):
    """A difference from AWS S3, which stores every one of these keys as given."""
    from botocore.exceptions import ClientError

    for key in ("pfx/../escape.txt", "pfx/./x.txt", "dir/.."):
        with pytest.raises(ClientError, match="InvalidRequest"):
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3.put_object(Bucket=bucket, Key="pfx//abs/x.txt", Body=b"x")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["pfx/abs/x.txt"]


@pytest.mark.parametrize("hostile", ["pfx/../escape.txt", "pfx/a/../../x.txt", "pfx//{outside}/x.txt",
                                     "pfx/./x.txt", "pfx/a//b.txt", "pfx/.."])
def test_keys_that_would_leave_the_target_fail_before_anything_is_written(s3, hostile_s3, bucket, tmp_path,
                                                                          hostile):
    outside = tmp_path / "outside"
    outside.mkdir()
    key = hostile.format(outside=str(outside).lstrip("/"))
    s3.put_object(Bucket=bucket, Key="pfx/fine.txt", Body=b"fine")
    hostile_s3({key: b"planted"})
    target = tmp_path / "base" / "target"
    with pytest.raises(AirflowException, match=re.escape(f"object key {key!r} would be written outside")):
        copy(bucket, "pfx/", str(target))
    assert not (tmp_path / "base").exists()  # not even the fine object
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_unsafe_keys_can_be_skipped_with_a_warning(s3, hostile_s3, bucket, tmp_path, capfd):
    s3.put_object(Bucket=bucket, Key="pfx/fine.txt", Body=b"fine")
    hostile_s3({"pfx/../escape.txt": b"planted", "pfx//abs.txt": b"planted"})
    target = tmp_path / "target"
    manifest = S3ToSFTPOperator(task_id="copy", s3_bucket=bucket, s3_key="pfx/", sftp_path=str(target),
                                unsafe_keys="skip").execute({})
    assert [f["s3_key"] for f in manifest["files"]] == ["pfx/fine.txt"]
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == ["target/fine.txt"]
    logged = "".join(capfd.readouterr())
    assert "skipped: object key 'pfx/../escape.txt' would be written outside" in logged
    assert "skipped: object key 'pfx//abs.txt' would be written outside" in logged


def test_single_object_named_dot_dot_is_refused(hostile_s3, bucket, tmp_path):
    hostile_s3({"dir/..": b"planted"})
    with pytest.raises(AirflowException, match="would be written outside"):
        copy(bucket, "dir/..", str(tmp_path / "target") + "/")
    assert list(tmp_path.iterdir()) == []


def test_an_object_replaced_before_it_is_read_is_not_copied(s3, bucket, tmp_path, monkeypatch):
    """The second object of a prefix is replaced after the plan listed it, just before its GET.

    A fault injected on purpose: the operator's own boto3 client gets a ``before-parameter-build``
    hook that overwrites the object on the real server; the GET, pinned to the listed ETag, is
    refused. The first file is complete; the second is not written, and the message says both.
    """
    s3.put_object(Bucket=bucket, Key="exp/1.csv", Body=b"one")
    s3.put_object(Bucket=bucket, Key="exp/2.csv", Body=b"two")
    listed = s3.head_object(Bucket=bucket, Key="exp/2.csv")["ETag"]

    def replace(params, **kwargs) -> None:
        if params["Key"] == "exp/2.csv":
            s3.put_object(Bucket=bucket, Key="exp/2.csv", Body=b"a newer two")

    on_operator_s3_calls(monkeypatch, ("before-parameter-build.s3.GetObject", replace))
    with pytest.raises(AirflowException) as failure:
        copy(bucket, "exp/", str(tmp_path / "out"))
    message = str(failure.value)
    assert "\n" not in message
    assert f"s3://{bucket}/exp/2.csv changed while it was read (its ETag is no longer {listed})" in message
    assert f"nothing was written at sftp:{tmp_path}/out/2.csv" in message and "1 earlier files are complete" in message
    assert (tmp_path / "out" / "1.csv").read_bytes() == b"one"
    assert os.listdir(tmp_path / "out") == ["1.csv"]
