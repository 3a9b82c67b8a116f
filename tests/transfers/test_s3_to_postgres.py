"""S3ToPostgresOperator against the test stack's S3 and PostgreSQL: round trips of every format
with PostgresToS3Operator, one transaction, and table names that are not SQL."""

from __future__ import annotations

import gzip

import pytest
from airflow.sdk.exceptions import AirflowException

from ferry.transfers import PostgresToS3Operator, S3ToPostgresOperator
from tests.transfers.conftest import on_operator_s3_calls

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


# --- values as they left, truthful failures (issue 19) ---------------------------------------

def slow_table(pg, table: str, *, pause: float, every: int) -> None:
    """``table (id int, word text)`` whose inserts sleep ``pause`` s every ``every`` ids.

    A fault injected on purpose (a BEFORE INSERT trigger calling ``pg_sleep``): it makes a load
    take seconds, so a test can look at the table, or kill a server, while the COPY runs.
    """
    pg.execute(f"""
        DROP TABLE IF EXISTS {table};
        CREATE TABLE {table} (id int, word text);
        CREATE OR REPLACE FUNCTION ferry_test_pause() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(TG_ARGV[0]::float8); RETURN NEW; END $$;
        CREATE TRIGGER pause BEFORE INSERT ON {table} FOR EACH ROW WHEN (NEW.id % {every} = 0)
            EXECUTE FUNCTION ferry_test_pause('{pause}');
    """)


def copy_progress(pg, table: str) -> int:
    """Rows the running COPY into ``table`` has processed so far (0 when none runs)."""
    row = pg.execute("SELECT tuples_processed FROM pg_stat_progress_copy WHERE relid = %s::regclass",
                     [table]).fetchone()
    return row[0] if row else 0


def csv_rows(first: int, count: int) -> bytes:
    return "".join(f"{i},{i:032x}\n" for i in range(first, first + count)).encode()


@pytest.fixture
def json_table(pg):
    pg.execute("DROP TABLE IF EXISTS json_numbers; "
               "CREATE TABLE json_numbers (id int, n numeric(38,10), f float8, j jsonb, jt json)")
    return pg


def test_jsonl_numbers_stay_numbers_in_json_columns(json_table, s3, bucket):
    from decimal import Decimal

    s3.put_object(Bucket=bucket, Key="n.jsonl", Body=(
        b'{"id": 1, "n": 1234567890123456789012345678.0123456789, "f": 1.5,'
        b' "j": {"price": 1.5, "big": 1e400, "tiny": 1.0000000000000000000001, "list": [0.1, 2, "3"]},'
        b' "jt": {"price": 1.50}}\n'
        b'{"id": 2, "j": 1.5, "jt": "text"}\n'
        b'{"id": 3, "j": "text", "jt": [1E-7]}\n'))
    assert load(bucket, "n.jsonl", table="json_numbers", file_format="jsonl")["rows"] == 3
    assert json_table.execute("""
        SELECT id, n, f, jsonb_typeof(j->'price'), j->>'price', (j->>'big')::numeric = 1e400, j->>'tiny',
               j->>'list', jt::text, jsonb_typeof(j) FROM json_numbers ORDER BY id""").fetchall() == [
        (1, Decimal("1234567890123456789012345678.0123456789"), 1.5, "number", "1.5", True,
         "1.0000000000000000000001", '[0.1, 2, "3"]', '{"price":1.50}', "object"),
        (2, None, None, None, None, None, None, None, '"text"', "number"),
        (3, None, None, None, None, None, None, None, "[1E-7]", "string")]
    # jsonb keeps numbers as numeric, so the value is exactly the one written
    assert json_table.execute("SELECT j = '1.5'::jsonb FROM json_numbers WHERE id = 2").fetchone() == (True,)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_jsonl_nan_is_not_json_and_loads_nothing(json_table, s3, bucket, constant):
    s3.put_object(Bucket=bucket, Key="nan.jsonl", Body=b'{"id": 1}\n{"id": 2, "f": %s}\n' % constant.encode())
    with pytest.raises(AirflowException, match=rf"nan.jsonl, line 2: {constant} is not a JSON number.*"
                                                r"nothing was loaded into json_numbers") as failure:
        load(bucket, "nan.jsonl", table="json_numbers", file_format="jsonl")
    assert "\n" not in str(failure.value)
    assert json_table.execute("SELECT count(*) FROM json_numbers").fetchone() == (0,)


