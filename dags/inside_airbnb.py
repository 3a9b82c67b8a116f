"""The seed's Inside Airbnb pipeline (section 2): monthly exports from PostgreSQL to S3, then the
number cruncher (in-process here; see inside_airbnb_docker.py and inside_airbnb_spark.py).

Dates: the book starts on 2015-04-05, but a monthly data-interval schedule aligns to the 1st,
so that start would make the first interval May and lose the 2015-04-05 snapshot. We start on
2015-04-01: 57 intervals, April 2015 to December 2019 (the last holds 2019-12-07).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from ferry.airbnb.assets import LISTINGS_EXPORTS
from ferry.airflow_compat import CronDataIntervalTimetable  # airflow.sdk's from Airflow 3.2
from ferry.transfers import PostgresToS3Operator

BUCKET = "inside-airbnb"


@dag(
    schedule=CronDataIntervalTimetable("@monthly", timezone="UTC"),
    start_date=pendulum.datetime(2015, 4, 1, tz="UTC"),
    end_date=pendulum.datetime(2019, 12, 7, tz="UTC"),
    catchup=True,
    max_active_runs=1,  # each run crunches every snapshot exported so far: keep them in order
    tags=["ferry", "seed", "inside-airbnb"],
)
def inside_airbnb():
    download_from_postgres = PostgresToS3Operator(
        task_id="download_from_postgres",
        postgres_conn_id="inside_airbnb",
        query="SELECT * FROM listings WHERE download_date >= %(start)s AND download_date < %(end)s "
        "ORDER BY download_date, id",
        parameters={"start": "{{ data_interval_start | ds }}", "end": "{{ data_interval_end | ds }}"},
        s3_bucket=BUCKET,
        # Named by the interval's start: a scheduled run's logical date, and also right for a
        # manual run (`airflow dags test inside_airbnb 2019-12-01` runs the interval ending then).
        s3_key="listing-{{ data_interval_start | ds }}.csv",
        outlets=[LISTINGS_EXPORTS],  # DAGs scheduled on it run after each export (inside_airbnb_exports.py)
    )

    @task
    def crunch_numbers() -> dict:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from ferry.airbnb.cruncher import crunch_s3

        summary = crunch_s3(S3Hook(aws_conn_id="aws_default").get_conn(), BUCKET)
        return {"objects_read": summary["objects_read"], "results": summary["results"]}

    @task
    def write_report() -> dict:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from ferry.airbnb.report import write_report

        return write_report(S3Hook(aws_conn_id="aws_default").get_conn(), BUCKET)

    download_from_postgres >> crunch_numbers() >> write_report()


inside_airbnb()
