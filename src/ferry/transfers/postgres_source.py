"""Reading query results from PostgreSQL as a stream: COPY rows for text, Arrow batches for parquet."""

from __future__ import annotations

import functools
import io
import itertools
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


#: PostgreSQL types whose csv text Arrow's csv reader turns into the Arrow type above exactly,
#: once the session prints dates as ISO, time zones as UTC and floats in full
#: (``_exact_text_settings``). Arrays, bytea (hex text) and unknown types take the row path.
CSV_TYPES = frozenset({"bool", "int2", "int4", "int8", "oid", "float4", "float8", "numeric", "text", "varchar",
                       "bpchar", "name", "char", "json", "jsonb", "xml", "uuid", "interval", "date", "time",
                       "timestamp", "timestamptz"})

#: Bytes of csv Arrow parses into one record batch (one parquet row group).
CSV_BLOCK = 8 * 1024 * 1024


def arrow_batches(
    conn: psycopg.Connection,
    query: str,
    params: Params,
    *,
    batch_rows: int = 65_536,
) -> Iterator[pa.RecordBatch]:
    """Typed Arrow record batches of ``query``'s result.

    Where every column's type is in :data:`CSV_TYPES` (and names are distinct), the rows come
    as ``COPY … (FORMAT csv)`` and Arrow's csv reader builds the columns in C++: no Python object
    per value, and the parse runs beside the COPY and the upload. Otherwise a server-side cursor
    and psycopg's loaders, ``batch_rows`` rows at a time.
    """
    with conn.transaction():
        columns = _describe(conn, query, params)
        schema = pa.schema([pa.field(c.name, arrow_type(conn, c)) for c in columns])
        if len(set(schema.names)) == len(schema.names) and all(
                (info := conn.adapters.types.get(c.type_code)) is not None and info.name in CSV_TYPES
                and c.type_code != info.array_oid for c in columns):
            yield from _csv_batches(conn, query, params, schema)
            return
    yield from _row_batches(conn, query, params, batch_rows)


def _describe(conn: psycopg.Connection, query: str, params: Params) -> list[psycopg.Column]:
    """The result's columns, from the plan of the query alone (``LIMIT 0``: no row is produced)."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(_subquery(query)), params)
        return list(cur.description or [])


def _exact_text_settings(conn: psycopg.Connection) -> None:
    """For the rest of the transaction: text forms Arrow reads back exactly, whatever the server's
    defaults (a server with ``extra_float_digits = 0`` would print floats rounded)."""
    conn.execute("SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL TimeZone = 'UTC'; SET LOCAL extra_float_digits = 1")


class _CopyReader(io.RawIOBase):
    """COPY's output as a file, for Arrow's streaming csv reader (which reads it in its own thread)."""

    def __init__(self, chunks: Iterator[Any]) -> None:
        self.chunks = chunks
        self.pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.pending = memoryview(chunk)
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


def _csv_batches(conn: psycopg.Connection, query: str, params: Params, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    import pyarrow.csv as pacsv

    _exact_text_settings(conn)
    statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(_subquery(query))
    options = pacsv.ConvertOptions(
        # csv NULL is an unquoted empty field; "" (quoted) is the empty string.
        column_types=schema, strings_can_be_null=True, quoted_strings_can_be_null=False,
        null_values=[""], true_values=["t"], false_values=["f"], timestamp_parsers=[pacsv.ISO8601],
    )
    with conn.cursor() as cur, cur.copy(statement, params) as copy:
        chunks = iter(copy)
        first = next(chunks, None)
        if first is None:  # no rows: Arrow's reader refuses an empty file; the schema still goes out
            yield pa.RecordBatch.from_pylist([], schema=schema)
            return
        try:
            reader = pacsv.open_csv(
                io.BufferedReader(_CopyReader(itertools.chain([first], chunks)), buffer_size=1024 * 1024),
                read_options=pacsv.ReadOptions(column_names=schema.names, block_size=CSV_BLOCK),
                # A one-column row holding NULL is an empty line: it is a row, not nothing.
                parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
                convert_options=options,
            )
            yield from reader
        except pa.ArrowInvalid as exc:
            raise ValueError(f"a value cannot be written to parquet: {_name_column(str(exc), schema)}") from exc


def _name_column(message: str, schema: pa.Schema) -> str:
    """Arrow's "In CSV column #3: …" with the column's name and type in place of its number."""
    import re

    found = re.match(r"In CSV column #(\d+): (.*)", " ".join(message.split()))
    if not found or int(found[1]) >= len(schema):
        return " ".join(message.split())
    field = schema.field(int(found[1]))
    return f"column {field.name!r} ({field.type}): {found[2]}"


def _row_batches(conn: psycopg.Connection, query: str, params: Params, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Through a server-side cursor, ``batch_rows`` rows at a time, psycopg loading each value."""
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
