"""Loading into a PostgreSQL table with ``COPY … FROM STDIN``: csv bytes as they are, other
formats row by row through psycopg (which quotes every value; nothing is pasted into SQL).

The caller holds one transaction around every COPY of a load, so a bad row anywhere loads
nothing. Table and column names are composed as SQL identifiers, never as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
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


def copy_csv(conn: psycopg.Connection, table: str, columns: Sequence[str] | None, blocks: Iterable[bytes],
             *, header: bool) -> int:
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
    return value if isinstance(value, str) else json.dumps(value, default=str)
