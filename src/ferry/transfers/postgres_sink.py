"""Loading into a PostgreSQL table with ``COPY … FROM STDIN``: csv bytes as they are, other
formats row by row through psycopg (which quotes every value; nothing is pasted into SQL).

The caller holds one transaction around every COPY of a load, so a bad row anywhere loads
nothing. Table and column names are composed as SQL identifiers, never as text.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

#: Type oids of json and jsonb: dicts and lists bound for them are sent as JSON text.
JSON_TYPES = {114, 3802}


def table_identifier(table: str) -> sql.Identifier:
    """``schema.table`` or ``table`` as an identifier (each part quoted as needed)."""
    return sql.Identifier(*table.split("."))


def table_columns(conn: psycopg.Connection, table: str) -> dict[str, int]:
    """The table's columns and their type oids, in table order."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(table_identifier(table)))
        return {column.name: column.type_code for column in cur.description or []}


def copy_csv(conn: psycopg.Connection, table: str, columns: Sequence[str] | None,
             blocks: Iterable[bytes | memoryview], *, header: bool) -> int:
    """COPY csv bytes into ``table``; return the number of rows loaded."""
    target = table_identifier(table)
    if columns:
        target = sql.SQL("{} ({})").format(target, sql.SQL(", ").join(map(sql.Identifier, columns)))
    statement = sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv, HEADER {})").format(
        target, sql.SQL("true" if header else "false"))
    with conn.cursor() as cur:
        with cur.copy(statement) as copy:
            for block in blocks:
                copy.write(block)
        return cur.rowcount


def copy_rows(conn: psycopg.Connection, table: str, columns: dict[str, int], rows: Iterable[Sequence[Any]]) -> int:
    """COPY Python rows (values in ``columns`` order) into ``table``; return the rows loaded."""
    as_json = [oid in JSON_TYPES for oid in columns.values()]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        table_identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.cursor() as cur:
        with cur.copy(statement) as copy:
            for row in rows:
                copy.write_row([_json_text(v) if j and v is not None else v for v, j in zip(row, as_json, strict=True)])
        return cur.rowcount


def _json_text(value: Any) -> str:
    """A str is JSON text already (parquet holds json columns as text, jsonl rows come as text)."""
    return value if isinstance(value, str) else json_text(value)


def json_text(value: Any) -> str:
    """The JSON text of a parsed JSON value, a number as its own digits.

    JSON lines are parsed with ``parse_float=Decimal`` (so numeric(38,10) survives), and
    ``json.dumps`` can write a Decimal only through float (1e400 → inf) or as a string. A
    Decimal is written here as its text, a JSON number with every digit (``1.50``, ``1E+400``;
    jsonb stores numbers as numeric, so the value is exact). NaN and Infinity are not JSON and
    are refused. Values without a Decimal take ``json.dumps``'s C encoder alone.
    """
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except TypeError:  # a Decimal (or, from parquet, another type json does not know) inside
        return _json_with_decimals(value)


def _json_with_decimals(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_with_decimals(str(k))}:{_json_with_decimals(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(_json_with_decimals, value)) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)


def split_csv_header(blocks: Iterable[bytes]) -> tuple[list[str] | None, Iterator[bytes | memoryview]]:
    """The names on the first csv record, and the bytes after it; ``(None, …)`` for no bytes at all.

    The record ends at the first newline outside double quotes (a quoted name may hold one, or
    a comma); it is parsed with the csv module, whose defaults are COPY's (``,``, ``"``,
    doubled quotes). Only the blocks up to that newline are held, once per object: the rest
    streams on untouched.
    """
    stream = iter(blocks)
    head, end = b"", -1
    for block in stream:
        head += block
        if (end := _record_end(head)) >= 0:
            break
    if not head:
        return None, iter(())
    if end < 0:  # a header and no newline after it: no rows
        end = len(head)
    names = next(csv.reader(io.StringIO(head[:end].decode(), newline="")), [])
    return names, itertools.chain([memoryview(head)[end + 1:]], stream)  # a view: no copy of the block


def _record_end(data: bytes) -> int:
    """Index of the newline that ends the first csv record, or -1 if ``data`` does not hold it."""
    end = data.find(b"\n")
    while end >= 0 and data.count(b'"', 0, end) % 2:
        end = data.find(b"\n", end + 1)
    return end
