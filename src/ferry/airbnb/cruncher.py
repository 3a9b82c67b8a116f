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

import numpy as np
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
    """Per listing: the earliest and the latest priced snapshot seen so far.

    Listings live in numpy arrays behind a compact index of their ids (real Inside Airbnb ids
    reach 10^18, so the ids cannot be array positions). Each object costs a sort of its own
    rows plus vectorised updates: nothing is re-sorted per object, and memory is four numbers
    per listing. On equal dates the earlier object wins for ``first`` and the later one for
    ``last``.
    """

    _NO_DATE_FIRST = np.iinfo(np.int64).max
    _NO_DATE_LAST = np.iinfo(np.int64).min

    def __init__(self) -> None:
        self.ids = pd.Index([], dtype="int64")
        self.first_date = np.empty(0, dtype="int64")  # days since 1970-01-01
        self.first_price = np.empty(0, dtype="float64")
        self.last_date = np.empty(0, dtype="int64")
        self.last_price = np.empty(0, dtype="float64")

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        price = batch.column("price").to_numpy(zero_copy_only=False).astype("float64")
        ids = batch.column("id").to_numpy(zero_copy_only=False)
        dates = batch.column("download_date").cast(pa.int32()).to_numpy(zero_copy_only=False)
        keep = ~np.isnan(price) & ~pd.isna(ids)
        if not keep.any():
            return
        ids, dates, price = ids[keep].astype("int64"), dates[keep].astype("int64"), price[keep]
        order = np.lexsort((dates, ids))  # by id, then date; stable
        ids, dates, price = ids[order], dates[order], price[order]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        ends = np.r_[starts[1:] - 1, len(ids) - 1]
        where = self._positions(ids[starts])
        earlier = dates[starts] < self.first_date[where]
        self.first_date[where[earlier]] = dates[starts][earlier]
        self.first_price[where[earlier]] = price[starts][earlier]
        later = dates[ends] >= self.last_date[where]
        self.last_date[where[later]] = dates[ends][later]
        self.last_price[where[later]] = price[ends][later]

    def _positions(self, unique_ids: np.ndarray) -> np.ndarray:
        where = self.ids.get_indexer(unique_ids)
        new = where == -1
        if new.any():
            count, added = len(self.ids), int(new.sum())
            self.ids = self.ids.append(pd.Index(unique_ids[new]))
            self.first_date = np.r_[self.first_date, np.full(added, self._NO_DATE_FIRST)]
            self.last_date = np.r_[self.last_date, np.full(added, self._NO_DATE_LAST)]
            self.first_price = np.r_[self.first_price, np.zeros(added)]
            self.last_price = np.r_[self.last_price, np.zeros(added)]
            where[new] = np.arange(count, count + added)
        return where

    def movers(self, top: int = TOP) -> tuple[list[Mover], list[Mover]]:
        spans = self.last_date > self.first_date  # priced on two different dates at least
        ids = self.ids.to_numpy()[spans]
        days = (self.last_date - self.first_date)[spans]
        diff = (self.last_price[spans] - self.first_price[spans]) / days
        def pick(order: np.ndarray) -> list[Mover]:
            return [
                Mover(id=int(ids[i]), download_date_min=_iso(self.first_date[spans][i]),
                      download_date_max=_iso(self.last_date[spans][i]), oldest_price=int(self.first_price[spans][i]),
                      latest_price=int(self.last_price[spans][i]), price_diff_per_day=float(diff[i]))
                for i in order[:top]
            ]

        return pick(np.lexsort((ids, -diff))), pick(np.lexsort((ids, diff)))


def _iso(days: int) -> str:
    return str(np.datetime64(int(days), "D"))


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


SETTINGS_HELP = """settings, from the environment (as the book's container takes them):
  S3_ENDPOINT      host:port or URL of the S3 endpoint (empty: AWS)
  S3_ACCESS_KEY    access key id (empty: boto3's usual credential chain)
  S3_SECRET_KEY    secret access key
  BUCKET           the bucket (default inside-airbnb)
  PREFIX           the snapshot objects' key prefix (default listing-)
  RESULTS_PREFIX   where the results go (default results/)
  AWS_DEFAULT_REGION  (default eu-west-1)"""


def build_parser() -> Any:
    import argparse

    return argparse.ArgumentParser(
        prog="ferry-crunch", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SETTINGS_HELP,
        description="Read every snapshot object under PREFIX in BUCKET, find the five biggest price increases "
                    "and decreases per day, and write them to RESULTS_PREFIX{biggest_increase,biggest_decrease}.json "
                    "in the same bucket (replacing what is there).")


def main(argv: list[str] | None = None) -> int:
    """``ferry-crunch``: settings from the environment, like the book's container (see ``SETTINGS_HELP``).

    It takes no arguments: ``--help`` prints the settings, anything else is refused (exit 2)
    before S3 is touched.
    """
    build_parser().parse_args(argv)
    import boto3

    endpoint = os.environ.get("S3_ENDPOINT") or None
    if endpoint and "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=os.environ.get("S3_ACCESS_KEY") or None,
                      aws_secret_access_key=os.environ.get("S3_SECRET_KEY") or None,
                      region_name=os.environ.get("AWS_DEFAULT_REGION", "eu-west-1"))
    summary = crunch_s3(s3, os.environ.get("BUCKET", "inside-airbnb"), os.environ.get("PREFIX", "listing-"),
                        os.environ.get("RESULTS_PREFIX", "results/"))
    print(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

