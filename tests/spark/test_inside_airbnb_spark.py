"""The Spark DAG against the real local Spark (local[*] and a standalone master and worker):
every way of running the cruncher must give the in-process cruncher's results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.conftest import empty_bucket

pytestmark = pytest.mark.integration

AIRFLOW = str(Path(sys.executable).parent / "airflow")
BUCKET = "inside-airbnb"


@pytest.fixture(scope="module")
def spark(stack):
    stack.up(["spark", "spark-worker"], echo=lambda line: None)
    return stack


@pytest.fixture(scope="module")
def snapshots(spark):
    """Three exported snapshots in the bucket, and nothing else under listing-."""
    import boto3

    from ferry.airbnb.generate import download_dates, generate
    from ferry.transfers import PostgresToS3Operator

    s3 = boto3.client("s3")
    empty_bucket(s3, BUCKET)
    with spark.service("postgres").connect("inside_airbnb", autocommit=True) as conn:
        generate(conn, rows=20_000, seed=5)
    for day in [d.isoformat() for d in download_dates()[20:25:2]]:  # overlapping listings: real movers
        PostgresToS3Operator(task_id="x", postgres_conn_id="inside_airbnb", s3_bucket=BUCKET,
                             s3_key=f"listing-{day}.csv", query="SELECT * FROM listings WHERE download_date = %s",
                             parameters=[day]).execute({})
    return s3


def airflow(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIRFLOW, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=1200)


def test_every_way_gives_the_in_process_results(airflow_db, snapshots, spark):
    from ferry.airbnb.cruncher import crunch, s3_batches, snapshot_keys

    result = airflow("dags", "test", "inside_airbnb_spark", "2019-12-07")
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "state=success" in output, output[-6000:]

    increases, decreases = crunch(s3_batches(snapshots, BUCKET, snapshot_keys(snapshots, BUCKET, "listing-")))
    assert increases and decreases
    results = Path(os.environ["AIRFLOW_VAR_FERRY_SPARK_WORK_DIR"]) / "results"
    run_dirs = sorted(results.iterdir(), key=lambda p: p.stat().st_mtime)
    ways = sorted(p.name for p in run_dirs[-1].iterdir())
    assert ways == ["rest_submission", "spark_submit_local", "spark_submit_standalone", "ssh_spark_submit"]
    for way in ways:
        got = json.loads((run_dirs[-1] / way / "biggest_increase.json").read_text())
        assert got == [asdict(m) for m in increases], way
        got = json.loads((run_dirs[-1] / way / "biggest_decrease.json").read_text())
        assert got == [asdict(m) for m in decreases], way
    published = snapshots.get_object(Bucket=BUCKET, Key="results/spark/biggest_increase.json")["Body"].read()
    assert json.loads(published) == [asdict(m) for m in increases]


def test_a_failing_job_fails_the_task_with_sparks_message(spark, tmp_path, capfd):
    """The real operator and Spark, on input that does not exist: the task fails, and the log
    carries Spark's own error."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
    from airflow.sdk.exceptions import AirflowException

    from ferry.spark import JOB

    crunch = SparkSubmitOperator(
        task_id="crunch", conn_id="spark_local", application=str(JOB), conf={"spark.ui.enabled": "false"},
        application_args=["--input", f"file://{tmp_path}/none/*.csv", "--output", str(tmp_path)],
    )
    with pytest.raises(AirflowException, match="spark-submit"):
        crunch.execute({})
    output = capfd.readouterr().out
    assert "PATH_NOT_FOUND" in output or "Path does not exist" in output, output[-4000:]
    assert not (tmp_path / "biggest_increase.json").exists()
