"""Reading a MongoDB collection as a stream of documents, and encoding them for files."""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from ferry.extras import optional_module

pa = optional_module("pyarrow", "parquet", "file_format='parquet'")  # jsonl needs no pyarrow
pc = optional_module("pyarrow.compute", "parquet", "file_format='parquet'")

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
    from bson import Code, Decimal128, ObjectId

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
    if isinstance(value, Code):  # a str subclass: JavaScript, maybe with a scope
        raise _NoArrowType("Code")
    if isinstance(value, (str, int, float, bool, bytes, datetime.datetime, decimal.Decimal)) or value is None:
        return value
    # Regex, Timestamp, Code, MinKey, MaxKey, DBRef…: no Arrow type holds them, and their Python
    # text form is no format anyone reads back. Refused rather than written as a repr.
    raise _NoArrowType(type(value).__name__)


class _NoArrowType(Exception):
    """Internal: a BSON value with no parquet counterpart (its type name)."""


def _plain_batch(docs: Iterable[Mapping[str, Any]], position: int) -> list[dict[str, Any]]:
    """The next documents as plain values; a value with no parquet type fails naming the document."""
    batch = []
    for doc in docs:
        try:
            batch.append(_plain(doc))
        except _NoArrowType as exc:
            raise SchemaMismatch(
                f"document {position + len(batch) + 1:,} (_id {doc.get('_id')!r}): a BSON {exc} value has no "
                "parquet type; export jsonl (Extended JSON keeps it), or convert it in `transform`") from None
    return batch


class SchemaMismatch(ValueError):
    """A document has a field the parquet schema cannot hold exactly: one line naming both."""


class _Misfit(Exception):
    """Internal: the dotted path of the field that does not fit, and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path, self.reason = path, reason


def arrow_batches(
    docs: Iterable[Mapping[str, Any]], *, schema: pa.Schema | None = None, batch_rows: int = 10_000
) -> Iterator[pa.RecordBatch]:
    """Documents as Arrow batches with one schema throughout: given, or inferred from the first batch
    (every field any of its documents has, nested ones too; a document without one gets a null there;
    decimals are widened to 38 digits so that later, larger amounts still fit).

    A parquet file has one schema, so every later batch must fit it exactly. A document with a field
    the schema lacks (at any depth: ``host.since``, ``reviews[].b``), a field of another kind (a string
    where the schema has an int, a document where it has a scalar, any value where the first batch had
    only nulls or empty lists), or a value the schema's type cannot hold exactly (2.5 in an int, an int
    beyond 2**53 in a float, a third decimal place in a 2-place decimal) raises ``SchemaMismatch``
    naming the field and the document: nothing is dropped, truncated or rounded. Lossless conversions
    are made: ints to floats and between int widths when exact, decimals rescaled when exact, fields
    in another order, missing fields as nulls.

    Each batch is inferred by Arrow (``pa.array``) and its type compared with the schema's; only a
    batch whose type differs is converted (by Arrow casts, field by field), and only a failing one is
    examined document by document, to name the culprit.
    """
    docs = iter(docs)
    inferred = schema is None
    position = 0
    while batch := _plain_batch(islice(docs, batch_rows), position):
        try:
            record = _record_batch(batch, schema)
        except (_Misfit, pa.ArrowException):
            raise _mismatch(batch, schema, position, inferred=inferred, batch_rows=batch_rows) from None
        schema = record.schema
        position += len(batch)
        yield record
    if position == 0:  # still write a valid parquet file, with the schema if one was given
        yield pa.RecordBatch.from_pylist([], schema=schema or pa.schema([]))


def _record_batch(batch: list[dict[str, Any]], schema: pa.Schema | None) -> pa.RecordBatch:
    """One batch in ``schema`` (or in the widened inferred schema); raises ``_Misfit`` if it does not fit."""
    try:
        array = pa.array(batch)  # a struct of the union of the batch's fields
    except (pa.ArrowException, OverflowError) as exc:  # documents disagree among themselves
        raise _Misfit(*_clash(batch, "", exc)) from None
    target = _widened(array.type) if schema is None else pa.struct(schema)
    array = _conform(array, target, "")
    columns = [array.field(i) for i in range(array.type.num_fields)]
    return pa.RecordBatch.from_arrays(columns, schema=schema if schema is not None else pa.schema(target))


def _widened(inferred: pa.DataType) -> pa.DataType:
    """The first batch's type with decimals at the full 38 digits (same scale): lossless, and later
    larger amounts still fit. Everything else as Arrow inferred it."""
    if pa.types.is_decimal128(inferred):
        return pa.decimal128(38, inferred.scale)
    if pa.types.is_struct(inferred):
        return pa.struct([f.with_type(_widened(f.type)) for f in _fields(inferred)])
    if pa.types.is_list(inferred):
        return pa.list_(inferred.value_field.with_type(_widened(inferred.value_type)))
    return inferred


def _fields(struct: pa.StructType) -> list[pa.Field]:
    return [struct.field(i) for i in range(struct.num_fields)]


def _conform(array: pa.Array, target: pa.DataType, path: str) -> pa.Array:
    """``array`` as ``target`` with every value unchanged, or ``_Misfit`` naming the field at ``path``.

    Works on types, not values: the usual case, equal types, costs one comparison."""
    source = array.type
    if source == target:
        return array
    if pa.types.is_null(source):
        return pa.nulls(len(array), target)
    if pa.types.is_struct(source) and pa.types.is_struct(target):
        return _conform_struct(array, target, path)
    if _is_list(source) and _is_list(target):
        return _conform_list(array, target, path)
    if pa.types.is_null(target):
        raise _Misfit(path, f"has a value ({_kind(source)}) but type null in the parquet schema "
                            "(inferred so where it is null or empty in every document)")
    if not _exact_cast(source, target):
        raise _Misfit(path, f"is {_kind(source)} but {_kind(target)} in the parquet schema")
    try:
        return array.cast(target, safe=True)  # Arrow's safe cast refuses to lose a digit
    except pa.ArrowException:
        raise _Misfit(path, f"has a value that the parquet schema's {target} cannot hold exactly") from None


def _conform_struct(array: pa.StructArray, target: pa.StructType, path: str) -> pa.StructArray:
    """Fields matched by name: one the target lacks is a misfit, one the batch lacks is all nulls."""
    for field in _fields(array.type):
        if target.get_field_index(field.name) < 0:
            raise _Misfit(_join(path, field.name), "is not in the parquet schema")
    children = []
    for field in _fields(target):
        index = array.type.get_field_index(field.name)
        child = array.field(index) if index >= 0 else pa.nulls(len(array), field.type)
        child = _conform(child, field.type, _join(path, field.name))
        if not field.nullable and child.null_count and pc.any(
            pc.and_(child.is_null(), array.is_valid())
        ).as_py():
            raise _Misfit(_join(path, field.name), "is missing or null but not nullable in the parquet schema")
        children.append(child)
    mask = array.is_null() if array.null_count else None
    return pa.StructArray.from_arrays(children, fields=_fields(target), mask=mask)


def _conform_list(array: pa.Array, target: pa.DataType, path: str) -> pa.Array:
    """The items conformed to the target's item type, the offsets and nulls kept."""
    values = _conform(array.values, target.value_type, f"{path}[]")
    large = pa.types.is_large_list(target)
    offsets = array.offsets.cast(pa.int64() if large else pa.int32())
    cls = pa.LargeListArray if large else pa.ListArray
    mask = array.is_null() if array.null_count else None
    return cls.from_arrays(offsets, values, type=target, mask=mask)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _exact_cast(source: pa.DataType, target: pa.DataType) -> bool:
    """Pairs whose safe cast keeps every value or fails: ints and floats among themselves (never to a
    narrower float, which rounds silently), decimals, timestamps with a zone, string/binary sizes."""
    t = pa.types
    if t.is_integer(source) or t.is_floating(source):
        if t.is_integer(target):
            return True
        return t.is_floating(target) and (t.is_integer(source) or target.bit_width >= source.bit_width)
    if t.is_decimal(source):
        return t.is_decimal(target)
    if t.is_timestamp(source):
        return t.is_timestamp(target) and (source.tz is None) == (target.tz is None)
    families = [(pa.string(), pa.large_string()), (pa.binary(), pa.large_binary())]
    return any(source in family and target in family for family in families)


