"""The S3 endpoint process: moto's server, plus persistence across restarts.

moto keeps everything in memory, but the stack promises that data survives ``down``/``up``.
So this process restores the buckets from ``--data`` after it starts listening and writes
them back when it receives SIGTERM (the way ``ferry stack down`` stops it). Only S3 is kept;
SageMaker control-plane state is recreated by the DAGs that need it. It goes through boto3,
moto's public face, rather than moto's internal backend classes, which change between
releases. A snapshot skips objects whose ETag it already holds, so ``down`` stays quick.

Run as ``python -m ferry.stack.s3_server --host H --port P --data DIR --ready FILE``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import signal
import threading
from pathlib import Path

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

log = logging.getLogger("ferry.s3")

CHUNK = 8 * 1024 * 1024


def _client(endpoint: str):
    # moto accepts any credentials; these never leave this process.
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="snapshot",
        aws_secret_access_key="snapshot",
        config=Config(s3={"addressing_style": "path"}),
    )


def _object_file(bucket_dir: Path, key: str) -> Path:
    # Keys may hold '/', '..' or be longer than a file name may be: name files by a digest.
    return bucket_dir / hashlib.sha256(key.encode()).hexdigest()


def restore(endpoint: str, data: Path) -> int:
    """Recreate every bucket and object found under ``data``; return the object count."""
    s3 = _client(endpoint)
    count = 0
    for bucket_dir in sorted(p for p in data.iterdir() if p.is_dir()):
        meta = json.loads((bucket_dir / "bucket.json").read_text())
        kwargs = {}
        if meta.get("region") and meta["region"] != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": meta["region"]}
        s3.create_bucket(Bucket=meta["name"], **kwargs)
        for meta_file in bucket_dir.glob("*.json"):
            if meta_file.name == "bucket.json":
                continue
            obj = json.loads(meta_file.read_text())
            with open(meta_file.with_suffix(""), "rb") as body:
                s3.upload_fileobj(
                    body,
                    meta["name"],
                    obj["key"],
                    ExtraArgs={"ContentType": obj["content_type"], "Metadata": obj["metadata"]},
                )
            count += 1
    return count


def snapshot(endpoint: str, data: Path) -> int:
    """Write every bucket and object to ``data``; return the number of objects written anew."""
    s3 = _client(endpoint)
    written = 0
    keep_buckets = set()
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        region = s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
        bucket_dir = data / hashlib.sha256(name.encode()).hexdigest()[:32]
        bucket_dir.mkdir(parents=True, exist_ok=True)
        (bucket_dir / "bucket.json").write_text(json.dumps({"name": name, "region": region}))
        keep_buckets.add(bucket_dir)
        keep_files = {bucket_dir / "bucket.json"}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                body_file = _object_file(bucket_dir, item["Key"])
                meta_file = body_file.with_suffix(".json")
                keep_files.update((body_file, meta_file))
                if meta_file.exists() and json.loads(meta_file.read_text())["etag"] == item["ETag"]:
                    continue
                response = s3.get_object(Bucket=name, Key=item["Key"])
                tmp = body_file.with_suffix(".part")
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(response["Body"], out, CHUNK)
                os.replace(tmp, body_file)
                meta_file.write_text(
                    json.dumps(
                        {
                            "key": item["Key"],
                            "etag": item["ETag"],
                            "content_type": response.get("ContentType", "binary/octet-stream"),
                            "metadata": response.get("Metadata", {}),
                        }
                    )
                )
                written += 1
        for stale in set(bucket_dir.iterdir()) - keep_files:
            stale.unlink()
    for stale_dir in {p for p in data.iterdir() if p.is_dir()} - keep_buckets:
        shutil.rmtree(stale_dir)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is noise

    args.ready.unlink(missing_ok=True)
    args.data.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    endpoint = f"http://{args.host}:{args.port}"
    log.info("restored %d objects from %s", restore(endpoint, args.data), args.data)
    args.ready.write_text(endpoint + "\n")
    stop.wait()
    args.ready.unlink(missing_ok=True)
    log.info("snapshot wrote %d changed objects to %s", snapshot(endpoint, args.data), args.data)
    server.stop()


if __name__ == "__main__":
    main()
