"""The number cruncher: per listing, the price change per day between its oldest and newest
snapshot; the five biggest increases and decreases.

It streams: objects are read one after another, each in Arrow batches, and only a small state
per listing (its first and last priced snapshot) is kept, so memory grows with the number of
listings, never with the number of snapshots.

Semantics, chosen where the book is silent and shared with the pandas reference in the tests:
- a snapshot whose price is NULL is ignored (it says nothing about the price);
- a listing needs priced snapshots on at least two different dates, else it is skipped;
- ties are broken by listing id, ascending, so the top five is always the same.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

COLUMNS = ["id", "price", "download_date"]
TOP = 5


@dataclass(frozen=True)
class Mover:
    """One record of ``results/biggest_*.json``, with the book's field names."""

    id: int
    download_date_min: str
    download_date_max: str
    oldest_price: int
    latest_price: int
    price_diff_per_day: float


class PriceSpan:
    """Per listing: the earliest and latest priced snapshot seen so far."""

    def __init__(self) -> None:
        self.first = pd.DataFrame({"date": pd.Series(dtype="datetime64[s]"), "price": pd.Series(dtype="int64")},
                                  index=pd.Index([], dtype="int64", name="id"))
        self.last = self.first.copy()

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        frame = batch.to_pandas(date_as_object=False)
        frame = frame[frame["price"].notna()]
        if frame.empty:
            return
        frame = pd.DataFrame({"id": frame["id"].astype("int64"), "date": frame["download_date"].astype("datetime64[s]"),
                              "price": frame["price"].astype("int64")})
        ordered = frame.sort_values(["id", "date"], kind="stable")
        self.first = self._merge(self.first, ordered.drop_duplicates("id", keep="first"), keep="first")
        self.last = self._merge(self.last, ordered.drop_duplicates("id", keep="last"), keep="last")

    @staticmethod
    def _merge(state: pd.DataFrame, new: pd.DataFrame, keep: str) -> pd.DataFrame:
        both = pd.concat([state.reset_index(), new], ignore_index=True)
        both = both.sort_values(["id", "date"], kind="stable")
        return both.drop_duplicates("id", keep=keep).set_index("id")

    def movers(self, top: int = TOP) -> tuple[list[Mover], list[Mover]]:
        spans = self.first.join(self.last, lsuffix="_min", rsuffix="_max")
        spans = spans[spans["date_max"] > spans["date_min"]]
        days = (spans["date_max"] - spans["date_min"]).dt.days.astype("float64")
        spans = spans.assign(diff=(spans["price_max"] - spans["price_min"]) / days).reset_index()
        increases = spans.sort_values(["diff", "id"], ascending=[False, True], kind="stable").head(top)
        decreases = spans.sort_values(["diff", "id"], ascending=[True, True], kind="stable").head(top)
        return _records(increases), _records(decreases)


def _records(frame: pd.DataFrame) -> list[Mover]:
    return [
        Mover(id=int(r.id), download_date_min=r.date_min.date().isoformat(),
              download_date_max=r.date_max.date().isoformat(), oldest_price=int(r.price_min),
              latest_price=int(r.price_max), price_diff_per_day=float(r.diff))
        for r in frame.itertuples()
    ]


CSV_OPTIONS = {
    "convert_options": pacsv.ConvertOptions(
        include_columns=COLUMNS,
        column_types={"id": pa.int64(), "price": pa.float64(), "download_date": pa.date32()},
    ),
    "read_options": pacsv.ReadOptions(block_size=8 << 20),
}


def csv_batches(stream: Any) -> Iterator[pa.RecordBatch]:
    """Arrow batches of the three columns we need, read incrementally from a file-like."""
    reader = pacsv.open_csv(stream, **CSV_OPTIONS)
    yield from reader


def crunch(batches: Iterable[pa.RecordBatch | pa.Table], top: int = TOP) -> tuple[list[Mover], list[Mover]]:
    span = PriceSpan()
    for batch in batches:
        span.add(batch)
    return span.movers(top)


# -- S3 ------------------------------------------------------------------------------------------

def snapshot_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".csv")]
    return sorted(keys)


def s3_batches(s3: Any, bucket: str, keys: Iterable[str]) -> Iterator[pa.RecordBatch]:
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        yield from csv_batches(body)


def crunch_s3(s3: Any, bucket: str, prefix: str = "listing-", results_prefix: str = "results/") -> dict[str, Any]:
    """Read every snapshot object under ``prefix``, write the two result files, return a summary."""
    keys = snapshot_keys(s3, bucket, prefix)
    increases, decreases = crunch(s3_batches(s3, bucket, keys))
    written = {}
    for name, movers in (("biggest_increase", increases), ("biggest_decrease", decreases)):
        key = f"{results_prefix}{name}.json"
        s3.put_object(Bucket=bucket, Key=key, ContentType="application/json",
                      Body=json.dumps([asdict(m) for m in movers], indent=1).encode())
        written[name] = key
    return {"objects_read": len(keys), "results": written,
            "biggest_increase": [asdict(m) for m in increases], "biggest_decrease": [asdict(m) for m in decreases]}


def main() -> int:
    """``ferry-crunch``: settings from the environment, like the book's container.

    ``S3_ENDPOINT`` (host:port or URL; empty for AWS), ``S3_ACCESS_KEY``, ``S3_SECRET_KEY``,
    ``BUCKET`` (default ``inside-airbnb``), ``PREFIX`` (default ``listing-``). Without the
    keys, boto3's usual credential chain applies.
    """
    import boto3

    endpoint = os.environ.get("S3_ENDPOINT") or None
    if endpoint and "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=os.environ.get("S3_ACCESS_KEY") or None,
                      aws_secret_access_key=os.environ.get("S3_SECRET_KEY") or None,
                      region_name=os.environ.get("AWS_DEFAULT_REGION", "eu-west-1"))
    summary = crunch_s3(s3, os.environ.get("BUCKET", "inside-airbnb"), os.environ.get("PREFIX", "listing-"))
    print(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

