"""Offloading the Inside Airbnb cruncher to Spark: the PySpark job, staging, and where Spark lives."""

from __future__ import annotations

from pathlib import Path

#: The PySpark application. It imports only pyspark and the standard library, so the same file
#: runs on this machine's Spark and on any cluster.
JOB = Path(__file__).with_name("cruncher_job.py")
