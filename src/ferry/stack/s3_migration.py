"""One-time move of the S3 snapshot that moto-era ferry wrote (``data/s3``) into SeaweedFS.

Until SeaweedFS, the S3 service was moto, which wrote its buckets to ``$FERRY_HOME/data/s3`` on
``ferry stack down``: a folder per bucket with ``bucket.json`` (name, region), and per object a
body file named by the SHA-256 of the key and a ``.json`` beside it (key, ETag, content type,
user metadata). The first start on SeaweedFS uploads all of it, then renames the folder so it
is never migrated twice; the old files stay until the user deletes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MIGRATED_SUFFIX = ".migrated-to-seaweedfs"



def migrate_moto_snapshot(s3: Any, snapshot: Path, *, echo=print) -> int:
    """Upload every bucket and object of a moto snapshot at ``snapshot``; return the object count."""
    bucket_dirs = sorted(p for p in snapshot.glob("*/") if (p / "bucket.json").is_file()) if snapshot.is_dir() else []
    if not bucket_dirs:
        return 0
    from botocore.exceptions import ClientError

    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    count = 0
    refused: list[str] = []
    for bucket_dir in bucket_dirs:
        bucket = json.loads((bucket_dir / "bucket.json").read_text())
        if bucket["name"] not in existing:
            region = bucket.get("region")
            config = {} if region in (None, "us-east-1") else {"LocationConstraint": region}
            s3.create_bucket(Bucket=bucket["name"], **({"CreateBucketConfiguration": config} if config else {}))
        for meta_file in sorted(bucket_dir.glob("*.json")):
            if meta_file.name == "bucket.json":
                continue
            obj = json.loads(meta_file.read_text())
            try:
                # put_object, not upload_fileobj: a refusal is then a ClientError, not a retry.
                with open(meta_file.with_suffix(""), "rb") as body:
                    s3.put_object(Bucket=bucket["name"], Key=obj["key"], Body=body,
                                  ContentType=obj["content_type"], Metadata=obj["metadata"])
            except ClientError as exc:
                # SeaweedFS refuses keys with '.' or '..' segments, which moto (and AWS) accept.
                refused.append(f"s3://{bucket['name']}/{obj['key']} ({exc.response['Error']['Code']})")
                continue
            count += 1
    done = snapshot.with_name(snapshot.name + MIGRATED_SUFFIX)
    snapshot.rename(done)
    echo(f"s3: moved {count} objects in {len(bucket_dirs)} buckets from the old snapshot into SeaweedFS; "
         f"the old files are in {done} (delete them when you like)")
    if refused:
        echo(f"s3: SeaweedFS refused {len(refused)} keys, left in {done}: {', '.join(refused)}")
    return count
