"""The Inside Airbnb number cruncher as a PySpark job (same results as ferry.airbnb.cruncher).

    spark-submit cruncher_job.py --input 'file:///…/listing-*.csv' --output /dir/for/results
    spark-submit cruncher_job.py --input 's3a://inside-airbnb/listing-*.csv' --output …   # cluster with hadoop-aws

Writes ``biggest_increase.json`` and ``biggest_decrease.json`` into ``--output``, a directory on
the driver's file system. Same rules as the in-process cruncher: NULL prices ignored, listings
priced on fewer than two dates skipped, ties broken by the lower id.
"""

from __future__ import annotations

import argparse
import json
import os

from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def movers(spark: SparkSession, source: str, top: int) -> tuple[list[dict], list[dict]]:
    # PostgreSQL's CSV escapes quotes by doubling them, and a name may hold a newline.
    raw = spark.read.csv(source, header=True, multiLine=True, escape='"')
    rows = raw.select(F.col("id").cast("long").alias("id"), F.col("price").cast("double").alias("price"),
                      F.to_date("download_date").alias("download_date"))
    spans = (
        rows.where(F.col("price").isNotNull() & F.col("id").isNotNull())
        .groupBy("id")
        .agg(F.min("download_date").alias("first"), F.max("download_date").alias("last"),
             F.min_by("price", "download_date").alias("oldest_price"),
             F.max_by("price", "download_date").alias("latest_price"))
        .where(F.col("last") > F.col("first"))
        .withColumn("price_diff_per_day",
                    (F.col("latest_price") - F.col("oldest_price")) / F.datediff("last", "first").cast("double"))
    ).cache()

    def records(ordered) -> list[dict]:
        return [{"id": r["id"], "download_date_min": r["first"].isoformat(), "download_date_max": r["last"].isoformat(),
                 "oldest_price": int(r["oldest_price"]), "latest_price": int(r["latest_price"]),
                 "price_diff_per_day": float(r["price_diff_per_day"])} for r in ordered.limit(top).collect()]

    return (records(spans.orderBy(F.desc("price_diff_per_day"), F.asc("id"))),
            records(spans.orderBy(F.asc("price_diff_per_day"), F.asc("id"))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, help="CSV files: a path, a glob or an s3a:// URI")
    parser.add_argument("--output", required=True, help="directory on the driver for the result files")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    spark = SparkSession.builder.appName("ferry-inside-airbnb-cruncher").getOrCreate()
    try:
        increases, decreases = movers(spark, args.input, args.top)
    finally:
        spark.stop()
    os.makedirs(args.output, exist_ok=True)
    for name, records in (("biggest_increase", increases), ("biggest_decrease", decreases)):
        tmp = os.path.join(args.output, f".{name}.json.tmp")
        with open(tmp, "w") as f:
            json.dump(records, f, indent=1)
        os.replace(tmp, os.path.join(args.output, f"{name}.json"))  # never a half-written result
    print(f"ferry cruncher: {len(increases)} increases, {len(decreases)} decreases → {args.output}")


if __name__ == "__main__":
    main()
