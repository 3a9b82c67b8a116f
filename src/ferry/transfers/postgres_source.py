"""Reading query results from PostgreSQL as a stream: COPY rows for text, Arrow batches for parquet."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from ferry.extras import optional_module

pa = optional_module("pyarrow", "parquet", "file_format='parquet'")  # text formats need no pyarrow

Params = Sequence[Any] | Mapping[str, Any] | None


def _subquery(query: str) -> sql.Composable:
    # A trailing ';' is fine in psql but a syntax error inside COPY (...) or a subselect.
    return sql.SQL(query.strip().rstrip(";").strip())


def copy_csv(conn: psycopg.Connection, query: str, params: Params) -> Iterator[memoryview]:
    """``COPY (query) TO STDOUT WITH (FORMAT csv, HEADER)``: the header, then one row per item."""
    statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER)").format(_subquery(query))
    with conn.cursor() as cur, cur.copy(statement, params) as copy:
        yield from copy


def copy_jsonl(conn: psycopg.Connection, query: str, params: Params) -> Iterator[memoryview]:
    """One JSON object per row, built by the server (``row_to_json``).

    Text-format COPY would escape the backslashes inside JSON. CSV format with quote and
    delimiter characters that JSON never contains unescaped (\\x01, \\x02: ``row_to_json``
    writes control characters as ``\\u00XX``) passes the JSON through untouched.
    """
    statement = sql.SQL(
        "COPY (SELECT row_to_json(q) FROM ({}) AS q) TO STDOUT WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
    ).format(_subquery(query))
    with conn.cursor() as cur, cur.copy(statement, params) as copy:
        yield from copy


# -- parquet: PostgreSQL types → Arrow types ---------------------------------------------------

@functools.cache
def _scalars() -> dict[str, pa.DataType]:
    return {
        "bool": pa.bool_(),
        "int2": pa.int16(),
        "int4": pa.int32(),
        "int8": pa.int64(),
        "oid": pa.int64(),
        "float4": pa.float32(),
        "float8": pa.float64(),
        "text": pa.string(),
        "varchar": pa.string(),
        "bpchar": pa.string(),
        "name": pa.string(),
        "char": pa.string(),
        "json": pa.string(),
        "jsonb": pa.string(),
        "xml": pa.string(),
        "uuid": pa.string(),
        "interval": pa.string(),
        "bytea": pa.binary(),
        "date": pa.date32(),
        "time": pa.time64("us"),
        "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"),
    }

#: Unconstrained ``numeric`` has no declared scale; this one holds the Inside Airbnb data and
#: money-like values exactly. A value that does not fit fails the export (Arrow refuses to
#: round), it is never silently changed.
UNCONSTRAINED_NUMERIC = (38, 10)  # (precision, scale) of its decimal128


def _numeric_type(precision: int | None, scale: int | None) -> pa.DataType:
    if precision is None:
        return pa.decimal128(*UNCONSTRAINED_NUMERIC)
    if precision <= 38:
        return pa.decimal128(precision, scale or 0)
    return pa.decimal256(precision, scale or 0)


def arrow_type(conn: psycopg.Connection, column: psycopg.Column) -> pa.DataType:
    info = conn.adapters.types.get(column.type_code)  # for an array oid: its element type
    if info is None:
        return pa.string()  # an extension or user-defined type: loaded as its text form
    is_array = column.type_code == info.array_oid
    if info.name == "numeric":
        element = _numeric_type(*((None, None) if is_array else (column.precision, column.scale)))
    else:
        element = _scalars().get(info.name, pa.string())
    return pa.list_(element) if is_array else element


class _StrLoader(TextLoader):
    """Load as the PostgreSQL text form (json stays JSON text; uuids and intervals stay text)."""


def arrow_batches(
    conn: psycopg.Connection,
    query: str,
    params: Params,
    *,
    batch_rows: int = 65_536,
) -> Iterator[pa.RecordBatch]:
    """Run ``query`` through a server-side cursor and yield typed Arrow record batches."""
    for type_name in ("json", "jsonb", "uuid", "interval", "xml"):
        conn.adapters.register_loader(type_name, _StrLoader)
    with conn.transaction(), conn.cursor(name="ferry_export") as cur:
        cur.itersize = batch_rows
        cur.execute(_subquery(query), params)
        schema = pa.schema([pa.field(c.name, arrow_type(conn, c)) for c in cur.description])
        # An empty result still yields one (empty) batch, so the file carries the schema.
        yield_empty = True
        while rows := cur.fetchmany(batch_rows):
            yield_empty = False
            columns = list(zip(*rows, strict=True))
            yield pa.RecordBatch.from_arrays(
                [_column_array(values, f.type) for values, f in zip(columns, schema, strict=True)],
                schema=schema,
            )
        if yield_empty:
            yield pa.RecordBatch.from_pylist([], schema=schema)


def _column_array(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    if pa.types.is_string(type_):
        values = [v if v is None or isinstance(v, str) else str(v) for v in values]
    return pa.array(values, type=type_)
