"""Checking that every way of running the Spark job gave the in-process cruncher's answer."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ferry.airbnb.cruncher import crunch, s3_batches, snapshot_keys

NAMES = ("biggest_increase", "biggest_decrease")


def compare_and_publish(s3: Any, bucket: str, results: Path, prefix: str = "listing-") -> dict[str, Any]:
    increases, decreases = crunch(s3_batches(s3, bucket, snapshot_keys(s3, bucket, prefix)))
    expected = {"biggest_increase": [asdict(m) for m in increases], "biggest_decrease": [asdict(m) for m in decreases]}
    ways = sorted(p.name for p in results.iterdir() if p.is_dir())
    for way in ways:
        for name in NAMES:
            got = json.loads((results / way / f"{name}.json").read_text())
            if got != expected[name]:
                raise ValueError(f"{way} disagrees with the in-process cruncher on {name}: {got} != {expected[name]}")
    for name in NAMES:
        s3.put_object(Bucket=bucket, Key=f"results/spark/{name}.json", ContentType="application/json",
                      Body=json.dumps(expected[name], indent=1).encode())
    return {"ways": ways, "agree": True, "results": [f"results/spark/{n}.json" for n in NAMES]}
