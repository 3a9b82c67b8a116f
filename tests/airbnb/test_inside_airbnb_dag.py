"""The inside_airbnb DAG run by Airflow on the test stack: intervals, results, idempotency."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.airbnb.test_cruncher import reference
from tests.conftest import empty_bucket

pytestmark = pytest.mark.integration

BUCKET = "inside-airbnb"
DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def listings(stack):
    from ferry.airbnb.generate import generate

    with stack.service("postgres").connect("inside_airbnb", autocommit=True) as conn:
        generate(conn, rows=40_000, seed=11)
        yield conn


@pytest.fixture(scope="module")
def s3(stack):
    import boto3

    client = boto3.client("s3")
    empty_bucket(client, BUCKET)
    return client


def bucket_contents(s3) -> dict[str, bytes]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    # The report embeds nothing run-specific, so it too must be identical across runs.
    return {k: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in sorted(keys)}


def exports_queued_for(dag_id: str) -> tuple[list[dict], list[str]]:
    """The asset events of the Inside Airbnb exports, and the DAG ids queued to run on them."""
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from ferry.airbnb.assets import LISTINGS_EXPORTS

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == LISTINGS_EXPORTS.uri))
        if asset is None:
            return [], []
        events = [e.extra for e in session.scalars(select(AssetEvent).where(AssetEvent.asset_id == asset.id))]
        queued = list(session.scalars(select(AssetDagRunQueue.target_dag_id).where(
            AssetDagRunQueue.asset_id == asset.id, AssetDagRunQueue.target_dag_id == dag_id)))
    return events, queued


def test_backfill_intervals_results_and_idempotency(airflow_db, listings, s3):
    from ferry.airbnb.backfill import backfill, monthly_dates

    # The scheduler's view of every DAG, so that the export's asset event finds its consumer,
    # switched on as a user would (new DAGs start paused).
    airflow = str(Path(os.sys.executable).parent / "airflow")
    subprocess.run([airflow, "dags", "reserialize"], check=True, capture_output=True, env=os.environ.copy())
    subprocess.run([airflow, "dags", "unpause", "inside_airbnb_exports"], check=True, capture_output=True,
                   env=os.environ.copy())

    starts = [d for d in monthly_dates() if str(d.date()) in ("2015-04-01", "2015-10-01", "2017-06-01", "2019-12-01")]
    assert len(starts) == 4
    assert all("success (3 tasks)" in state for state in backfill(starts))
    first = bucket_contents(s3)

    # Each export emitted an asset event naming its object, and queued the DAG scheduled on it.
    events, queued = exports_queued_for("inside_airbnb_exports")
    assert [e["keys"] for e in events][-4:] == [[f"listing-{s.date()}.csv"] for s in starts]
    assert all(e["bucket"] == BUCKET and e["rows"] >= 0 and e["bytes"] > 0 for e in events[-4:])
    assert queued == ["inside_airbnb_exports"]

    # One object per interval, holding exactly the rows of that interval.
    for start in starts:
        end = start.add(months=1)
        body = first[f"listing-{start.date()}.csv"].decode()
        expected = listings.execute(
            "SELECT count(*) FROM listings WHERE download_date >= %s AND download_date < %s",
            (start.date(), end.date()),
        ).fetchone()[0]
        assert body.count("\n") - 1 == expected
    assert first["listing-2015-10-01.csv"].decode().count("\n") == 1  # no snapshot that month: header only

    # The results are the reference's on the same rows.
    frames = [
        pd.DataFrame(listings.execute(
            "SELECT id, price, download_date FROM listings WHERE download_date >= %s AND download_date < %s",
            (start.date(), start.add(months=1).date()),
        ).fetchall(), columns=["id", "price", "download_date"]).astype({"price": "float64"})
        for start in starts
    ]
    expected_up, expected_down = reference([f for f in frames if not f.empty])
    assert json.loads(first["results/biggest_increase.json"]) == expected_up
    assert json.loads(first["results/biggest_decrease.json"]) == expected_down
    assert first["results/report.png"].startswith(b"\x89PNG")
    assert b"Biggest increases" in first["results/report.html"]

    # Running the same intervals again writes the same objects and results.
    backfill(starts)
    assert bucket_contents(s3) == first


def test_the_dag_schedule_is_monthly_data_intervals():
    from ferry.airflow_compat import dag_bag

    dag = dag_bag(str(DAGS / "inside_airbnb.py")).get_dag("inside_airbnb")
    assert dag.catchup and dag.max_active_runs == 1
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert (dag.start_date.date().isoformat(), dag.end_date.date().isoformat()) == ("2015-04-01", "2019-12-07")
