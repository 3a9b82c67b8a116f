"""PostgresToS3Operator against the real PostgreSQL and S3 endpoint of the test stack."""

from __future__ import annotations

import gzip
import io
import json
import threading
import time
from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
import zstandard
from airflow.sdk.exceptions import AirflowException

from ferry.transfers import PostgresToS3Operator
from tests.transfers.conftest import get_body, keys, open_uploads

pytestmark = pytest.mark.integration


def export(bucket: str, key: str, query: str = "SELECT * FROM awkward ORDER BY id", **kwargs):
    op = PostgresToS3Operator(
        task_id="export", postgres_conn_id="inside_airbnb", query=query, s3_bucket=bucket, s3_key=key, **kwargs
    )
    return op.execute({})


def copy_csv(pg, query: str) -> bytes:
    out = bytearray()
    with pg.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
        for chunk in copy:
            out += chunk
    return bytes(out)


# -- formats -------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["SELECT * FROM awkward ORDER BY id", "SELECT * FROM numbers ORDER BY id;"])
def test_csv_is_byte_for_byte_copy(pg, s3, bucket, query):
    manifest = export(bucket, "out.csv", query)
    expected = copy_csv(pg, query.rstrip(";"))
    assert get_body(s3, bucket, "out.csv") == expected
    assert manifest["files"] == [
        {"key": "out.csv", "rows": expected.count(b"\n") - 1 if "numbers" in query else 3, "bytes": len(expected)}
    ]


def test_jsonl_is_one_object_per_row_with_types(pg, s3, bucket):
    export(bucket, "out.jsonl", file_format="jsonl")
    rows = [json.loads(line) for line in get_body(s3, bucket, "out.jsonl").decode().splitlines()]
    assert len(rows) == 3
    assert rows[0] == dict.fromkeys(rows[0], None) | {"id": 1}
    assert rows[1]["t"] == "" and rows[1]["arr"] == [1, 2, 3]
    assert rows[1]["j"] == {"a": 'x"y\\z', "n": [1, None]}
    assert rows[1]["ts"] == "2019-12-07T08:00:00+00:00"
    assert rows[1]["tags"] == ["a,b", 'c"d']
    assert rows[2]["t"] == 'quote " comma , newline \n tab \t backslash \\ unicode é 漢字 😀'
    assert rows[2]["j"] is None  # jsonb 'null' is JSON null, as row_to_json writes it


def test_parquet_keeps_postgres_types(pg, s3, bucket):
    export(bucket, "out.parquet", file_format="parquet")
    table = pq.read_table(io.BytesIO(get_body(s3, bucket, "out.parquet")))
    types = {f.name: str(f.type) for f in table.schema}
    assert types == {
        "id": "int32",
        "t": "string",
        "n": "decimal128(38, 10)",
        "ts": "timestamp[us, tz=UTC]",
        "arr": "list<element: int32>",
        "j": "string",
        "b": "binary",
        "f": "double",
        "d": "date32[day]",
        "flag": "bool",
        "tags": "list<element: string>",
    }
    null_row, row, odd = table.to_pylist()
    assert all(v is None for k, v in null_row.items() if k != "id")  # NULL stays null
    assert row["t"] == ""  # the empty string stays an empty string
    assert row["n"] == Decimal("1234567890123456789012345678.0123456789")
    assert row["ts"] == datetime(2019, 12, 7, 8, 0, tzinfo=timezone.utc)
    assert row["b"] == b"\x00\xff" and row["d"] == date(2019, 12, 7) and row["flag"] is True
    assert json.loads(row["j"]) == {"a": 'x"y\\z', "n": [1, None]}
    assert odd["n"] == Decimal("-0.0000000001") and odd["arr"] == [] and odd["b"] == b""
    assert odd["t"].endswith("漢字 😀")


