"""Reading a MongoDB collection as a stream of documents, and encoding them for files."""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from ferry.extras import optional_module

pa = optional_module("pyarrow", "parquet", "file_format='parquet'")  # jsonl needs no pyarrow

MongoQuery = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


def documents(collection: Any, query: MongoQuery, *, batch_size: int = 5_000) -> Iterator[dict[str, Any]]:
    """A filter (dict) runs ``find``; a list runs ``aggregate``. Either way a cursor, in batches."""
    if isinstance(query, Sequence) and not isinstance(query, (str, bytes)):
        return iter(collection.aggregate(list(query), allowDiskUse=True, batchSize=batch_size))
    return iter(collection.find(dict(query or {}), batch_size=batch_size))


def jsonl_lines(docs: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    """MongoDB Extended JSON (relaxed), one document per line: round-trips ObjectIds and dates."""
    from bson import json_util

    options = json_util.RELAXED_JSON_OPTIONS
    for doc in docs:
        yield json_util.dumps(doc, json_options=options).encode() + b"\n"


def _plain(value: Any) -> Any:
    """BSON values as Arrow understands them: ObjectId → str, Decimal128 → Decimal, and dates as
    UTC instants (BSON stores UTC; pymongo hands them out without a zone unless asked)."""
    from bson import Decimal128, ObjectId

    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    if isinstance(value, (str, int, float, bool, bytes, datetime.datetime, decimal.Decimal)) or value is None:
        return value
    return str(value)


def arrow_batches(
    docs: Iterable[Mapping[str, Any]], *, schema: pa.Schema | None = None, batch_rows: int = 10_000
) -> Iterator[pa.RecordBatch]:
    """Documents as Arrow batches with one schema throughout: given, or inferred from the first batch
    (every field any of its documents has; a document without one gets a null there).

    A later document with a field the schema lacks is an error, not silently dropped data.
    """
    docs = iter(docs)
    empty = True
    while batch := [_plain(doc) for doc in islice(docs, batch_rows)]:
        if schema is None:
            schema = pa.schema(pa.array(batch).type)  # a struct of the union of the fields
        known = set(schema.names)
        for doc in batch:
            if extra := set(doc) - known:
                raise ValueError(
                    f"document {doc.get('_id')!r} has fields {sorted(extra)} that the parquet schema "
                    "lacks (it was inferred from the first documents); pass `schema=` to the operator"
                )
        empty = False
        yield pa.RecordBatch.from_pylist(batch, schema=schema)
    if empty:  # still write a valid parquet file, with the schema if one was given
        yield pa.RecordBatch.from_pylist([], schema=schema or pa.schema([]))