def _kind(t: pa.DataType) -> str:
    if pa.types.is_struct(t):
        return "a document"
    if _is_list(t):
        return f"a list of {_kind(t.value_type)}"
    return str(t)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _clash(values: list[Any], path: str, exc: BaseException) -> tuple[str, str]:
    """The deepest field where ``values`` (Python, as in the documents) cannot share one Arrow type."""
    present = [v for v in values if v is not None]
    kinds = {"a document" if isinstance(v, Mapping) else "a list" if isinstance(v, list) else type(v).__name__
             for v in present}
    if kinds == {"a document"}:
        for key in dict.fromkeys(k for v in present for k in v):
            sub = [v.get(key) for v in present]
            if not _converts(sub):
                return _clash(sub, _join(path, key), exc)
    elif kinds == {"a list"}:
        return _clash([x for v in present for x in v], f"{path}[]", exc)
    if len(kinds) > 1:
        return path, f"holds both {' and '.join(sorted(kinds))}"
    return path, f"cannot be converted to Arrow ({str(exc).splitlines()[0]})"


def _converts(values: list[Any]) -> bool:
    try:
        pa.array(values)
    except (pa.ArrowException, OverflowError):
        return False
    return True


def _mismatch(
    batch: list[dict[str, Any]], schema: pa.Schema | None, position: int, *, inferred: bool, batch_rows: int
) -> SchemaMismatch:
    """The one-line error for a batch that does not fit: the first document that makes it fail (found
    by bisecting the batch's prefixes; the error path only), its field, and what to do."""
    def misfit(k: int) -> _Misfit | None:
        try:
            _record_batch(batch[:k], schema)
        except _Misfit as exc:
            return exc
        except pa.ArrowException as exc:
            return _Misfit("?", f"cannot be converted to Arrow ({str(exc).splitlines()[0]})")
        return None

    low, high = 1, len(batch)  # the prefix of ``high`` documents fails; find the shortest that does
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if misfit(middle) else (middle + 1, high)
    found = misfit(high) or _Misfit("?", "does not fit the parquet schema")
    doc = batch[high - 1]
    advice = (f"the parquet schema was inferred from the first {batch_rows:,} documents: "
              "pass parquet_schema= covering every field") if inferred else (
              "make parquet_schema= cover it")
    return SchemaMismatch(f"document {position + high:,} (_id {doc.get('_id')!r}): field `{found.path}` "
                          f"{found.reason}; {advice}")
