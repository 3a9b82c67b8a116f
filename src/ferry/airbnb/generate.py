"""Realistic, reproducible Amsterdam-like Inside Airbnb snapshots, generated inside PostgreSQL.

Real Inside Airbnb files cannot be downloaded here, so we make data with their shape: listings
that appear, change price and disappear across the book's 49 download dates (2015-04-05 …
2019-12-07), prices with a per-listing trend and noise, and NULLs where the real files have
them (no reviews → no last_review and no reviews_per_month; an occasional missing price).

Generation runs as SQL in the server (``generate_series``), so a million rows take seconds
and never pass through Python. Randomness comes from md5 of (seed, listing, attribute), not
``random()``, so the result is identical whatever order or parallelism the server picks.
"""

from __future__ import annotations

from datetime import date, timedelta

import psycopg

FIRST, LAST, SNAPSHOTS = date(2015, 4, 5), date(2019, 12, 7), 49

SCHEMA = """
CREATE TABLE IF NOT EXISTS listings (
    id                             bigint  NOT NULL,
    name                           text,
    host_id                        bigint,
    host_name                      text,
    neighbourhood_group            text,
    neighbourhood                  text,
    latitude                       double precision,
    longitude                      double precision,
    room_type                      text,
    price                          integer,
    minimum_nights                 integer,
    number_of_reviews              integer,
    last_review                    date,
    reviews_per_month              numeric(6,2),
    calculated_host_listings_count integer,
    availability_365               integer,
    download_date                  date    NOT NULL,
    PRIMARY KEY (download_date, id)
);
"""

NEIGHBOURHOODS = [
    "Centrum-West",
    "Centrum-Oost",
    "De Baarsjes - Oud-West",
    "De Pijp - Rivierenbuurt",
    "Westerpark",
    "Zuid",
    "Oud-Oost",
    "Bos en Lommer",
    "Oostelijk Havengebied - Indische Buurt",
    "Oud-Noord",
    "Watergraafsmeer",
    "IJburg - Zeeburgereiland",
    "Slotervaart",
    "Noord-West",
    "Noord-Oost",
    "Geuzenveld - Slotermeer",
    "Buitenveldert - Zuidas",
    "De Aker - Nieuw Sloten",
    "Osdorp",
    "Bijlmer-Centrum",
    "Gaasperdam - Driemond",
    "Bijlmer-Oost",
]


def download_dates() -> list[date]:
    """49 snapshot dates spread over the book's range, first and last included."""
    span = (LAST - FIRST).days
    return [FIRST + timedelta(days=round(i * span / (SNAPSHOTS - 1))) for i in range(SNAPSHOTS)]


# r(k): a uniform number in [0, 1) for this listing and attribute k, from md5.
_R = "(('x' || substr(md5(%(seed)s::text || ':' || l.id || ':{k}'), 1, 8))::bit(32)::bigint / 4294967296.0)"


def _r(k: str) -> str:
    return _R.format(k=k)


