"""Failure lines that are true: which system failed (SFTP only when SFTP did), and, for an export
that fails while making its objects visible, exactly which objects were written and which not."""

from __future__ import annotations

import errno
import gzip
import socket
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException

from ferry.transfers import PostgresToS3Operator
from ferry.transfers.failures import _failing_system
from tests.transfers.conftest import get_body, keys, on_operator_s3_calls, open_uploads
from tests.transfers.test_crashes import kill_tree

# -- which system failed: SFTP only for what comes from paramiko ---------------------------------


def raised(call) -> BaseException:
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def sftp_status(code: int, text: str):
    """What paramiko's SFTP client raises for a status the server sent (no server needed)."""
    import paramiko

    msg = paramiko.Message()
    msg.add_int(code)
    msg.add_string(text)
    msg.rewind()
    return lambda: paramiko.SFTPClient._convert_status(None, msg)


def timed_out_channel_read() -> None:
    import paramiko

    channel = paramiko.Channel(1)
    channel.settimeout(0.01)
    channel.recv(1)


def refused_ssh_connection() -> None:
    import paramiko

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when connect runs: nothing listens there
    paramiko.SSHClient().connect("127.0.0.1", port=port, timeout=5)


@pytest.mark.parametrize("call", [
    sftp_status(2, "No such file"),  # FileNotFoundError
    sftp_status(3, "Permission denied"),  # PermissionError
    sftp_status(4, "Failure"),  # OSError
    sftp_status(1, "End of file"),  # EOFError
    timed_out_channel_read,  # socket.timeout raised by paramiko's channel
    refused_ssh_connection,  # NoValidConnectionsError, an OSError
], ids=["no-such-file", "permission", "failure", "eof", "timeout", "refused"])
def test_what_paramiko_raises_is_sftp(call):
    assert _failing_system(raised(call)) == "SFTP failed"


def test_paramikos_own_exceptions_are_sftp_wherever_raised():
    import paramiko

    assert _failing_system(paramiko.SSHException("Server connection dropped")) == "SFTP failed"
    assert _failing_system(paramiko.AuthenticationException("no")) == "SFTP failed"


def raise_local_disk_error() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def read_truncated_gzip() -> None:
    gzip.decompress(gzip.compress(b"x" * 10_000)[:-8])


@pytest.mark.parametrize("call", [
    raise_local_disk_error,
    lambda: Path("/nonexistent/ferry/file").read_bytes(),  # FileNotFoundError from the local filesystem
    read_truncated_gzip,  # EOFError, not from SFTP
    lambda: socket.create_connection(("127.0.0.1", 1), timeout=5),  # ConnectionRefusedError, not paramiko's
], ids=["disk", "local-open", "gzip-eof", "socket"])
def test_other_os_errors_are_not_blamed_on_sftp(call):
    assert _failing_system(raised(call)) is None


def test_an_sftp_error_passed_through_a_thread_is_still_sftp():
    """The operators read SFTP in a thread and re-raise its error in the consumer."""
    from ferry.transfers.sftp_sink import prefetched

    def chunks():
        yield b"x"
        sftp_status(4, "Failure")()

    error = raised(lambda: list(prefetched(chunks())))
    assert _failing_system(error) == "SFTP failed"


# -- an export that fails while committing its objects --------------------------------------------


def export(bucket: str, query: str, **kwargs) -> dict:
    return PostgresToS3Operator(task_id="export", postgres_conn_id="inside_airbnb", query=query, s3_bucket=bucket,
                                s3_key="split/n.csv", max_rows_per_file=5000, **kwargs).execute({})


@pytest.mark.integration
def test_s3_killed_between_completions_says_which_objects_were_written(stack, pg, s3, bucket, monkeypatch):
    """A run of 4 parts, then a run of 3 that loses S3 (kill -9) after completing its first part.

    The kill is triggered by a botocore ``before-call`` hook on the operator's S3 client, for
    timing: it fires as the second CompleteMultipartUpload is about to be sent.
    """
    old = "SELECT id, 'old' AS run FROM numbers WHERE id <= 20000 ORDER BY id"
    new = "SELECT id, 'new' AS run FROM numbers WHERE id <= 15000 ORDER BY id"
    assert len(export(bucket, old)["files"]) == 4
    before = {key: get_body(s3, bucket, key) for key in keys(s3, bucket)}

    s3_service = stack.service("s3")
    completions = []

    def kill_before_second_completion(**_kwargs) -> None:
        completions.append(1)
        if len(completions) == 2:
            kill_tree(int(s3_service.pid_file.read_text()))

    on_operator_s3_calls(monkeypatch, ("before-call.s3.CompleteMultipartUpload", kill_before_second_completion))
    try:
        with pytest.raises(AirflowException) as failure:
            export(bucket, new)
    finally:
        stack.up(["s3"], echo=lambda line: None)  # what `ferry stack up` does
    message = str(failure.value)
    url = f"s3://{bucket}/split/n-part-"
    assert "\n" not in message
    assert message.startswith("S3 failed after 15,000 rows ("), message
    assert message.endswith(
        f"; 1 of 3 objects were written: {url}00000.csv; {url}00001.csv, {url}00002.csv were not written and keep "
        "what they held before (their uploads stay open until the next run of this task aborts them); "
        f"{url}00003.csv, left by an earlier, larger run, was not deleted"), message

    assert get_body(s3, bucket, "split/n-part-00000.csv").splitlines()[1] == b"1,new"
    for key in ("split/n-part-00001.csv", "split/n-part-00002.csv", "split/n-part-00003.csv"):
        assert get_body(s3, bucket, key) == before[key], key
    assert sorted(open_uploads(s3, bucket)) == ["split/n-part-00001.csv", "split/n-part-00002.csv"]

    monkeypatch.undo()
    assert len(export(bucket, new)["files"]) == 3
    assert keys(s3, bucket) == [f"split/n-part-0000{i}.csv" for i in range(3)]
    assert open_uploads(s3, bucket) == []
