"""Servers killed mid-transfer (``kill -9``): the task fails with one line saying what was and
was not written, nothing partial sits at a final name, every complete object survives the
restart (as ``ferry stack up`` does it), and the next run cleans up and succeeds."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from airflow.sdk.exceptions import AirflowException

from ferry.transfers import PostgresToS3Operator, S3ToSFTPOperator, SFTPToS3Operator
from ferry.transfers.sftp_sink import temporary_path
from tests.transfers.conftest import get_body, open_uploads

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
#: About 45 MB of csv that takes at least 6 s to read (a pause every 50,000 rows), so there
#: is time to kill a server after the first part is uploaded and before the last.
SLOW_QUERY = """
    SELECT g AS id, md5(g::text) AS word, CASE WHEN g %% 50000 = 0 THEN pg_sleep(%(pause)s) END AS pause
    FROM generate_series(1, 1000000) AS g
"""


def kill_tree(pid: int) -> None:
    """SIGKILL a server and every process it started, as a crash (or the OOM killer) would."""
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    # Until they are gone, a restart would see the server still running and wait for it to answer.
    psutil.wait_procs(processes, timeout=10)


def run_in_thread(call: Callable[[], object]) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def wait_for(condition: Callable[[], bool], thread: threading.Thread, outcome: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert thread.is_alive(), f"the transfer ended before the kill: {outcome}"
        assert time.monotonic() < deadline, "the transfer never got under way"
        time.sleep(0.05)


def slow_export(bucket: str, key: str, pause: float) -> PostgresToS3Operator:
    return PostgresToS3Operator(task_id="export", postgres_conn_id="inside_airbnb", query=SLOW_QUERY,
                                parameters={"pause": pause}, s3_bucket=bucket, s3_key=key, part_size=5 * MiB)


def uploaded_parts(s3, bucket: str, key: str) -> int:
    uploads = [u for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) if u["Key"] == key]
    if not uploads:
        return 0
    return len(s3.list_parts(Bucket=bucket, Key=key, UploadId=uploads[0]["UploadId"]).get("Parts", []))


def assert_one_line_failure(outcome: dict, *fragments: str) -> str:
    error = outcome.get("error")
    assert isinstance(error, AirflowException), outcome
    message = str(error)
    assert "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_s3_killed_mid_export(stack, pg, s3, bucket):
    kept = {f"kept/{n}.bin": os.urandom(n * MiB + 3) for n in (1, 7)}
    for key, body in kept.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3.upload_fileobj(io.BytesIO(os.urandom(12 * MiB)), bucket, "kept/multipart.bin")
    kept["kept/multipart.bin"] = get_body(s3, bucket, "kept/multipart.bin")

    thread, outcome = run_in_thread(lambda: slow_export(bucket, "crash/listing.csv", 0.3).execute({}))
    wait_for(lambda: uploaded_parts(s3, bucket, "crash/listing.csv") >= 1, thread, outcome)
    s3_service = stack.service("s3")
    kill_tree(int(s3_service.pid_file.read_text()))
    thread.join(timeout=300)
    message = assert_one_line_failure(outcome, "S3 failed after", "nothing was written to s3://")
    assert "rows" in message

    stack.up(["s3"], echo=lambda line: None)  # what `ferry stack up` does
    for key, body in kept.items():
        assert get_body(s3, bucket, key) == body, key
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="crash/listing.csv")

    manifest = slow_export(bucket, "crash/listing.csv", 0).execute({})
    assert manifest["rows"] == 1_000_000
    assert open_uploads(s3, bucket) == []


def test_postgres_killed_mid_export(stack, pg, s3, bucket):
    s3.put_object(Bucket=bucket, Key="crash/listing.csv", Body=b"the previous run's export\n")
    thread, outcome = run_in_thread(lambda: slow_export(bucket, "crash/listing.csv", 0.3).execute({}))
    wait_for(lambda: uploaded_parts(s3, bucket, "crash/listing.csv") >= 1, thread, outcome)
    postgres = stack.service("postgres")
    kill_tree(int((postgres.pgdata / "postmaster.pid").read_text().split()[0]))
    thread.join(timeout=300)
    assert_one_line_failure(outcome, "lost the PostgreSQL connection after", "nothing was written to s3://")
    assert get_body(s3, bucket, "crash/listing.csv") == b"the previous run's export\n"
    assert open_uploads(s3, bucket) == []

    stack.up(["postgres"], echo=lambda line: None)
    pg_again = postgres.connect("inside_airbnb")
    pg_again.close()
    assert slow_export(bucket, "crash/listing.csv", 0).execute({})["rows"] == 1_000_000


def test_sshd_killed_mid_transfer(stack, s3, bucket, tmp_path: Path):
    small, big = os.urandom(MiB), os.urandom(400 * MiB)
    s3.put_object(Bucket=bucket, Key="out/a.bin", Body=small)
    s3.upload_fileobj(io.BytesIO(big), bucket, "out/b.bin")
    target = tmp_path / "sftp"
    partial = Path(temporary_path(str(target / "b.bin")))

    def copy():
        return S3ToSFTPOperator(task_id="copy", s3_bucket=bucket, s3_key="out/", sftp_path=str(target)).execute({})

    thread, outcome = run_in_thread(copy)
    wait_for(lambda: partial.exists() and partial.stat().st_size > 8 * MiB, thread, outcome)
    kill_tree(int(stack.service("sshd").pid_file.read_text()))
    thread.join(timeout=300)
    assert_one_line_failure(outcome, "SFTP failed after 1 of 2 files", f"nothing was written at sftp:{target}/b.bin",
                            "1 earlier files are complete")
    assert (target / "a.bin").read_bytes() == small
    assert not (target / "b.bin").exists()

    stack.up(["sshd"], echo=lambda line: None)
    copy()
    assert (target / "b.bin").read_bytes() == big
    assert sorted(os.listdir(target)) == ["a.bin", "b.bin"]  # the partial file is gone


def test_sshd_killed_mid_upload_from_sftp(stack, s3, bucket, tmp_path: Path):
    source = tmp_path / "big.bin"
    with open(source, "wb") as out:
        for _ in range(40):
            out.write(os.urandom(10 * MiB))

    def copy():
        return SFTPToS3Operator(task_id="copy", sftp_path=str(source), s3_bucket=bucket, s3_key="in/big.bin",
                                part_size=5 * MiB).execute({})

    thread, outcome = run_in_thread(copy)
    wait_for(lambda: uploaded_parts(s3, bucket, "in/big.bin") >= 1, thread, outcome)
    kill_tree(int(stack.service("sshd").pid_file.read_text()))
    thread.join(timeout=300)
    assert_one_line_failure(outcome, "SFTP failed after 0 of 1 files", f"nothing was written to s3://{bucket}/in/big.bin")
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="in/big.bin")
    assert open_uploads(s3, bucket) == []  # S3 was alive: the upload was aborted at once

    stack.up(["sshd"], echo=lambda line: None)
    copy()
    assert s3.head_object(Bucket=bucket, Key="in/big.bin")["ContentLength"] == 400 * MiB


#: Rows per csv object of the S3ToPostgres crash tests: 3 objects of about 24 MB.
CRASH_ROWS = 600_000


def slow_load(bucket: str, table: str) -> dict:
    from ferry.transfers import S3ToPostgresOperator

    return S3ToPostgresOperator(task_id="load", s3_bucket=bucket, s3_key="crash/", postgres_conn_id="inside_airbnb",
                                table=table, truncate=True).execute({})


def crash_load_setup(pg, s3, bucket: str, table: str) -> None:
    """``table`` holding 3 earlier rows, made slow to load (a ``pg_sleep`` trigger, see
    ``slow_table``), and 3 csv objects under ``crash/`` to load into it."""
    from tests.transfers.test_s3_to_postgres import csv_rows, slow_table

    slow_table(pg, table, pause=0.3, every=50_000)
    pg.execute(f"INSERT INTO {table} SELECT g, 'before' FROM generate_series(1, 3) AS g")
    for n in range(3):
        s3.put_object(Bucket=bucket, Key=f"crash/{n}.csv", Body=b"id,word\n" + csv_rows(n * CRASH_ROWS + 1, CRASH_ROWS))


def test_postgres_killed_mid_load(stack, pg, s3, bucket):
    from tests.transfers.test_s3_to_postgres import copy_progress

    crash_load_setup(pg, s3, bucket, "crash_load")
    thread, outcome = run_in_thread(lambda: slow_load(bucket, "crash_load"))
    wait_for(lambda: copy_progress(pg, "crash_load") > 0, thread, outcome)
    postgres = stack.service("postgres")
    kill_tree(int((postgres.pgdata / "postmaster.pid").read_text().split()[0]))
    thread.join(timeout=300)
    stack.up(["postgres"], echo=lambda line: None)  # what `ferry stack up` does; first, for the tests after
    assert_one_line_failure(outcome, "lost the PostgreSQL connection after 0 of 3 objects",
                            "nothing was loaded into crash_load (the transaction was never committed)")
    with postgres.connect("inside_airbnb", autocommit=True) as again:
        assert again.execute("SELECT id, word FROM crash_load ORDER BY id").fetchall() == [
            (1, "before"), (2, "before"), (3, "before")]
        again.execute("DROP TRIGGER pause ON crash_load")
        assert slow_load(bucket, "crash_load")["rows"] == 3 * CRASH_ROWS
        assert again.execute("SELECT count(*), max(id) FROM crash_load").fetchone() == (3 * CRASH_ROWS,) * 2


def test_s3_killed_mid_load(stack, pg, s3, bucket):
    from tests.transfers.test_s3_to_postgres import copy_progress

    crash_load_setup(pg, s3, bucket, "crash_load_s3")
    thread, outcome = run_in_thread(lambda: slow_load(bucket, "crash_load_s3"))
    wait_for(lambda: copy_progress(pg, "crash_load_s3") > 0, thread, outcome)
    kill_tree(int(stack.service("s3").pid_file.read_text()))
    thread.join(timeout=300)
    stack.up(["s3"], echo=lambda line: None)
    # Mid-object or at the next object's GET, as buffers fall: either way the load stops there.
    assert_one_line_failure(outcome, "S3 failed after ", " of 3 objects (",
                            "nothing was loaded into crash_load_s3 (the transaction was rolled back)")
    assert pg.execute("SELECT id, word FROM crash_load_s3 ORDER BY id").fetchall() == [
        (1, "before"), (2, "before"), (3, "before")]
    pg.execute("DROP TRIGGER pause ON crash_load_s3")
    assert slow_load(bucket, "crash_load_s3")["rows"] == 3 * CRASH_ROWS
    assert pg.execute("SELECT count(*), max(id) FROM crash_load_s3").fetchone() == (3 * CRASH_ROWS,) * 2