def test_csv_header_maps_columns_by_name(empty_copy, s3, bucket):
    s3.put_object(Bucket=bucket, Key="h/1.csv", Body=b'"t",id,"n"\none,1,1.5\n"two, ""quoted""",2,\n')
    s3.put_object(Bucket=bucket, Key="h/2.csv", Body=b"id,t\n3,three\n")
    s3.put_object(Bucket=bucket, Key="h/3.csv", Body=b"")  # no header line: nothing to load
    s3.put_object(Bucket=bucket, Key="h/4.csv.gz", Body=gzip.compress(b'flag,"id"\r\ntrue,4\r\n'))
    s3.put_object(Bucket=bucket, Key="h/5.csv", Body=b"t,id")  # a header and no rows
    manifest = load(bucket, "h/")
    assert [f["rows"] for f in manifest["files"]] == [2, 1, 0, 1, 0]
    assert empty_copy.execute("SELECT id, t, n, flag FROM awkward_copy ORDER BY id").fetchall() == [
        (1, "one", 1.5, None), (2, 'two, "quoted"', None, None), (3, "three", None, None), (4, None, None, True)]


def test_csv_header_names_decide_the_order_of_given_columns(empty_copy, s3, bucket):
    s3.put_object(Bucket=bucket, Key="x.csv", Body=b"t,id\none,1\n")
    load(bucket, "x.csv", columns=["id", "t"])
    assert empty_copy.execute("SELECT id, t FROM awkward_copy").fetchall() == [(1, "one")]


@pytest.mark.parametrize("header,kwargs,message", [
    (b"id,nope,t", {}, r"p/x.csv: header columns \['nope'\] are not columns of awkward_copy"),
    (b"id,t,id", {}, r"p/x.csv: header names \['id'\] more than once"),
    (b"id,n", {"columns": ["id", "t"]}, r"p/x.csv: header columns \['id', 'n'\] are not the columns given "
                                        r"\['id', 't'\]"),
])
def test_csv_header_that_does_not_fit_loads_nothing(empty_copy, s3, bucket, header, kwargs, message):
    s3.put_object(Bucket=bucket, Key="p/ok.csv", Body=b"t,id\nseven,7\n")
    s3.put_object(Bucket=bucket, Key="p/x.csv", Body=header + b"\n1,2,3\n")
    with pytest.raises(AirflowException, match=rf"the input is not valid after 1 of 2 objects "
                                                rf"\(ValueError: {message}.*\); nothing was loaded into awkward_copy"):
        load(bucket, "p/", **kwargs)
    assert empty_copy.execute("SELECT count(*) FROM awkward_copy").fetchone() == (0,)


def test_truncate_lets_readers_see_the_old_rows_until_the_commit(stack, pg, s3, bucket):
    from tests.transfers.test_crashes import run_in_thread, wait_for

    slow_table(pg, "slow_truncate", pause=0.5, every=1000)
    pg.execute("INSERT INTO slow_truncate SELECT g, 'old' FROM generate_series(1, 3) AS g")
    s3.put_object(Bucket=bucket, Key="new.csv", Body=b"id,word\n" + csv_rows(1, 5000))
    thread, outcome = run_in_thread(lambda: load(bucket, "new.csv", table="slow_truncate", truncate=True))
    wait_for(lambda: copy_progress(pg, "slow_truncate") > 0, thread, outcome)
    with stack.service("postgres").connect("inside_airbnb", autocommit=True) as reader:
        reader.execute("SET statement_timeout = '2s'")
        assert reader.execute("SELECT count(*), min(word) FROM slow_truncate").fetchone() == (3, "old")
        assert thread.is_alive()  # still loading: the count above was read during the load
        thread.join(timeout=60)
        assert outcome.get("result", outcome)["rows"] == 5000
        assert reader.execute("SELECT count(*), min(id) FROM slow_truncate").fetchone() == (5000, 1)


