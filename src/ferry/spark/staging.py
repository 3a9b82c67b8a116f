"""Staging S3 objects where a Spark without an S3 connector can read them.

pyspark's own Spark has no ``s3a://`` support (hadoop-aws is a separate download), so the DAG
copies the snapshots to a directory Spark reads with ``file://``. A cluster with the
connector skips this: give the DAG an ``s3a://`` input instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def stage_from_s3(s3: Any, bucket: str, prefix: str, directory: Path) -> str:
    """Mirror ``s3://bucket/prefix*.csv`` into ``directory``; return the glob URI for Spark."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith(".csv"):
                continue
            name = obj["Key"].replace("/", "__")
            wanted.add(name)
            target = directory / name
            if target.exists() and target.stat().st_size == obj["Size"]:
                continue
            tmp = target.with_suffix(".part")
            with open(tmp, "wb") as out:
                shutil.copyfileobj(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"], out, 8 << 20)
            os.replace(tmp, target)
    for stale in {p.name for p in directory.glob("*.csv")} - wanted:
        (directory / stale).unlink()
    if not wanted:
        raise FileNotFoundError(f"no CSV objects under s3://{bucket}/{prefix}")
    return f"file://{directory}/*.csv"
