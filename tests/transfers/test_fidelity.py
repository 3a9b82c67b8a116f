"""The fidelity matrix, measured: every cell of ``docs/fidelity-matrix.yaml`` against the real servers.

Each source type's sample values (SQL literals for PostgreSQL, BSON values for MongoDB, plus a
NULL / missing value) go through the real operator in each format, and what arrives is read
back the way a user would read it:

- PostgresToS3 csv: PostgreSQL's own ``COPY … FROM`` (the format's reader; Python's csv module
  cannot tell NULL from an empty string); jsonl: ``json.loads`` with exact decimals; parquet:
  pyarrow. Compared with the value psycopg reads from the source table.
- S3ToPostgres: the file PostgresToS3 wrote in that format, loaded into a table like the
  source; compared with the source in PostgreSQL's text form, value by value.
- MongoToS3 jsonl: ``bson.json_util`` (MongoDB's reader for Extended JSON); parquet: pyarrow.
  Compared with the value pymongo reads from the collection.

A cell is ``exact`` when every sample arrives as an equal value of the same kind, ``refused``
when the operator fails, ``converted`` otherwise. The test fails when a measured cell differs
from the matrix, when the matrix names a cell that nothing here measures, or the reverse.
"""

from __future__ import annotations

import datetime
import decimal
import io
import json
import uuid

import pyarrow.parquet as pq
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp, json_util

from ferry.transfers import MongoToS3Operator, PostgresToS3Operator, S3ToPostgresOperator
from tests.transfers import fidelity
from tests.transfers.conftest import get_body

pytestmark = pytest.mark.integration

MATRIX = fidelity.load()
PG = MATRIX["sources"]["postgresql"]
MONGO = MATRIX["sources"]["mongodb"]

