"""The example DAGs, run by real Airflow (``airflow dags test`` / ``tasks test``) on the test stack."""

from __future__ import annotations

import csv
import io
import os
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


def test_transfers_example_runs_end_to_end(airflow_db, listings, reviews, tmp_path):
    import gzip
    import json

    import boto3

    env = {**os.environ, "AIRFLOW_VAR_FERRY_SFTP_DIR": str(tmp_path / "drop")}
    result = airflow("dags", "test", "transfers_example", "2019-12-07", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "state=success" in output

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


def test_one_task_alone_with_tasks_test(airflow_db, listings):
    """The seed's section 1-3 workflow: run a single task against the external systems."""
    import boto3

    s3 = boto3.client("s3")
    s3.delete_object(Bucket="inside-airbnb", Key="example/listing-2016-01-14.csv")
    result = airflow("tasks", "test", "transfers_example", "export_listings", "2016-01-14", env=os.environ.copy())
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    body = s3.get_object(Bucket="inside-airbnb", Key="example/listing-2016-01-14.csv")["Body"].read()
    assert body.startswith(b"id,name,host_id,") and b",2016-01-14\n" in body
