"""The S3 service's resident memory as data accumulates: it must not grow with the bytes stored.

moto, the S3 of ferry's first versions, held every byte in RAM (1 GB resident after the
benchmarks). This stores 4 GiB in 100 MiB objects (multipart, boto3's default concurrency),
reads them all back, and samples SeaweedFS's resident set size on the way.
"""

from __future__ import annotations

import io
import os
import time

import psutil

from ferry.stack import Stack
from ferry.stack.process import read_pid

BUCKET = "ferry-bench-memory"
OBJECT = 100 * 2**20
TOTAL = 4 * 2**30


def _rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in (root, *root.children(recursive=True))) / 2**20


def bench_s3_memory(stack: Stack) -> list[str]:
    service = stack.service("s3")
    s3 = service.client()
    pid = read_pid(service.pid_file)
    assert pid is not None, "the S3 service is not running"
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    block = os.urandom(OBJECT)  # incompressible, so the store cannot shrink it
    samples = [("idle", 0, _rss_mb(pid))]
    started = time.monotonic()
    keys = []
    for n in range(TOTAL // OBJECT):
        key = f"memory/{n:03d}.bin"
        s3.upload_fileobj(io.BytesIO(block), BUCKET, key)
        keys.append(key)
        stored = (n + 1) * OBJECT
        if stored // 2**29 != (stored - OBJECT) // 2**29 or stored + OBJECT > TOTAL:  # every 512 MiB
            samples.append((f"{stored / 2**30:.2f} GiB stored", stored, _rss_mb(pid)))
    write_seconds = time.monotonic() - started
    started = time.monotonic()
    for key in keys:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
        while body.read(8 * 2**20):
            pass
    read_seconds = time.monotonic() - started
    samples.append(("after reading it all back", len(keys) * OBJECT, _rss_mb(pid)))
    for start in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})
    stored = len(keys) * OBJECT
    return [
        f"### S3 service (SeaweedFS) memory with {stored / 2**30:.1f} GiB stored ({len(keys)} objects of 100 MiB)",
        "| moment | resident memory |", "| --- | --- |",
        *(f"| {label} | {rss:.0f} MB |" for label, _bytes, rss in samples),
        "",
        f"- growth from idle to {stored / 2**30:.1f} GiB stored: **{samples[-2][2] - samples[0][2]:+.0f} MB** "
        f"(moto held every byte: ≥ {stored / 2**20:.0f} MB)",
        f"- write {stored / 2**20 / write_seconds:.0f} MB/s, read {stored / 2**20 / read_seconds:.0f} MB/s "
        "(boto3 upload_fileobj / get_object, one client, loopback)",
    ]