def test_connection_lost_mid_load_fails_in_one_line(pg, s3, bucket):
    """The load's backend is ended with ``pg_terminate_backend`` (a fault injected on purpose):
    the rollback on the dead connection must not hide the one line saying nothing was loaded."""
    from tests.transfers.test_crashes import run_in_thread, wait_for

    slow_table(pg, "slow_lost", pause=0.5, every=1000)
    pg.execute("INSERT INTO slow_lost VALUES (1, 'before')")
    s3.put_object(Bucket=bucket, Key="new.csv", Body=b"id,word\n" + csv_rows(1, 5000))
    thread, outcome = run_in_thread(lambda: load(bucket, "new.csv", table="slow_lost", truncate=True))
    wait_for(lambda: copy_progress(pg, "slow_lost") > 0, thread, outcome)
    pg.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_progress_copy WHERE relid = 'slow_lost'::regclass")
    thread.join(timeout=60)
    error = outcome.get("error")
    assert isinstance(error, AirflowException), outcome
    assert "\n" not in str(error)
    assert str(error).startswith("lost the PostgreSQL connection after 0 of 1 objects"), error
    assert str(error).endswith("nothing was loaded into slow_lost (the transaction was never committed)"), error
    assert pg.execute("SELECT id, word FROM slow_lost").fetchall() == [(1, "before")]


# --- inputs proven whole: compressed streams end, parquet has its footer, ETags pin (issue 19) -

def cut_stream(kind: str, data: bytes) -> bytes:
    """``data`` compressed and flushed to a line boundary, without the end of the stream: what
    a producer killed after a flush, or a copy cut short, leaves. It decompresses to whole rows."""
    import zlib

    import zstandard

    if kind == "gzip":
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    c = zstandard.ZstdCompressor(level=3).compressobj()
    return c.compress(data) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


@pytest.fixture
def one_row_copy(pg):
    """``awkward_copy (id, t)`` holding one row, to prove a failed load leaves it as it was."""
    pg.execute("DROP TABLE IF EXISTS awkward_copy; CREATE TABLE awkward_copy (LIKE awkward); "
               "INSERT INTO awkward_copy (id, t) VALUES (99, 'before')")
    return pg


def unchanged(pg) -> bool:
    return pg.execute("SELECT id, t FROM awkward_copy").fetchall() == [(99, "before")]


