"""SFTPToS3Operator against the test stack's OpenSSH sshd and S3."""

from __future__ import annotations

import os
import re

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
    with pytest.raises(AirflowException) as failure:
        copy(str(tmp_path / "f.bin"), bucket, "f.bin")
    assert str(failure.value) == (f"sftp:{tmp_path}/f.bin gave 990 of the 1,000 bytes it had when opened, and did not "
                                  f"change (size check failed); nothing was written to s3://{bucket}/f.bin")
    assert keys(s3, bucket) == [] and open_uploads(s3, bucket) == []


MiB = 1024 * 1024


class Appender:
    """A writer that keeps appending to a file, every few milliseconds, until stopped."""

    def __init__(self, path) -> None:
        import threading

        self.path, self.stop = path, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with open(self.path, "ab", buffering=0) as out:
            while not self.stop.is_set():
                out.write(b"y" * 4096)
                self.stop.wait(0.002)

    def __enter__(self) -> Appender:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join()


def test_a_file_still_being_written_is_refused(s3, bucket, tmp_path):
    """The operator reads the size it found when it opened the file; a writer appends all the while."""
    source = tmp_path / "growing.log"
    with open(source, "wb") as out:
        for _ in range(6):
            out.write(os.urandom(10 * MiB))
    with Appender(source), pytest.raises(AirflowException) as failure:
        copy(str(source), bucket, "in/growing.log", part_size=5 * MiB)
    message = str(failure.value)
    assert re.match(rf"sftp:{source} changed while it was read \(size [\d,]+ → [\d,]+ bytes, mtime ", message), message
    assert message.endswith(f"; nothing was written to s3://{bucket}/in/growing.log"), message
    assert "\n" not in message
    assert keys(s3, bucket) == [] and open_uploads(s3, bucket) == []


def rewrite_after_first_window(monkeypatch, change) -> None:
    """Fault injection for timing: ``change()`` runs once the first window has been read."""
    import ferry.transfers.sftp_to_s3 as module

    real = module._windows

    def windows(remote, size):
        for number, window in enumerate(real(remote, size)):
            yield window
            if number == 0:
                change()

    monkeypatch.setattr(module, "_windows", windows)


def test_a_file_rewritten_in_place_while_read_is_refused(s3, bucket, tmp_path, monkeypatch):
    """Same size, new content and mtime: only the mtime tells, and it does."""
    source = tmp_path / "daily.csv"
    source.write_bytes(os.urandom(20 * MiB))
    mtime = source.stat().st_mtime

    def rewrite() -> None:
        with open(source, "r+b") as out:
            out.write(os.urandom(20 * MiB))
        os.utime(source, (mtime + 60, mtime + 60))  # a second later at least: SFTP mtimes are whole seconds

    rewrite_after_first_window(monkeypatch, rewrite)
    with pytest.raises(AirflowException) as failure:
        copy(str(source), bucket, "in/daily.csv", part_size=5 * MiB)
    message = str(failure.value)
    assert message.startswith(f"sftp:{source} changed while it was read (size 20,971,520 bytes, mtime "), message
    assert message.endswith(f"; nothing was written to s3://{bucket}/in/daily.csv"), message
    assert keys(s3, bucket) == [] and open_uploads(s3, bucket) == []


def test_a_file_truncated_while_read_is_refused_not_blamed_on_sftp(s3, bucket, tmp_path, monkeypatch):
    """Reading past the new end gets SFTP's EOF status: that is the file changing, not SFTP failing."""
    source = tmp_path / "rotated.log"
    source.write_bytes(os.urandom(20 * MiB))
    rewrite_after_first_window(monkeypatch, lambda: os.truncate(source, 1000))
    with pytest.raises(AirflowException) as failure:
        copy(str(source), bucket, "in/rotated.log", part_size=5 * MiB)
    message = str(failure.value)
    assert message.startswith(f"sftp:{source} changed while it was read (size 20,971,520 → 1,000 bytes"), message
    assert "SFTP failed" not in message
    assert message.endswith(f"; nothing was written to s3://{bucket}/in/rotated.log"), message
    assert keys(s3, bucket) == [] and open_uploads(s3, bucket) == []