#: The BSON samples (Python values as pymongo writes them); the matrix lists the same names.
MONGO_SAMPLES: dict[str, list] = {
    "double": [1.5, -0.0, float("inf"), float("nan")],
    "string": ["", 'quote " newline \n backslash \\ é 漢字 😀'],
    "int32": [-(2**31), 2**31 - 1],
    "int64": [Int64(-(2**63)), Int64(2**63 - 1)],
    "decimal128": [Decimal128("12.50"), Decimal128("-123456789012345678901234.0123456789")],
    "bool": [True, False],
    "date": [datetime.datetime(2019, 12, 7, 10, 0, 0, 123000), datetime.datetime(1969, 7, 20, 20, 17)],
    "objectid": [ObjectId("5f1d7f1e9d1b2c3a4b5c6d7e")],
    "document": [{"city": "Amsterdam", "geo": {"lat": 52.37, "lon": 4.89}}],
    "array": [[1, 2, 3], []],
    "array of documents": [[{"a": 1}, {"a": 2}]],
    "mixed array": [[1, "one"]],
    "binary": [Binary(b"\x00\xff\x10")],
    "uuid binary": [Binary(uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").bytes, 4)],
    "null": [None],
    "regex": [Regex("^a.*z$", "i")],
    "timestamp": [Timestamp(1575712800, 7)],
    "javascript": [Code("function () { return 1; }")],
    "minkey/maxkey": [MinKey(), MaxKey()],
}


#: A json/jsonb value that is JSON's ``null``, told apart from SQL's NULL (Python's None).
JSON_NULL = type("JsonNull", (), {"__repr__": lambda self: "JSON null"})()


def table(index: int) -> str:
    return f"fidelity_{index:02d}"


@pytest.fixture(scope="module")
def pg_samples(stack):
    """One table per PostgreSQL sample type: ``(id, v)``, the sample values and a NULL."""
    with stack.service("postgres").connect("inside_airbnb", autocommit=True) as conn:
        for index, sample in enumerate(PG["samples"].values()):
            conn.execute(f"DROP TABLE IF EXISTS {table(index)}")
            conn.execute(f"CREATE TABLE {table(index)} (id int, v {sample['type']})")
            literals = [*sample["values"], "NULL"]
            rows = ", ".join(f"({i}, ({literal})::{sample['type']})" for i, literal in enumerate(literals))
            conn.execute(f"INSERT INTO {table(index)} VALUES {rows}")
    return list(PG["samples"])


@pytest.fixture
def pg_reference(pg):
    """psycopg as the reference reader: json numbers as exact decimals, like the jsonl reader."""
    from psycopg.types.json import set_json_loads

    def loads(text: str | bytes) -> object:
        value = json.loads(text, parse_float=decimal.Decimal)
        return JSON_NULL if value is None else value  # JSON's null is not SQL's NULL

    set_json_loads(loads, context=pg)
    return pg


def _pg_values(conn, name: str) -> list:
    return [row[0] for row in conn.execute(f"SELECT v FROM {name} ORDER BY id")]


def _pg_texts(conn, name: str) -> list:
    return [row[0] for row in conn.execute(f"SELECT v::text FROM {name} ORDER BY id")]


def _export(bucket: str, index: int, file_format: str) -> str | None:
    key = f"{table(index)}.{file_format}"
    try:
        PostgresToS3Operator(task_id="fidelity", postgres_conn_id="inside_airbnb", file_format=file_format,
                             query=f"SELECT id, v FROM {table(index)} ORDER BY id", s3_bucket=bucket,
                             s3_key=key).execute({})
    except Exception:  # any failure is a refusal; that it is one clear line is tested elsewhere
        return None
    return key


def _read_back(conn, s3, bucket: str, key: str, index: int, file_format: str) -> list:
    """The ``v`` of each row of an exported file, read as a user of that format would."""
    body = get_body(s3, bucket, key)
    if file_format == "jsonl":
        return [json.loads(line, parse_float=decimal.Decimal)["v"] for line in body.decode().splitlines()]
    if file_format == "parquet":
        return [row["v"] for row in pq.read_table(io.BytesIO(body)).to_pylist()]
    check = f"{table(index)}_csv"
    conn.execute(f"DROP TABLE IF EXISTS {check}; CREATE TABLE {check} (LIKE {table(index)})")
    with conn.cursor() as cur, cur.copy(f"COPY {check} FROM STDIN WITH (FORMAT csv, HEADER)") as copy:
        copy.write(body)
    return _pg_values(conn, check)


def _level(arrived: list | None, expected: list) -> tuple[str, str]:
    """The cell's level, and the first value that is not exact (for the failure message)."""
    if arrived is None:
        return "refused", ""
    if len(arrived) != len(expected):
        return "converted", f"{len(expected)} values became {len(arrived)}"
    for got, wanted in zip(arrived, expected, strict=True):
        if not fidelity.same(got, wanted):
            return "converted", f"{wanted!r} arrived as {got!r}"
    return "exact", ""


@pytest.mark.parametrize("file_format", ["csv", "jsonl", "parquet"])
def test_postgresql_cells(pg_samples, pg_reference, s3, bucket, file_format):
    measured = {}
    for index, name in enumerate(pg_samples):
        source = table(index)
        key = _export(bucket, index, file_format)
        arrived = None if key is None else _read_back(pg_reference, s3, bucket, key, index, file_format)
        measured[("PostgresToS3", file_format, name)] = _level(arrived, _pg_values(pg_reference, source))
        loaded = None
        if key is not None:
            copy = f"{source}_copy"
            pg_reference.execute(f"DROP TABLE IF EXISTS {copy}; CREATE TABLE {copy} (LIKE {source})")
            try:
                S3ToPostgresOperator(task_id="fidelity", postgres_conn_id="inside_airbnb", s3_bucket=bucket,
                                     s3_key=key, table=copy, file_format=file_format).execute({})
                loaded = _pg_texts(pg_reference, copy)
            except Exception:
                loaded = None
        measured[("S3ToPostgres", file_format, name)] = _level(loaded, _pg_texts(pg_reference, source))
    _compare(measured, operators=("PostgresToS3", "S3ToPostgres"), file_format=file_format)


@pytest.fixture(scope="module")
def mongo_samples(stack):
    """A database holding one collection per BSON sample type: ``{_id, v}`` and a document without ``v``."""
    name = f"fidelity_{uuid.uuid4().hex[:8]}"
    with stack.service("mongo").client() as client:
        for index, values in enumerate(MONGO_SAMPLES.values()):
            client[name][table(index)].insert_many([{"_id": i, "v": v} for i, v in enumerate(values)]
                                                   + [{"_id": len(values)}])
        reference = {sample: [doc.get("v") for doc in client[name][table(index)].find().sort("_id", 1)]
                     for index, sample in enumerate(MONGO_SAMPLES)}
        yield name, reference
        client.drop_database(name)


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_mongodb_cells(mongo_samples, s3, bucket, file_format):
    database, reference = mongo_samples
    measured = {}
    for index, name in enumerate(MONGO_SAMPLES):
        key = f"{table(index)}.{file_format}"
        arrived: list | None
        try:
            MongoToS3Operator(task_id="fidelity", mongo_db=database, mongo_collection=table(index),
                              mongo_query=[{"$sort": {"_id": 1}}], s3_bucket=bucket, s3_key=key,
                              file_format=file_format).execute({})
        except Exception:
            arrived = None
        else:
            body = get_body(s3, bucket, key)
            if file_format == "jsonl":
                arrived = [json_util.loads(line).get("v") for line in body.decode().splitlines()]
            else:
                arrived = [row.get("v") for row in pq.read_table(io.BytesIO(body)).to_pylist()]
        measured[("MongoToS3", file_format, name)] = _level(arrived, reference[name])
    _compare(measured, operators=("MongoToS3",), file_format=file_format)


def _compare(measured: dict, *, operators: tuple[str, ...], file_format: str) -> None:
    expected = {cell: value["level"] for cell, value in fidelity.cells(MATRIX).items()
                if cell[0] in operators and cell[1] == file_format}
    wrong = {cell: f"matrix says {expected.get(cell)}, measured {level} {example}".rstrip()
             for cell, (level, example) in measured.items() if expected.get(cell) != level}
    untested = sorted(set(expected) - set(measured))
    assert not wrong, "cells that differ from docs/fidelity-matrix.yaml:\n" + "\n".join(
        f"  {cell}: {why}" for cell, why in sorted(wrong.items()))
    assert not untested, f"cells in the matrix that no test measures: {untested}"


# -- the matrix itself, without servers -------------------------------------------------------------


def test_matrix_names_every_sample_and_only_known_levels():
    assert list(MONGO["samples"]) == list(MONGO_SAMPLES)
    for source in MATRIX["sources"].values():
        for operator, formats in source["cells"].items():
            for file_format, by_type in formats.items():
                assert list(by_type) == list(source["samples"]), (operator, file_format)
    for cell, value in fidelity.cells(MATRIX).items():
        assert value["level"] in fidelity.LEVELS, cell
        if value["level"] != "exact":
            assert value.get("how"), f"{cell} is {value['level']}: say how"


def test_readme_shows_the_matrix():
    assert fidelity.readme_section() == fidelity.render(MATRIX), (
        "README.md's fidelity matrix is not docs/fidelity-matrix.yaml's; paste this between the markers:\n\n"
        + fidelity.render(MATRIX))


def test_same_is_strict_about_kinds():
    assert fidelity.same(1, 1) and not fidelity.same(1, True) and not fidelity.same("1", 1)
    assert fidelity.same(float("nan"), float("nan")) and fidelity.same(decimal.Decimal("1.5"), 1.5)
    assert fidelity.same(decimal.Decimal("0.1"), 0.1) and not fidelity.same(decimal.Decimal("0.10000001"), 0.1)
    assert not fidelity.same(datetime.datetime(2019, 1, 1), datetime.datetime(2019, 1, 1, tzinfo=datetime.timezone.utc))
    assert not fidelity.same([1, 2], [1, 2, 3]) and not fidelity.same({"a": 1}, {"a": "1"})
    assert not fidelity.same(None, "")