@pytest.mark.parametrize("kind,key", [("gzip", "cut.csv.gz"), ("zstd", "cut.csv.zst")])
def test_compressed_csv_cut_at_a_line_boundary_loads_nothing(one_row_copy, s3, bucket, kind, key):
    body = cut_stream(kind, b"id,t\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(1, 5001)))
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    with pytest.raises(AirflowException) as failure:
        load(bucket, key, columns=["id", "t"])
    message = str(failure.value)
    assert "\n" not in message
    assert f"s3://{bucket}/{key} is truncated: the {kind} stream ends at byte {len(body)} without" in message
    assert "nothing was loaded into awkward_copy" in message
    assert unchanged(one_row_copy)


def test_jsonl_gz_cut_at_a_line_boundary_loads_nothing(one_row_copy, s3, bucket):
    body = cut_stream("gzip", b"".join(b'{"id": %d}\n' % i for i in range(1, 1001)))
    s3.put_object(Bucket=bucket, Key="cut.jsonl.gz", Body=body)
    with pytest.raises(AirflowException, match=rf"s3://{bucket}/cut.jsonl.gz is truncated: the gzip stream ends at "
                                                rf"byte {len(body)} without its trailer.*nothing was loaded"):
        load(bucket, "cut.jsonl.gz", file_format="jsonl")
    assert unchanged(one_row_copy)


def test_parquet_cut_short_loads_nothing(one_row_copy, s3, bucket):
    export(bucket, "whole.parquet", file_format="parquet")
    whole = s3.get_object(Bucket=bucket, Key="whole.parquet")["Body"].read()
    s3.put_object(Bucket=bucket, Key="cut.parquet", Body=whole[: len(whole) // 2])
    with pytest.raises(AirflowException) as failure:
        load(bucket, "cut.parquet", file_format="parquet")
    message = str(failure.value)
    assert "\n" not in message
    assert f"s3://{bucket}/cut.parquet is not a whole parquet file ({len(whole) // 2} bytes" in message
    assert "nothing was loaded into awkward_copy" in message
    assert unchanged(one_row_copy)


@pytest.mark.parametrize("file_format,key,replace_at,if_match", [
    ("csv", "parts/1.csv", 1, True), ("csv", "parts/2.csv", 1, True), ("parquet", "parts/2.parquet", 2, True),
    ("csv", "parts/2.csv", 1, False), ("parquet", "parts/2.parquet", 2, False)])
def test_an_object_replaced_while_it_is_read_loads_nothing(one_row_copy, s3, bucket, monkeypatch,
                                                           file_format, key, replace_at, if_match):
    """An object replaced after the plan's listing, just before the ``replace_at``-th GET of it.

    A fault injected on purpose: the operator's own boto3 client gets a ``before-parameter-build``
    event hook that overwrites ``key`` on the real server (through the test's client) at that GET;
    the server then refuses the GET pinned to the listed ETag. For parquet the GETs are ranged
    (1 KiB apiece here, so there are several) and the second comes after the footer was read.
    Without ``if_match``, a second hook drops the ``If-Match`` header from each GET, as a server
    that ignores it would: the ETag of the response must then tell the new version.
    """

    from ferry.transfers import s3_source

    if file_format == "csv":
        s3.put_object(Bucket=bucket, Key="parts/1.csv", Body=b"id,t\n1,one\n")
        s3.put_object(Bucket=bucket, Key="parts/2.csv", Body=b"id,t\n2,two\n")
    else:
        export(bucket, "parts/1.parquet", file_format="parquet")
        export(bucket, "parts/2.parquet", file_format="parquet")
    listed = s3.head_object(Bucket=bucket, Key=key)["ETag"]
    gets = []

    def replace(params, **kwargs) -> None:
        gets.append(params["Key"])
        if gets.count(key) == replace_at and params["Key"] == key:
            # larger than the parquet files, so that every range they are read in still exists
            s3.put_object(Bucket=bucket, Key=key, Body=b"id,t\n" + b"3,a newer version\n" * 1000)

    def drop_if_match(params, **kwargs) -> None:  # returning a value would stand in for the response
        del params["headers"]["If-Match"]

    on_operator_s3_calls(monkeypatch, ("before-parameter-build.s3.GetObject", replace),
                         *([] if if_match else [("before-call.s3.GetObject", drop_if_match)]))
    monkeypatch.setattr(s3_source, "CHUNK", 1024)
    with pytest.raises(AirflowException) as failure:
        load(bucket, "parts/", file_format=file_format, **({"columns": ["id", "t"]} if file_format == "csv" else {}))
    message = str(failure.value)
    assert "\n" not in message
    assert f"s3://{bucket}/{key} changed while it was read (its ETag is no longer {listed})" in message, message
    assert "nothing was loaded into awkward_copy" in message
    assert gets.count(key) == replace_at  # the refused GET was the last of that object
    assert unchanged(one_row_copy)
