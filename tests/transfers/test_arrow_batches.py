"""``arrow_batches``: COPY's csv parsed by Arrow, checked against psycopg's own loaders.

Against the test stack's PostgreSQL. The csv path must give the very values the row path
(a server-side cursor, psycopg loading each value) gives, whatever the session's DateStyle,
TimeZone and extra_float_digits; a NULL alone on its row is a row; a value parquet cannot hold
fails naming its column. The full type matrix is tests/transfers/test_fidelity.py.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

import ferry.transfers.postgres_source as source

pytestmark = pytest.mark.integration

MIXED = """
    SELECT g AS id, (g % 2 = 0) AS even, g::int2 AS small, (g * 1.25)::numeric(12,2) AS amount,
           g / 3.0::float8 AS third, (g / 7.0)::float4 AS seventh, md5(g::text) AS word,
           CASE WHEN g % 5 = 0 THEN NULL WHEN g % 5 = 1 THEN '' ELSE E'line\\nbreak, "quoted"' END AS odd,
           date '2020-02-29' + g AS day, time '12:34:56.789012' AS at, timestamp '2019-01-01 01:02:03.456789' + g *
           interval '1 hour' AS stamp, timestamptz '2019-06-30 23:59:59.999999+02' AS zoned,
           interval '1 day 2 hours' * g AS span, ('{"a": ' || g || '}')::jsonb AS doc,
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS tag, 'ab'::char(3) AS padded
    FROM generate_series(1, 3000) AS g ORDER BY g
"""


def table(batches) -> pa.Table:
    return pa.Table.from_batches(list(batches))


def test_the_csv_path_gives_the_values_psycopg_loads(pg, monkeypatch):
    by_rows = table(source._row_batches(pg, MIXED, None, 1000))
    taken = []
    monkeypatch.setattr(source, "_row_batches", lambda *a: taken.append(a) or iter(()))
    # A session that prints dates, zones and floats its own way: the export sets its own.
    pg.execute("SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Asia/Kolkata'; SET extra_float_digits = 0")
    by_csv = table(source.arrow_batches(pg, MIXED, None))
    assert taken == []  # every column here is a csv type: the row path was not used
    assert by_csv.schema == by_rows.schema
    assert by_csv.to_pylist() == by_rows.to_pylist()
    assert by_csv.column("odd").to_pylist()[:3] == ['', 'line\nbreak, "quoted"', 'line\nbreak, "quoted"']
    assert by_csv.column("odd").null_count == 600


def test_a_null_alone_on_its_row_is_a_row(pg):
    query = "SELECT v FROM (VALUES (1, NULL::int), (2, 7), (3, NULL)) AS t(k, v) ORDER BY k"
    assert table(source.arrow_batches(pg, query, None)).column("v").to_pylist() == [None, 7, None]
    text = "SELECT v FROM (VALUES (1, NULL::text), (2, '')) AS t(k, v) ORDER BY k"
    assert table(source.arrow_batches(pg, text, None)).column("v").to_pylist() == [None, ""]


def test_an_empty_result_keeps_its_schema(pg):
    result = table(source.arrow_batches(pg, "SELECT 1::int8 AS a, 'x'::text AS b WHERE false", None))
    assert result.num_rows == 0 and result.schema == pa.schema([("a", pa.int64()), ("b", pa.string())])


def test_other_types_and_repeated_names_take_the_row_path(pg, monkeypatch):
    monkeypatch.setattr(source, "_csv_batches", lambda *a: pytest.fail("the csv path was taken"))
    assert table(source.arrow_batches(pg, "SELECT '\\x0102'::bytea AS b", None)).column("b").to_pylist() == [
        b"\x01\x02"]
    assert table(source.arrow_batches(pg, "SELECT ARRAY[1, 2] AS a", None)).column("a").to_pylist() == [[1, 2]]
    assert table(source.arrow_batches(pg, "SELECT 1 AS x, 2 AS x", None)).num_rows == 1


@pytest.mark.parametrize(("value", "column"), [("'NaN'::numeric", "decimal128(38, 10)"),
                                               ("1.12345678901::numeric", "decimal128(38, 10)"),
                                               ("'infinity'::date", "date32")])
def test_a_value_parquet_cannot_hold_fails_naming_its_column(pg, value, column):
    query = f"SELECT g AS id, CASE WHEN g = 2 THEN {value} END AS v FROM generate_series(1, 3) AS g"
    with pytest.raises(ValueError, match="a value cannot be written to parquet: column 'v' " + re.escape(f"({column}")):
        table(source.arrow_batches(pg, query, None))