GENERATE = f"""
WITH dates AS (
    SELECT row_number() OVER (ORDER BY d) - 1 AS idx, d AS download_date
    FROM unnest(%(dates)s::date[]) AS d
),
l AS (
    SELECT g AS id FROM generate_series(1, %(listings)s) AS g
),
spec AS MATERIALIZED (
    SELECT l.id,
           -- a listing lives for a stretch of snapshots: many short-lived, some for years
           floor({_r("start")} * %(n_dates)s)::int AS first_idx,
           greatest(1, floor(power({_r("life")}, 3) * %(n_dates)s))::int AS lifetime,
           (array{NEIGHBOURHOODS!r})[1 + floor({_r("hood")} * {len(NEIGHBOURHOODS)})::int] AS neighbourhood,
           CASE WHEN {_r("room")} < 0.78 THEN 'Entire home/apt'
                WHEN {_r("room")} < 0.99 THEN 'Private room' ELSE 'Shared room' END AS room_type,
           1000 + floor({_r("host")} * 0.8 * %(listings)s)::bigint AS host_id,
           -- central neighbourhoods (listed first) cost more; rooms less than whole homes
           (60 + 140 * power({_r("base")}, 2))
             * (1.45 - 0.035 * floor({_r("hood")} * {len(NEIGHBOURHOODS)}))
             * CASE WHEN {_r("room")} < 0.78 THEN 1.0 WHEN {_r("room")} < 0.99 THEN 0.6 ELSE 0.4 END AS base_price,
           ({_r("trend")} - 0.45) * 0.04 AS trend,        -- relative change per snapshot
           52.29 + {_r("lat")} * 0.14 AS latitude,
           4.76 + {_r("lon")} * 0.23 AS longitude,
           1 + floor(power({_r("nights")}, 3) * 14)::int AS minimum_nights,
           {_r("reviews")} AS review_rate
    FROM l
)
INSERT INTO listings
SELECT s.id,
       initcap(s.room_type) || ' in ' || s.neighbourhood || ' #' || s.id,
       s.host_id,
       (array['Anna','Bram','Daan','Emma','Fleur','Jan','Lotte','Sem','Tess','Yara'])[1 + s.host_id %% 10],
       NULL,                                         -- Amsterdam has no neighbourhood groups
       s.neighbourhood,
       round(s.latitude::numeric, 5)::float8,
       round(s.longitude::numeric, 5)::float8,
       s.room_type,
       CASE WHEN md5(s.id || ':' || d.idx) < '03' THEN NULL   -- about 1 %% missing prices
            ELSE greatest(10, round(s.base_price * (1 + s.trend * (d.idx - s.first_idx))
                 * (0.95 + 0.1 * ('x' || substr(md5(s.id || ':p:' || d.idx), 1, 4))::bit(16)::int / 65536.0)))::int
       END,
       s.minimum_nights,
       floor(s.review_rate * 3 * (d.idx - s.first_idx + 1))::int AS number_of_reviews,
       CASE WHEN floor(s.review_rate * 3 * (d.idx - s.first_idx + 1)) = 0 THEN NULL
            ELSE d.download_date - (floor(s.review_rate * 40))::int END,
       CASE WHEN floor(s.review_rate * 3 * (d.idx - s.first_idx + 1)) = 0 THEN NULL
            ELSE round((s.review_rate * 3)::numeric, 2) END,
       1 + (s.host_id %% 3),
       (s.id * 7 + d.idx * 13) %% 366,
       d.download_date
FROM spec s
JOIN dates d ON d.idx >= s.first_idx AND d.idx < s.first_idx + s.lifetime
"""


def listings_for_rows(rows: int) -> int:
    """How many listings give about ``rows`` rows (measured: a listing is in ~8.8 snapshots on average)."""
    return max(1, round(rows / 8.8))


def generate(conn: psycopg.Connection, *, rows: int = 1_000_000, seed: int = 7) -> int:
    """Replace the ``listings`` table's content with generated snapshots; return the row count."""
    with conn.transaction():
        conn.execute(SCHEMA)
        conn.execute("TRUNCATE listings")
        conn.execute(
            GENERATE,
            {"seed": seed, "dates": download_dates(), "n_dates": SNAPSHOTS, "listings": listings_for_rows(rows)},
        )
    conn.execute("ANALYZE listings")
    return conn.execute("SELECT count(*) FROM listings").fetchone()[0]


# -- real files ------------------------------------------------------------------------------------

LOAD_COLUMNS = [
    "id", "name", "host_id", "host_name", "neighbourhood_group", "neighbourhood", "latitude", "longitude",
    "room_type", "price", "minimum_nights", "number_of_reviews", "last_review", "reviews_per_month",
    "calculated_host_listings_count", "availability_365",
]


def snapshot_date_of(path: str) -> date:
    """The snapshot date in a file name such as ``listings-2019-12-07.csv`` or ``2019-12-07/listings.csv``."""
    import re

    found = re.findall(r"(\d{4})-(\d{2})-(\d{2})", path)
    if not found:
        raise ValueError(f"{path}: no YYYY-MM-DD date in the name; pass the snapshot date explicitly")
    return date(*map(int, found[-1]))


def load(conn: psycopg.Connection, path: str, download_date: date) -> int:
    """Load one Inside Airbnb ``listings.csv`` (the summary file) as the snapshot of ``download_date``.

    Extra columns of newer files are ignored; a price like ``$1,234.00`` (detailed files) is
    accepted. Loading the same date again replaces that snapshot, so loads are idempotent.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        include_columns=LOAD_COLUMNS, include_missing_columns=True,
        column_types={"price": pa.string(), "last_review": pa.string()}))
    price = pc.replace_substring_regex(table["price"], r"[$,\s]", "")
    table = table.set_column(table.schema.get_field_index("price"), "price",
                             pc.cast(pc.round(pc.cast(pc.if_else(pc.equal(price, ""), None, price), pa.float64())),
                                     pa.int32()))
    with conn.transaction():
        conn.execute(SCHEMA)
        conn.execute("DELETE FROM listings WHERE download_date = %s", (download_date,))
        columns = ", ".join(LOAD_COLUMNS)
        with conn.cursor() as cur, cur.copy(f"COPY listings ({columns}, download_date) FROM STDIN") as copy:
            for row in table.to_pylist():
                copy.write_row([row[c] if row[c] != "" else None for c in LOAD_COLUMNS] + [download_date])
    return table.num_rows
