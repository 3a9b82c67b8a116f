"""MongoToS3Operator against the stack's MongoDB server (SecantusDB over the wire protocol) and S3.

Everything is real: ``MongoHook`` reads ``mongo_default`` from the stack's environment, pymongo
talks TCP to the server with SCRAM credentials, cursors come back in batches.
"""

from __future__ import annotations

import datetime
import gzip
import io
import json
import uuid
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bson import Decimal128, ObjectId

from ferry.transfers import MongoToS3Operator
from tests.transfers.conftest import get_body, keys, open_uploads
from tests.transfers.test_crashes import assert_one_line_failure, kill_tree, run_in_thread, wait_for

pytestmark = pytest.mark.integration

UTC = datetime.timezone.utc
ADA = {
    "_id": ObjectId("5f1d7f1e9d1b2c3a4b5c6d7e"),
    "customer": "ada",
    "total": Decimal128("12.50"),
    "placed": datetime.datetime(2019, 12, 7, 10, 0),  # no zone: BSON takes it as UTC
    "paid": datetime.datetime(2019, 12, 7, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    "address": {"city": "Amsterdam", "geo": {"lat": 52.37, "lon": 4.89}},
    "items": ["pen", "ink"],
}
BOB = {  # no "paid", no "address": missing fields
    "_id": ObjectId("5f1d7f1e9d1b2c3a4b5c6d7f"),
    "customer": "bob",
    "total": Decimal128("3.10"),
    "placed": datetime.datetime(2019, 12, 8, 11, 30),
    "items": [],
}
BULK = 10_000


@pytest.fixture(scope="module")
def shop(stack):
    """A database of its own holding ``orders``: ada, bob and 10,000 more."""
    name = f"shop_{uuid.uuid4().hex[:8]}"
    with stack.service("mongo").client() as client:
        orders = client[name]["orders"]
        orders.insert_many([ADA, BOB])
        orders.insert_many([{"customer": f"c{i}", "total": Decimal128(str(i)), "placed": datetime.datetime(2020, 1, 1),
                             "items": ["x"] * (i % 3)} for i in range(BULK)])
        yield name
        client.drop_database(name)


def export(shop: str, bucket: str, key: str, **kwargs):
    kwargs.setdefault("mongo_query", {"customer": {"$in": ["ada", "bob"]}})
    kwargs.setdefault("batch_size", 1000)
    return MongoToS3Operator(task_id="m", mongo_db=shop, mongo_collection="orders", s3_bucket=bucket, s3_key=key,
                             **kwargs).execute({})


def test_connection_needs_the_stack_credentials(stack):
    import pymongo
    from pymongo.errors import OperationFailure

    mongo = stack.service("mongo")
    anonymous = pymongo.MongoClient(f"mongodb://{mongo.endpoint}", serverSelectionTimeoutMS=3000)
    with anonymous, pytest.raises(OperationFailure, match="requires authentication"):
        anonymous.inside_airbnb.reviews.find_one()
    wrong = f"mongodb://{stack.settings.credentials.mongo_user}:wrong@{mongo.endpoint}/?authSource=admin"
    client = pymongo.MongoClient(wrong, serverSelectionTimeoutMS=3000)
    with client, pytest.raises(OperationFailure, match="uthentication failed"):
        client.inside_airbnb.reviews.find_one()


def test_filter_to_jsonl_round_trips_bson_types(shop, s3, bucket):
    from bson import json_util

    manifest = export(shop, bucket, "orders.jsonl")
    lines = get_body(s3, bucket, "orders.jsonl").decode().splitlines()
    assert manifest["rows"] == 2 == len(lines)
    first = json.loads(lines[0])
    assert first["_id"] == {"$oid": "5f1d7f1e9d1b2c3a4b5c6d7e"}
    assert first["total"] == {"$numberDecimal": "12.50"}
    assert first["placed"] == {"$date": "2019-12-07T10:00:00Z"}
    assert first["paid"] == {"$date": "2019-12-07T10:00:00Z"}  # 12:00+02:00, stored as the UTC instant
    assert first["address"] == {"city": "Amsterdam", "geo": {"lat": 52.37, "lon": 4.89}}
    assert first["items"] == ["pen", "ink"]
    # Extended JSON parses back to the very values that were stored.
    back = [json_util.loads(line) for line in lines]
    assert back[0]["_id"] == ADA["_id"] and back[0]["total"] == ADA["total"] and back[1] == {**BOB}
    assert "paid" not in back[1] and "address" not in back[1]


def test_aggregation_runs_on_the_server_and_streams_through_a_transform(shop, s3, bucket):
    def only_big(docs):
        for doc in docs:
            if doc["n"] >= 2:
                yield {"customer": doc["_id"], "n": doc["n"]}

    pipeline = [{"$match": {"customer": {"$in": ["ada", "bob", "c2", "c5"]}}}, {"$unwind": "$items"},
                {"$group": {"_id": "$customer", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]
    export(shop, bucket, "agg.jsonl.gz", mongo_query=pipeline, transform=only_big, compression="gzip")
    rows = [json.loads(x) for x in gzip.decompress(get_body(s3, bucket, "agg.jsonl.gz")).splitlines()]
    assert rows == [{"customer": "ada", "n": 2}, {"customer": "c2", "n": 2}, {"customer": "c5", "n": 2}]


@pytest.mark.parametrize("batch_size", [1, 1000, 10_002, 10_003, 50_000])
def test_batch_boundaries_lose_and_repeat_nothing(shop, s3, bucket, batch_size):
    """Whole batches, a last partial batch, one batch for everything, batches of one document."""
    query = {} if batch_size > 1 else {"customer": {"$in": ["ada", "bob", "c0", "c9999"]}}
    manifest = export(shop, bucket, "all.jsonl", mongo_query=query, batch_size=batch_size)
    lines = get_body(s3, bucket, "all.jsonl").decode().splitlines()
    customers = [json.loads(line)["customer"] for line in lines]
    expected = BULK + 2 if batch_size > 1 else 4
    assert manifest["rows"] == len(lines) == len(set(customers)) == expected


def test_parquet_types_nested_documents_and_missing_fields(shop, s3, bucket):
    manifest = export(shop, bucket, "all.parquet", mongo_query={}, file_format="parquet", batch_size=3000)
    table = pq.read_table(io.BytesIO(get_body(s3, bucket, "all.parquet")))
    assert manifest["rows"] == table.num_rows == BULK + 2
    schema = table.schema
    assert schema.field("_id").type == pa.string()
    assert pa.types.is_decimal(schema.field("total").type)
    assert schema.field("placed").type == pa.timestamp("us", tz="UTC")
    geo = pa.struct([("lat", pa.float64()), ("lon", pa.float64())])
    assert schema.field("address").type == pa.struct([("city", pa.string()), ("geo", geo)])
    ada, bob = table.slice(0, 2).to_pylist()
    assert ada["_id"] == "5f1d7f1e9d1b2c3a4b5c6d7e"
    assert ada["total"] == Decimal("12.50") and ada["items"] == ["pen", "ink"]
    assert ada["placed"] == datetime.datetime(2019, 12, 7, 10, 0, tzinfo=UTC)
    assert ada["paid"] == datetime.datetime(2019, 12, 7, 10, 0, tzinfo=UTC)
    assert ada["address"]["geo"] == {"lat": 52.37, "lon": 4.89}
    assert bob["paid"] is None and bob["address"] is None and bob["items"] == []


FIRST_BATCH = 10_000  # arrow_batches' batch: the inferred schema's documents


@pytest.fixture
def late_documents(stack):
    """``insert(first, *later)``: a database whose ``orders`` holds 10,000 documents shaped like
    ``first`` (the inferred schema's batch), then ``later`` ones; yields the database's name."""
    name = f"late_{uuid.uuid4().hex[:8]}"
    with stack.service("mongo").client() as client:
        def insert(first: dict, *later: dict) -> str:
            client[name]["orders"].insert_many([{"_id": f"first-{i}", **first} for i in range(FIRST_BATCH)])
            client[name]["orders"].insert_many(list(later))
            return name

        yield insert
        client.drop_database(name)


HOSTILE = {  # first batch's shape, a later document, the field the failure must name and why
    "new nested field": ({"host": {"name": "x"}}, {"host": {"name": "y", "since": 2019}},
                         "`host.since` is not in the parquet schema"),
    "new top-level field": ({"n": 1}, {"n": -1, "surprise": True}, "`surprise` is not in the parquet schema"),
    "int then string": ({"n": 1}, {"n": "one"}, "`n` is string but int64 in the parquet schema"),
    "int then 2.5 (would truncate to 2)": ({"n": 1}, {"n": 2.5},
                                           "`n` has a value that the parquet schema's int64 cannot hold exactly"),
    "null everywhere, then a value": ({"paid": None}, {"paid": datetime.datetime(2020, 1, 1)},
                                      "`paid` has a value (timestamp[us, tz=UTC]) but type null"),
    "empty lists, then strings": ({"tags": []}, {"tags": ["a"]}, "`tags[]` has a value (string) but type null"),
    "list of ints, then strings": ({"tags": [1]}, {"tags": ["a"]}, "`tags[]` is string but int64"),
    "struct in a list, new key": ({"reviews": [{"a": 1}, {"a": 2}]}, {"reviews": [{"a": 3, "b": 4}]},
                                  "`reviews[].b` is not in the parquet schema"),
    "document, then a scalar": ({"host": {"name": "x"}}, {"host": "x"}, "`host` is string but a document"),
}


@pytest.mark.parametrize("first, later, fails", HOSTILE.values(), ids=HOSTILE.keys())
def test_parquet_document_the_inferred_schema_cannot_hold_fails_naming_the_field(late_documents, s3, bucket,
                                                                                first, later, fails):
    """After the first 10,000 documents a field the schema lacks or cannot hold exactly, nested or
    not: one line naming the document and field, and no object, no open upload (never a silent
    drop, truncation or null)."""
    shop = late_documents(first, {"_id": "late", **later})
    with pytest.raises(ValueError) as failure:
        export(shop, bucket, "bad.parquet", mongo_query={}, file_format="parquet")
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith(f"document 10,001 (_id 'late'): field {fails}"), message
    assert "inferred from the first 10,000 documents: pass parquet_schema=" in message
    assert message.endswith(f"nothing was written to s3://{bucket}/bad.parquet"), message
    assert open_uploads(s3, bucket) == []
    assert keys(s3, bucket) == []


def test_parquet_documents_disagreeing_within_the_first_batch_fail_naming_the_field(late_documents, s3, bucket):
    shop = late_documents({"host": {"name": "x"}}, {"_id": "late", "host": {"name": 7}})
    both = {"_id": {"$in": ["first-0", "late"]}}  # one batch: the schema is being inferred from them
    with pytest.raises(ValueError, match=r"^document 2 \(_id 'late'\): field `host.name` holds both int and "
                                         r"str; .*nothing was written"):
        export(shop, bucket, "bad.parquet", mongo_query=both, file_format="parquet")
    assert keys(s3, bucket) == [] and open_uploads(s3, bucket) == []


SCHEMA = pa.schema([
    ("_id", pa.string()),
    ("host", pa.struct([("name", pa.string()), ("since", pa.int32())])),
    ("paid", pa.timestamp("us", tz="UTC")),
    ("tags", pa.list_(pa.string())),
    ("reviews", pa.list_(pa.struct([("a", pa.int64()), ("b", pa.int64())]))),
    ("big", pa.int64()),
    ("score", pa.float64()),
    ("total", pa.decimal128(10, 2)),
])
EVERY_SHAPE = [  # after the first batch: each of the hostile cases above that one schema can hold
    {"_id": "nested", "host": {"name": "y", "since": 2019}},
    {"_id": "no longer null", "paid": datetime.datetime(2020, 1, 1, 12, 30, 0, 123000)},
    {"_id": "no longer empty", "tags": ["a", "b"]},
    {"_id": "struct in list", "reviews": [{"a": 3, "b": 4}, {"a": 5}]},
    {"_id": "beyond 2**53", "big": 2**53 + 1, "score": 0.1},
    {"_id": "int in a float column", "score": 3},
    {"_id": "more digits", "total": Decimal128("12345678.91")},
]


def test_parquet_with_a_schema_covering_every_field_round_trips_every_value(late_documents, s3, bucket):
    first = {"host": {"name": "x"}, "paid": None, "tags": [], "reviews": [{"a": 1}], "big": 1, "score": 1.5,
             "total": Decimal128("1.50")}
    shop = late_documents(first, *EVERY_SHAPE)
    manifest = export(shop, bucket, "every.parquet", mongo_query={}, file_format="parquet", parquet_schema=SCHEMA)
    table = pq.read_table(io.BytesIO(get_body(s3, bucket, "every.parquet")))
    assert manifest["rows"] == table.num_rows == FIRST_BATCH + len(EVERY_SHAPE)
    assert table.schema == SCHEMA
    stored = [{"_id": f"first-{i}", **first} for i in range(FIRST_BATCH)] + EVERY_SHAPE
    expected = [without_nulls(as_read_back(doc)) for doc in stored]
    assert [without_nulls(row) for row in table.to_pylist()] == expected
    late = table.slice(FIRST_BATCH).to_pylist()
    assert late[4]["big"] == 2**53 + 1 and late[5]["score"] == 3.0 and late[6]["total"] == Decimal("12345678.91")

    wrong = SCHEMA.set(3, pa.field("tags", pa.list_(pa.int64())))
    with pytest.raises(ValueError, match=r"^document 10,003 \(_id 'no longer empty'\): field `tags\[\]` is string "
                                         r"but int64 in the parquet schema; make parquet_schema= cover it; nothing"):
        export(shop, bucket, "wrong.parquet", mongo_query={}, file_format="parquet", parquet_schema=wrong)
    assert keys(s3, bucket) == ["every.parquet"] and open_uploads(s3, bucket) == []


def as_read_back(doc: dict) -> dict:
    """A stored document as pymongo and parquet give it back: dates in UTC, Decimal128 as Decimal."""
    out = dict(doc)
    if out.get("paid"):
        out["paid"] = out["paid"].replace(tzinfo=UTC)
    if out.get("total"):
        out["total"] = out["total"].to_decimal()
    return out


def without_nulls(value):
    """A read-back row without the nulls parquet puts where a document had no field: what remains
    must equal the document exactly."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def test_server_killed_mid_export_leaves_no_object(stack, s3, bucket):
    """kill -9 of the MongoDB server while the cursor is half read: one line, no object, and the
    documents are all there after the restart (``ferry stack up``)."""
    name = f"big_{uuid.uuid4().hex[:8]}"
    mongo = stack.service("mongo")
    s3.put_object(Bucket=bucket, Key="crash/orders.jsonl", Body=b"the previous run's export\n")
    with mongo.client() as client:
        for start in range(0, 100_000, 20_000):
            client[name]["orders"].insert_many([{"n": n, "pad": "x" * 200} for n in range(start, start + 20_000)])

    seen: list[int] = []

    def counting(docs):
        for doc in docs:
            seen.append(1)
            yield doc

    thread, outcome = run_in_thread(lambda: export(name, bucket, "crash/orders.jsonl", mongo_query={},
                                                   transform=counting, batch_size=500, part_size=5 * 1024 * 1024))
    wait_for(lambda: len(seen) >= 20_000, thread, outcome)
    kill_tree(int(mongo.pid_file.read_text()))
    thread.join(timeout=300)
    assert_one_line_failure(outcome, "lost the MongoDB connection after", "nothing was written to s3://")
    assert get_body(s3, bucket, "crash/orders.jsonl") == b"the previous run's export\n"
    assert open_uploads(s3, bucket) == []

    stack.up(["mongo"], echo=lambda line: None)
    with mongo.client() as client:
        assert client[name]["orders"].count_documents({}) == 100_000
    assert export(name, bucket, "crash/orders.jsonl", mongo_query={})["rows"] == 100_000
    with mongo.client() as client:
        client.drop_database(name)
