"""S3ToPostgresOperator against the test stack's S3 and PostgreSQL: round trips of every format
with PostgresToS3Operator, one transaction, and table names that are not SQL."""

from __future__ import annotations

import gzip

import pytest
from airflow.sdk.exceptions import AirflowException

from ferry.transfers import PostgresToS3Operator, S3ToPostgresOperator

pytestmark = pytest.mark.integration

COLUMNS = "id, t, n, ts, arr, j, b, f, d, flag, tags"


def export(bucket: str, key: str, **kwargs) -> None:
    PostgresToS3Operator(task_id="export", postgres_conn_id="inside_airbnb", query="SELECT * FROM awkward",
                         s3_bucket=bucket, s3_key=key, **kwargs).execute({})


def load(bucket: str, key: str, table: str = "awkward_copy", **kwargs) -> dict:
    return S3ToPostgresOperator(task_id="load", s3_bucket=bucket, s3_key=key, postgres_conn_id="inside_airbnb",
                                table=table, **kwargs).execute({})


@pytest.fixture
def empty_copy(pg):
    pg.execute("DROP TABLE IF EXISTS awkward_copy; CREATE TABLE awkward_copy (LIKE awkward)")
    return pg


def rows(pg, table: str) -> list[tuple]:
    # NaN is a value here (row 3's float), and NaN != NaN: compare the float8 column as text.
    return pg.execute(f"SELECT {COLUMNS.replace(' f,', ' f::text,')} FROM {table} ORDER BY id").fetchall()


@pytest.mark.parametrize("file_format,compression", [("csv", None), ("csv", "gzip"), ("csv", "zstd"),
                                                     ("jsonl", "gzip"), ("parquet", "zstd")])
def test_round_trip_keeps_every_value(empty_copy, bucket, file_format, compression):
    key = f"awkward.{file_format}" + {None: "", "gzip": ".gz", "zstd": ".zst"}[compression]
    export(bucket, key, file_format=file_format, compression=compression)
    manifest = load(bucket, key, file_format=file_format)
    assert manifest["rows"] == 3 and manifest["table"] == "awkward_copy"
    expected, loaded = rows(empty_copy, "awkward"), rows(empty_copy, "awkward_copy")
    if file_format == "jsonl":
        # JSON has one null: the jsonb 'null' of row 3 exports as null and loads as SQL NULL.
        assert [r[5] for r in loaded] == [None, {"a": 'x"y\\z', "n": [1, None]}, None]
        assert [(*r[:5], *r[6:]) for r in loaded] == [(*r[:5], *r[6:]) for r in expected]
    else:
        assert loaded == expected


def test_prefix_loads_every_object_in_one_transaction(empty_copy, s3, bucket):
    s3.put_object(Bucket=bucket, Key="parts/1.csv", Body=b"id,t\n1,one\n2,two\n")
    s3.put_object(Bucket=bucket, Key="parts/2.csv.gz", Body=gzip.compress(b"id,t\n3,three\n"))
    manifest = load(bucket, "parts/", columns=["id", "t"], truncate=True)
    assert [(f["s3_key"], f["rows"]) for f in manifest["files"]] == [("parts/1.csv", 2), ("parts/2.csv.gz", 1)]
    assert empty_copy.execute("SELECT id, t FROM awkward_copy ORDER BY id").fetchall() == [
        (1, "one"), (2, "two"), (3, "three")]

    s3.put_object(Bucket=bucket, Key="parts/3.csv", Body=b"id,t\n4,four\nnot a number,five\n")
    with pytest.raises(AirflowException, match=r"the PostgreSQL query failed after 2 of 3 objects .*"
                                                r"nothing was loaded into awkward_copy"):
        load(bucket, "parts/", columns=["id", "t"], truncate=True)
    # The truncate and the first two objects were rolled back with the bad third one.
    assert [r[0] for r in empty_copy.execute("SELECT id FROM awkward_copy ORDER BY id")] == [1, 2, 3]


def test_jsonl_with_a_field_the_table_lacks_loads_nothing(empty_copy, s3, bucket):
    s3.put_object(Bucket=bucket, Key="x.jsonl", Body=b'{"id": 1}\n{"id": 2, "surprise": true}\n')
    with pytest.raises(AirflowException, match=r"line 2: fields \['surprise'\] are not columns"):
        load(bucket, "x.jsonl", file_format="jsonl")
    assert rows(empty_copy, "awkward_copy") == []


@pytest.mark.parametrize("table", ['awkward_copy"; DROP TABLE awkward; --', "awkward_copy; DROP TABLE awkward",
                                   "no_such_schema.awkward_copy"])
def test_table_names_are_identifiers_not_sql(empty_copy, s3, bucket, table):
    s3.put_object(Bucket=bucket, Key="one.csv", Body=b"1\n")
    with pytest.raises(AirflowException, match="does not exist"):
        load(bucket, "one.csv", table=table, columns=["id"], csv_header=False)
    assert empty_copy.execute("SELECT count(*) FROM awkward").fetchone() == (3,)


def test_missing_objects_are_a_clear_error(bucket):
    with pytest.raises(AirflowException, match=f"s3://{bucket}/nope cannot be read.*nothing was loaded"):
        load(bucket, "nope")
    with pytest.raises(AirflowException, match=f"no objects under s3://{bucket}/empty/"):
        load(bucket, "empty/")


@pytest.mark.parametrize("kwargs,message", [({"file_format": "xml"}, "file_format must be"),
                                            ({"compression": "bz2"}, "compression must be"),
                                            ({"file_format": "jsonl", "columns": ["id"]}, "columns is for csv")])
def test_bad_arguments_fail_at_parse_time(kwargs, message):
    with pytest.raises(ValueError, match=message):
        S3ToPostgresOperator(task_id="x", s3_bucket="b", s3_key="k", postgres_conn_id="c", table="t", **kwargs)