def test_empty_result_still_writes_a_file_with_header_or_schema(pg, s3, bucket):
    query = "SELECT * FROM numbers WHERE id < 0"
    export(bucket, "empty.csv", query)
    assert get_body(s3, bucket, "empty.csv") == b"id,word,amount,at\n"
    export(bucket, "empty.parquet", query, file_format="parquet")
    table = pq.read_table(io.BytesIO(get_body(s3, bucket, "empty.parquet")))
    assert table.num_rows == 0 and table.schema.names == ["id", "word", "amount", "at"]
    export(bucket, "empty.jsonl", query, file_format="jsonl")
    assert get_body(s3, bucket, "empty.jsonl") == b""


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
@pytest.mark.parametrize(
    "compression,decompress",
    [
        ("gzip", gzip.decompress),
        ("zstd", lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)),
    ],
)
def test_compression_round_trips(pg, s3, bucket, file_format, compression, decompress):
    query = "SELECT * FROM numbers ORDER BY id"
    export(bucket, "plain", query, file_format=file_format)
    export(bucket, "packed", query, file_format=file_format, compression=compression)
    packed = get_body(s3, bucket, "packed")
    assert len(packed) < len(get_body(s3, bucket, "plain")) / 2
    assert decompress(packed) == get_body(s3, bucket, "plain")


def test_parquet_compression_is_the_column_codec(pg, s3, bucket):
    export(bucket, "z.parquet", "SELECT * FROM numbers", file_format="parquet", compression="zstd")
    meta = pq.ParquetFile(io.BytesIO(get_body(s3, bucket, "z.parquet"))).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert meta.num_rows == 20000


# -- splitting -----------------------------------------------------------------------------------


def test_split_by_rows_repeats_header_and_loses_nothing(pg, s3, bucket):
    query = "SELECT * FROM numbers ORDER BY id"
    manifest = export(bucket, "split/numbers.csv.gz", query, compression="gzip", max_rows_per_file=7000)
    assert [f["key"] for f in manifest["files"]] == [f"split/numbers-part-0000{i}.csv.gz" for i in range(3)]
    assert [f["rows"] for f in manifest["files"]] == [7000, 7000, 6000]
    parts = [gzip.decompress(get_body(s3, bucket, f["key"])) for f in manifest["files"]]
    header = b"id,word,amount,at\n"
    assert all(p.startswith(header) for p in parts)
    assert header + b"".join(p[len(header) :] for p in parts) == copy_csv(pg, query)
    assert manifest["rows"] == 20000


def test_split_by_bytes_keeps_each_file_under_the_limit(pg, s3, bucket):
    query = "SELECT * FROM numbers ORDER BY id"
    manifest = export(bucket, "b/{part}.jsonl", query, file_format="jsonl", max_bytes_per_file=300_000)
    assert manifest["files"][0]["key"] == "b/00000.jsonl"
    assert all(f["bytes"] <= 300_000 for f in manifest["files"])
    assert len(manifest["files"]) > 3
    lines = b"".join(get_body(s3, bucket, f["key"]) for f in manifest["files"]).splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(1, 20001))


def test_parquet_split_by_rows(pg, s3, bucket):
    manifest = export(
        bucket, "p.parquet", "SELECT * FROM numbers ORDER BY id", file_format="parquet", max_rows_per_file=15000
    )
    counts = [pq.read_table(io.BytesIO(get_body(s3, bucket, f["key"]))).num_rows for f in manifest["files"]]
    assert counts == [15000, 5000] == [f["rows"] for f in manifest["files"]]


def test_rerun_is_identical_and_removes_stale_parts(pg, s3, bucket):
    query = "SELECT * FROM numbers WHERE id <= %(upto)s ORDER BY id"
    first = export(bucket, "r/n.csv", query, parameters={"upto": 20000}, max_rows_per_file=5000)
    assert len(first["files"]) == 4
    bodies = {k: get_body(s3, bucket, k) for k in keys(s3, bucket)}
    again = export(bucket, "r/n.csv", query, parameters={"upto": 20000}, max_rows_per_file=5000)
    assert again["files"] == first["files"]
    assert {k: get_body(s3, bucket, k) for k in keys(s3, bucket)} == bodies
    smaller = export(bucket, "r/n.csv", query, parameters={"upto": 6000}, max_rows_per_file=5000)
    assert keys(s3, bucket) == ["r/n-part-00000.csv", "r/n-part-00001.csv"]
    assert smaller["deleted_stale_parts"] == ["r/n-part-00002.csv", "r/n-part-00003.csv"]


