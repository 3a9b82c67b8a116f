"""MongoToS3Operator.

No MongoDB server can be installed on this machine (not in Debian, no binary on PyPI), so
these tests use **mongomock**, a pymongo-compatible in-memory stand-in, in place of the
client that ``MongoHook.get_conn()`` returns. S3 is the real test-stack endpoint. The
operator itself calls only pymongo's public API (``find``, ``aggregate``) and runs unchanged
against a real server; these tests do not prove wire-level compatibility with one.
"""

from __future__ import annotations

import gzip
import io
import json
from datetime import datetime
from decimal import Decimal

import mongomock
import pyarrow.parquet as pq
import pytest
from bson import Decimal128, ObjectId

from ferry.transfers import MongoToS3Operator
from tests.transfers.conftest import get_body, open_uploads

pytestmark = pytest.mark.integration  # S3 is real; MongoDB is the mongomock stand-in


@pytest.fixture
def mongo(monkeypatch):
    from airflow.providers.mongo.hooks.mongo import MongoHook

    client = mongomock.MongoClient()
    monkeypatch.setenv("AIRFLOW_CONN_MONGO_DEFAULT", "mongo://127.0.0.1:27017/shop")
    monkeypatch.setattr(MongoHook, "get_conn", lambda self: client)
    orders = client["shop"]["orders"]
    orders.insert_many(
        [
            {
                "_id": ObjectId("5f1d7f1e9d1b2c3a4b5c6d7e"),
                "customer": "ada",
                "total": Decimal128("12.50"),
                "placed": datetime(2019, 12, 7, 10, 0),
                "items": ["pen", "ink"],
            },
            {
                "_id": ObjectId("5f1d7f1e9d1b2c3a4b5c6d7f"),
                "customer": "bob",
                "total": Decimal128("3.10"),
                "placed": datetime(2019, 12, 8, 11, 30),
                "items": [],
            },
            *(
                {"customer": f"c{i}", "total": Decimal128(str(i)), "placed": datetime(2020, 1, 1), "items": ["x"]}
                for i in range(10_000)
            ),
        ]
    )
    return client


def export(bucket: str, key: str, **kwargs):
    kwargs.setdefault("mongo_query", {"customer": {"$in": ["ada", "bob"]}})
    return MongoToS3Operator(
        task_id="m", mongo_collection="orders", s3_bucket=bucket, s3_key=key, batch_size=1000, **kwargs
    ).execute({})


def test_filter_to_jsonl_round_trips_bson_types(mongo, s3, bucket):
    manifest = export(bucket, "orders.jsonl")
    lines = get_body(s3, bucket, "orders.jsonl").decode().splitlines()
    first = json.loads(lines[0])
    assert manifest["rows"] == 2 == len(lines)
    assert first["_id"] == {"$oid": "5f1d7f1e9d1b2c3a4b5c6d7e"}
    assert first["total"] == {"$numberDecimal": "12.50"}
    assert first["placed"] == {"$date": "2019-12-07T10:00:00Z"}


def test_aggregation_pipeline_and_streaming_transform(mongo, s3, bucket):
    def only_big(docs):
        for doc in docs:
            if doc["n"] >= 2:
                yield {"customer": doc["_id"], "n": doc["n"]}

    pipeline = [{"$unwind": "$items"}, {"$group": {"_id": "$customer", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]
    export(bucket, "agg.jsonl.gz", mongo_query=pipeline, transform=only_big, compression="gzip")
    rows = [json.loads(x) for x in gzip.decompress(get_body(s3, bucket, "agg.jsonl.gz")).splitlines()]
    assert rows == [{"customer": "ada", "n": 2}]


def test_parquet_in_batches(mongo, s3, bucket):
    manifest = export(bucket, "all.parquet", mongo_query={}, file_format="parquet")
    table = pq.read_table(io.BytesIO(get_body(s3, bucket, "all.parquet")))
    assert manifest["rows"] == table.num_rows == 10_002
    first = table.slice(0, 1).to_pylist()[0]
    assert first["_id"] == "5f1d7f1e9d1b2c3a4b5c6d7e"
    assert first["total"] == Decimal("12.50") and first["items"] == ["pen", "ink"]


def test_parquet_field_missing_from_schema_fails_cleanly(mongo, s3, bucket):
    mongo["shop"]["orders"].insert_one(
        {"customer": "late", "total": Decimal128("1"), "placed": datetime(2021, 1, 1), "items": [], "surprise": True}
    )
    with pytest.raises(ValueError, match=r"fields \['surprise'\].*pass `schema=`"):
        export(bucket, "bad.parquet", mongo_query={}, file_format="parquet")
    assert open_uploads(s3, bucket) == []
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
