"""The cruncher against a straightforward pandas reference (the book's method, with concat
instead of the removed ``DataFrame.append``), on data built to be awkward: NULL prices, ties,
listings seen once, listings whose only priced snapshots share a date."""

from __future__ import annotations

import io
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from ferry.airbnb.cruncher import crunch, csv_batches


def reference(frames: list[pd.DataFrame], top: int = 5) -> tuple[list[dict], list[dict]]:
    df = pd.concat(frames, ignore_index=True)
    df = df[df["price"].notna()]
    per_id = df.groupby("id").agg(download_date_min=("download_date", "min"),
                                  download_date_max=("download_date", "max")).reset_index()
    first = per_id.merge(df, left_on=["id", "download_date_min"], right_on=["id", "download_date"])
    both = first.rename(columns={"price": "oldest_price"}).drop(columns="download_date").merge(
        df, left_on=["id", "download_date_max"], right_on=["id", "download_date"]
    ).rename(columns={"price": "latest_price"})
    both = both[both["download_date_max"] != both["download_date_min"]]
    days = (pd.to_datetime(both["download_date_max"]) - pd.to_datetime(both["download_date_min"])).dt.days
    both = both.assign(price_diff_per_day=(both["latest_price"] - both["oldest_price"]) / days)
    cols = ["id", "download_date_min", "download_date_max", "oldest_price", "latest_price", "price_diff_per_day"]

    def records(frame: pd.DataFrame) -> list[dict]:
        return [{"id": int(r.id), "download_date_min": str(r.download_date_min)[:10],
                 "download_date_max": str(r.download_date_max)[:10], "oldest_price": int(r.oldest_price),
                 "latest_price": int(r.latest_price), "price_diff_per_day": float(r.price_diff_per_day)}
                for r in frame[cols].itertuples()]

    up = both.sort_values(["price_diff_per_day", "id"], ascending=[False, True]).head(top)
    down = both.sort_values(["price_diff_per_day", "id"], ascending=[True, True]).head(top)
    return records(up), records(down)


def snapshots(seed: int, n_listings: int = 400, n_dates: int = 12) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2015-04-05", periods=n_dates, freq="35D")
    frames = []
    for i, day in enumerate(dates):
        present = rng.random(n_listings) < 0.6
        ids = np.arange(1, n_listings + 1)[present]
        # Coarse prices make exact ties in price change per day common.
        prices = (rng.integers(5, 15, len(ids)) * 10 + (i * (ids % 3))).astype("float64")
        prices[rng.random(len(ids)) < 0.1] = np.nan  # NULL prices
        frames.append(pd.DataFrame({"id": ids, "price": prices, "download_date": day.date()}))
    return frames


def as_csv(frame: pd.DataFrame) -> io.BytesIO:
    return io.BytesIO(frame.assign(name="x, \"quoted\"").to_csv(index=False).encode())


@pytest.mark.parametrize("seed", range(5))
def test_same_top_five_as_the_pandas_reference(seed):
    frames = snapshots(seed)
    increases, decreases = crunch(b for f in frames for b in csv_batches(as_csv(f)))
    assert ([asdict(m) for m in increases], [asdict(m) for m in decreases]) == reference(frames)


def test_ties_null_prices_and_single_snapshots():
    frames = [
        pd.DataFrame({"id": [1, 2, 3, 4, 5], "price": [100, 100, np.nan, 50, 70], "download_date": ["2015-04-05"] * 5}),
        pd.DataFrame({"id": [1, 2, 3, 5, 6], "price": [110, 110, 80, np.nan, 10], "download_date": ["2015-04-15"] * 5}),
    ]
    increases, decreases = crunch(b for f in frames for b in csv_batches(as_csv(f)))
    # 1 and 2 tie at +1.0/day: the lower id first. 3 has one priced snapshot, 4 and 6 one
    # snapshot, 5 a NULL latest price: all skipped.
    assert [(m.id, m.price_diff_per_day) for m in increases] == [(1, 1.0), (2, 1.0)]
    assert [m.id for m in decreases] == [1, 2]


def test_no_data_gives_empty_results():
    assert crunch([]) == ([], [])
