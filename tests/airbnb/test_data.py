"""Generated snapshots and loading real Inside Airbnb files, in the test stack's PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from ferry.airbnb.generate import download_dates, generate, snapshot_date_of

pytestmark = pytest.mark.integration

CHECKSUM = "SELECT md5(string_agg(l::text, '|' ORDER BY download_date, id)) FROM listings l"


@pytest.fixture
def conn(stack):
    with stack.service("postgres").connect("inside_airbnb", autocommit=True) as conn:
        yield conn


def test_generation_is_reproducible_and_looks_like_inside_airbnb(conn):
    rows = generate(conn, rows=30_000, seed=3)
    first = conn.execute(CHECKSUM).fetchone()[0]
    assert generate(conn, rows=30_000, seed=3) == rows
    assert conn.execute(CHECKSUM).fetchone()[0] == first  # same seed, same data
    assert 0.85 * 30_000 < rows < 1.15 * 30_000

    dates = [r[0] for r in conn.execute("SELECT DISTINCT download_date FROM listings ORDER BY 1")]
    assert dates == download_dates() and (dates[0], dates[-1]) == (date(2015, 4, 5), date(2019, 12, 7))
    stats = conn.execute("""
        SELECT count(*) FILTER (WHERE price IS NULL),
               count(*) FILTER (WHERE (last_review IS NULL) <> (number_of_reviews = 0)),
               count(DISTINCT neighbourhood), count(*) FILTER (WHERE neighbourhood_group IS NOT NULL),
               count(DISTINCT price)
        FROM listings""").fetchone()
    null_prices, inconsistent_reviews, neighbourhoods, groups, prices = stats
    assert 0 < null_prices < rows * 0.03
    assert inconsistent_reviews == 0 and neighbourhoods == 22 and groups == 0 and prices > 100
    appear = conn.execute("SELECT count(*) FROM listings WHERE download_date = '2019-12-07' AND id NOT IN "
                          "(SELECT id FROM listings WHERE download_date = '2015-04-05')").fetchone()[0]
    vanish = conn.execute("SELECT count(*) FROM listings WHERE download_date = '2015-04-05' AND id NOT IN "
                          "(SELECT id FROM listings WHERE download_date = '2019-12-07')").fetchone()[0]
    assert appear > 0 and vanish > 0  # listings appear and disappear
    generate(conn, rows=30_000, seed=4)
    assert conn.execute(CHECKSUM).fetchone()[0] != first


REAL_HEADER = ("id,name,host_id,host_name,neighbourhood_group,neighbourhood,latitude,longitude,room_type,price,"
               "minimum_nights,number_of_reviews,last_review,reviews_per_month,calculated_host_listings_count,"
               "availability_365,number_of_reviews_ltm,license\n")


def test_load_real_files_through_the_cli(conn, tmp_path: Path):
    day = tmp_path / "2021-03-04"
    day.mkdir()
    csv = day / "listings.csv"
    csv.write_text(REAL_HEADER
                   + '2818,"Quiet Garden View Room, ""super fast wifi""",3159,Daniel,,Oostelijk Havengebied - '
                   'Indische Buurt,52.36575,4.94142,Private room,59,3,278,2020-02-14,1.98,1,0,2,\n'
                   + '20168,Studio with bike,59484,Alexander,,Centrum-Oost,52.36509,4.89354,Entire home/apt,'
                   '"$1,236.00",1,339,,,2,0,0,0363 CBB3\n')
    env = {**os.environ}
    ferry = str(Path(sys.executable).parent / "ferry")
    for _ in range(2):  # loading the same snapshot twice replaces it
        result = subprocess.run([ferry, "airbnb", "load", str(csv)], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "2 listings as the snapshot of 2021-03-04" in result.stdout
    rows = conn.execute("SELECT id, name, price, last_review, reviews_per_month FROM listings "
                        "WHERE download_date = '2021-03-04' ORDER BY id").fetchall()
    assert rows[0][:3] == (2818, 'Quiet Garden View Room, "super fast wifi"', 59)
    assert rows[1][2:] == (1236, None, None)
    bad = subprocess.run([ferry, "airbnb", "load", str(tmp_path / "nodate.csv")], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "no YYYY-MM-DD date" in bad.stderr and "Traceback" not in bad.stderr


def test_snapshot_date_from_names():
    assert snapshot_date_of("data/amsterdam/2019-12-07/listings.csv") == date(2019, 12, 7)
    assert snapshot_date_of("listings-2015-04-05.csv") == date(2015, 4, 5)
