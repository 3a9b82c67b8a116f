"""The example DAGs, run by real Airflow (``airflow dags test`` / ``tasks test``) on the test stack."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

AIRFLOW = str(Path(sys.executable).parent / "airflow")


@pytest.fixture(scope="module")
def listings(stack):
    from ferry.airbnb.generate import generate

    with stack.service("postgres").connect("inside_airbnb", autocommit=True) as conn:
        return generate(conn, rows=30_000)


@pytest.fixture(scope="module")
def reviews(stack) -> list[str]:
    """5,000 reviews in MongoDB; returns their dates."""
    from ferry.airbnb.reviews import generate_reviews

    with stack.service("mongo").client() as client:
        generate_reviews(client["inside_airbnb"], count=5_000, listings=3_000)
        return [d["date"] for d in client["inside_airbnb"]["reviews"].find({}, {"date": 1})]


def airflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=600)


def ferry_run(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``ferry run …``: its result and the log file its last line names."""
    result = subprocess.run([str(Path(sys.executable).parent / "ferry"), "run", *args], env=env,
                            capture_output=True, text=True, timeout=600)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and " — log: " in lines[-1], result.stdout + result.stderr[-5000:]
    return result, Path(lines[-1].rsplit(" — log: ", 1)[1])


def test_transfers_example_runs_end_to_end(airflow_db, listings, reviews, tmp_path):
    """Through ``ferry run``: ``airflow dags test`` with its thousands of lines in a log, one line out."""
    import gzip
    import json

    import boto3

    env = {**os.environ, "AIRFLOW_VAR_FERRY_SFTP_DIR": str(tmp_path / "drop")}
    result, log_file = ferry_run("transfers_example", "2019-12-07", env=env)
    assert result.returncode == 0, log_file.read_text()[-5000:]
    assert re.fullmatch(r"transfers_example: success in \d+ s — 5 tasks: 5 success — log: .*",
                        result.stdout.splitlines()[-1]), result.stdout
    assert "state=success" in log_file.read_text() and log_file.parent == Path(os.environ["FERRY_HOME"]) / "logs/runs"

    s3 = boto3.client("s3")
    exported = s3.get_object(Bucket="inside-airbnb", Key="example/listing-2019-12-07.csv")["Body"].read()
    rows = list(csv.DictReader(io.StringIO(exported.decode())))
    assert rows and {r["download_date"] for r in rows} == {"2019-12-07"}
    assert (tmp_path / "drop" / "inside-airbnb" / "listing-2019-12-07.csv").read_bytes() == exported
    s3.head_object(Bucket="inside-airbnb", Key="example/parquet/listing-2019-12-07.parquet")
    # The MongoDB branch: the reviews up to the day, from the stack's MongoDB server.
    body = s3.get_object(Bucket="inside-airbnb", Key="example/reviews-2019-12-07.jsonl.gz")["Body"].read()
    exported = [json.loads(line) for line in gzip.decompress(body).splitlines()]
    assert len(exported) == sum(d <= "2019-12-07" for d in reviews) > 0
    assert {"listing_id", "id", "date", "reviewer_id", "reviewer_name", "comments"} <= set(exported[0])


def test_a_failed_run_names_its_failed_tasks_and_exits_1(airflow_db, listings, reviews):
    # An SFTP folder nobody can create: the SFTP task fails, the rest of the DAG succeeds.
    env = {**os.environ, "AIRFLOW_VAR_FERRY_SFTP_DIR": "/proc/ferry-cannot-write-here"}
    result, log_file = ferry_run("transfers_example", "2019-12-08", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.fullmatch(r"transfers_example: failed in \d+ s — 5 tasks: 4 success, 1 failed; failed: listings_to_sftp "
                        r"— log: .*", result.stdout.splitlines()[-1]), result.stdout
    assert "DagRun failed" in log_file.read_text()

    result, log_file = ferry_run("no_such_dag", env=env)
    assert result.returncode == 1 and log_file.exists()
    assert re.fullmatch(r"no_such_dag: no run recorded \(exit 1: .*no_such_dag.*\) — log: .*",
                        result.stdout.splitlines()[-1]), result.stdout


def test_one_task_alone_with_tasks_test(airflow_db, listings):
    """The seed's section 1-3 workflow: run a single task against the external systems."""
    import boto3

    s3 = boto3.client("s3")
    s3.delete_object(Bucket="inside-airbnb", Key="example/listing-2016-01-14.csv")
    result = airflow("tasks", "test", "transfers_example", "export_listings", "2016-01-14", env=os.environ.copy())
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    body = s3.get_object(Bucket="inside-airbnb", Key="example/listing-2016-01-14.csv")["Body"].read()
    assert body.startswith(b"id,name,host_id,") and b",2016-01-14\n" in body
