"""The seed's A-to-B transfers (section 2-1): PostgreSQL → S3 → SFTP, and MongoDB → S3.

Run one task alone against the local stack:
    eval "$(ferry stack env)"
    airflow tasks test transfers_example export_listings 2019-12-07
"""

from __future__ import annotations

import pendulum
from airflow.sdk import BaseHook, dag, task

from ferry.transfers import MongoToS3Operator, PostgresToS3Operator, S3ToSFTPOperator


@dag(schedule=None, start_date=pendulum.datetime(2015, 4, 5, tz="UTC"), catchup=False, tags=["ferry", "seed"])
def transfers_example():
    export_listings = PostgresToS3Operator(
        task_id="export_listings",
        postgres_conn_id="inside_airbnb",
        query="SELECT * FROM listings WHERE download_date = %(day)s ORDER BY id",
        parameters={"day": "{{ ds }}"},
        s3_bucket="inside-airbnb",
        s3_key="example/listing-{{ ds }}.csv",
    )
    export_listings_parquet = PostgresToS3Operator(
        task_id="export_listings_parquet",
        postgres_conn_id="inside_airbnb",
        query="SELECT * FROM listings WHERE download_date = %(day)s ORDER BY id",
        parameters={"day": "{{ ds }}"},
        s3_bucket="inside-airbnb",
        s3_key="example/parquet/listing-{{ ds }}.parquet",
        file_format="parquet",
        compression="zstd",
    )
    listings_to_sftp = S3ToSFTPOperator(
        task_id="listings_to_sftp",
        s3_bucket="inside-airbnb",
        s3_key="example/listing-{{ ds }}.csv",
        # A relative path lands in the SFTP user's home; the Variable ferry_sftp_dir moves it.
        sftp_path="{{ var.value.get('ferry_sftp_dir', 'ferry-drop') }}/inside-airbnb/listing-{{ ds }}.csv",
    )

    @task.short_circuit
    def mongo_is_configured() -> bool:
        """Skip the MongoDB branch where no ``mongo_default`` connection exists (the local stack defines one)."""
        try:
            BaseHook.get_connection("mongo_default")
        except Exception:  # AirflowNotFoundException; its import path moves between releases
            return False
        return True

    reviews_to_s3 = MongoToS3Operator(
        task_id="reviews_to_s3",
        mongo_collection="reviews",
        mongo_query={"date": {"$lte": "{{ ds }}"}},
        s3_bucket="inside-airbnb",
        s3_key="example/reviews-{{ ds }}.jsonl.gz",
        compression="gzip",
    )

    export_listings >> listings_to_sftp
    export_listings_parquet  # noqa: B018 - independent of the others
    mongo_is_configured() >> reviews_to_s3


transfers_example()