def test_parameters_are_bound_not_pasted(pg, s3, bucket):
    export(bucket, "p.csv", "SELECT t FROM awkward WHERE t = %s", parameters=["'; DROP TABLE awkward; --"])
    assert get_body(s3, bucket, "p.csv") == b"t\n"
    assert pg.execute("SELECT count(*) FROM awkward").fetchone() == (3,)


def test_progress_is_logged(pg, bucket, capfd):
    export(bucket, "n.csv", "SELECT * FROM numbers")
    out = capfd.readouterr().out
    assert "done: 20,000 rows" in out and "rows/s" in out and "MB/s" in out


# -- failures ------------------------------------------------------------------------------------


def test_failing_query_leaves_nothing(pg, s3, bucket):
    with pytest.raises(AirflowException, match=r"query failed.*division by zero"):
        export(bucket, "bad.csv", "SELECT 1 / (g - 15000) FROM generate_series(1, 20000) AS g")
    assert keys(s3, bucket) == [] and open_uploads(s3, bucket) == []


def test_failure_mid_split_keeps_the_previous_run(pg, s3, bucket):
    good = "SELECT g FROM generate_series(1, 30000) AS g"
    export(bucket, "x.csv", good, max_rows_per_file=10000)
    before = {k: get_body(s3, bucket, k) for k in keys(s3, bucket)}
    with pytest.raises(AirflowException, match="query failed"):
        export(
            bucket, "x.csv", "SELECT 1 / (g - 25000) AS g FROM generate_series(1, 30000) AS g", max_rows_per_file=10000
        )
    assert {k: get_body(s3, bucket, k) for k in keys(s3, bucket)} == before
    assert open_uploads(s3, bucket) == []


def test_missing_bucket_says_so(pg):
    with pytest.raises(AirflowException, match="bucket 'no-such-bucket' does not exist"):
        export("no-such-bucket", "x.csv")


def test_replace_false_refuses_an_existing_key(pg, s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep.csv", Body=b"precious")
    with pytest.raises(AirflowException, match="already exists and replace=False"):
        export(bucket, "keep.csv", replace=False)
    assert get_body(s3, bucket, "keep.csv") == b"precious"
    assert open_uploads(s3, bucket) == []


def test_dropped_connection_leaves_nothing(pg, s3, bucket):
    s3.put_object(Bucket=bucket, Key="slow.csv", Body=b"previous run")
    query = "SELECT g, pg_sleep(CASE WHEN g = 3000 THEN 20 ELSE 0 END) FROM generate_series(1, 5000) AS g"

    def kill_exporter() -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            killed = pg.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'COPY (SELECT g, pg_sleep%%' AND pid <> pg_backend_pid()"
            ).fetchall()
            if killed:
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_exporter)
    killer.start()
    with pytest.raises(AirflowException, match="lost the PostgreSQL connection"):
        export(bucket, "slow.csv", query)
    killer.join()
    assert get_body(s3, bucket, "slow.csv") == b"previous run"
    assert open_uploads(s3, bucket) == []


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"file_format": "xlsx"}, "file_format must be one of"),
        ({"compression": "bz2"}, "compression must be None"),
        ({"max_rows_per_file": 0}, "max_rows_per_file must be a positive number"),
        ({"part_size": 1024 * 1024}, "part_size must be at least 5 MiB"),
        ({"upload_concurrency": 0}, "upload_concurrency must be at least 1"),
    ],
)
def test_bad_arguments_fail_at_parse_time(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PostgresToS3Operator(task_id="x", postgres_conn_id="c", query="q", s3_bucket="b", s3_key="k", **kwargs)
