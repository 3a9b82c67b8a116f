"""``S3ToPostgresOperator``: S3 objects streamed into a PostgreSQL table with COPY, in one transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from ferry.transfers.compression import EXTENSIONS, Compression, infer_compression
from ferry.transfers.failures import transfer_failure
from ferry.transfers.lineage import Lineage, LineageMixin, postgres_namespace, postgres_table, s3_objects
from ferry.transfers.progress import Progress
from ferry.transfers.s3_sink import one_line

InputFormat = Literal["csv", "jsonl", "parquet"]


class S3ToPostgresOperator(LineageMixin, BaseOperator):
    """Load an S3 object, or every object under a prefix, into a PostgreSQL table.

    Objects are read as they download and fed to ``COPY … FROM STDIN``: csv bytes go through
    untouched (PostgreSQL parses them), JSON lines and parquet row by row through psycopg.
    Every object is loaded in one transaction, committed only when all of them are in: a bad
    row, a lost connection or an unreadable object loads nothing. Memory stays at a chunk (csv,
    jsonl) or a parquet row group, whatever the size of the objects.

    :param s3_bucket: source bucket (templated).
    :param s3_key: an object key, or a prefix ending in ``/`` for every object under it, loaded
        in key order (templated).
    :param postgres_conn_id: connection to the PostgreSQL database.
    :param table: destination table, ``name`` or ``schema.name`` (templated). It must exist.
    :param file_format: ``csv`` (as ``COPY … WITH (FORMAT csv)`` reads it), ``jsonl`` (one JSON
        object per line; keys are column names, missing keys load NULL; a value bound for a
        json/jsonb column is stored as that JSON value, numbers with the digits written — jsonb
        keeps them as numeric — and JSON null as SQL NULL; numbers bound for numeric columns
        load as exact decimals; ``NaN`` and ``Infinity`` are not JSON and fail the load) or
        ``parquet`` (columns matched by name).
    :param columns: csv only: the table columns the file's columns go to. Without a header,
        in file order (default all of the table's, in table order). With ``csv_header``, the
        header's names decide the order, and ``columns`` (if given) must name the same set.
    :param csv_header: csv only: whether each object starts with a header line. It is read,
        not skipped: its names (exactly as the table spells its columns; quoted names may hold
        commas) are the columns the object loads into, so objects may order their columns
        differently. A name that is not a column of the table, or that comes twice, fails the
        load naming the object. An empty object loads nothing.
    :param compression: ``infer`` (from the key: ``.gz``, ``.zst``), ``None``, ``gzip`` or
        ``zstd``. Parquet compresses inside the file and ignores this.
    :param truncate: empty the table first, in the same transaction (a rerun then replaces the
        earlier load instead of adding to it). It is a ``DELETE``, not a ``TRUNCATE``, whose
        ACCESS EXCLUSIVE lock would block every reader for the whole load: readers keep seeing
        the old rows until the commit. Delete triggers and foreign keys' ``ON DELETE`` actions
        apply as for any ``DELETE``; on a big table the old rows stay on disk as dead rows until
        autovacuum reclaims them.
    :param s3_conn_id: AWS connection.
    :return: a manifest: the table, each object's key, rows and bytes, and the total rows.
    """

    template_fields: Sequence[str] = ("s3_bucket", "s3_key", "table")
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        s3_bucket: str,
        s3_key: str,
        postgres_conn_id: str,
        table: str,
        file_format: InputFormat = "csv",
        columns: Sequence[str] | None = None,
        csv_header: bool = True,
        compression: Compression | Literal["infer"] = "infer",
        truncate: bool = False,
        s3_conn_id: str = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if file_format not in ("csv", "jsonl", "parquet"):
            raise ValueError(f"file_format must be 'csv', 'jsonl' or 'parquet', not {file_format!r}")
        if compression != "infer" and compression not in EXTENSIONS:
            raise ValueError(f"compression must be 'infer', None, 'gzip' or 'zstd', not {compression!r}")
        if columns is not None and file_format != "csv":
            raise ValueError("columns is for csv; jsonl and parquet match columns by name")
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.postgres_conn_id = postgres_conn_id
        self.table = table
        self.file_format = file_format
        self.columns = columns
        self.csv_header = csv_header
        self.compression = compression
        self.truncate = truncate
        self.s3_conn_id = s3_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.providers.postgres.hooks.postgres import PostgresHook
        from psycopg import sql

        from ferry.transfers import postgres_sink, s3_source

        s3 = S3Hook(aws_conn_id=self.s3_conn_id).get_conn()
        try:
            plan = s3_source.objects(s3, self.s3_bucket, self.s3_key)
        except FileNotFoundError as exc:
            raise AirflowException(f"{exc}; nothing was loaded into {self.table}") from exc
        conn = PostgresHook(postgres_conn_id=self.postgres_conn_id).get_conn()
        conn.autocommit = False
        progress = Progress(self.log, f"s3://{self.s3_bucket}/{self.s3_key} → {self.table}")
        files: list[dict[str, Any]] = []
        committing = False
        try:
            if self.truncate:
                conn.execute(sql.SQL("DELETE FROM {}").format(postgres_sink.table_identifier(self.table)))
            columns = postgres_sink.table_columns(conn, self.table)
            for key, size, etag in plan:
                rows = self._load(conn, s3, key, size, columns, etag)
                progress.add(rows, size)
                files.append({"s3_key": key, "rows": rows, "bytes": size})
            namespace, database = postgres_namespace(conn)
            committing = True
            conn.commit()
        except BaseException as exc:
            done = f"{len(files)} of {len(plan)} objects"
            not_loaded = _not_loaded(conn, self.table, committing)
            message = transfer_failure(exc, done=done, not_written=not_loaded)
            if message is None and isinstance(exc, ValueError):  # bad JSON, unknown fields, bad parquet
                message = f"the input is not valid after {done} ({one_line(exc)}); {not_loaded}"
            if message is None:
                raise
            raise AirflowException(message) from exc
        finally:
            with contextlib.suppress(Exception):  # a broken connection must not hide the failure
                conn.close()
        self.log.info("done: %s", progress.summary())
        rows = sum(f["rows"] for f in files)
        table = postgres_table(namespace, database, self.table)
        self.emit_asset_events(context, Lineage(
            inputs=s3_objects(self.s3_bucket, [f["s3_key"] for f in files]), outputs=[table],
            uris=[f"{table.namespace}/{table.name.replace('.', '/')}"], extra={"table": self.table, "rows": rows}))
        return {"table": self.table, "files": files, "rows": rows}

    def _load(self, conn: Any, s3: Any, key: str, size: int, columns: dict[str, int], etag: str | None) -> int:
        """One object, the version with ``etag``, into the table; ``columns`` (name → type oid) for jsonl, parquet."""
        from ferry.transfers import postgres_sink, s3_source

        compression = infer_compression(key) if self.compression == "infer" else self.compression
        if self.file_format == "csv":
            return self._load_csv(conn, key, columns,
                                  s3_source.chunks(s3, self.s3_bucket, key, compression, etag=etag))
        if self.file_format == "jsonl":
            blocks = s3_source.chunks(s3, self.s3_bucket, key, compression, etag=etag)
            rows = _jsonl_rows(s3_source.lines(blocks), columns, key)
            return postgres_sink.copy_rows(conn, self.table, columns, rows)
        return _load_parquet(conn, s3, self.s3_bucket, key, size, self.table, columns, etag)

    def _load_csv(self, conn: Any, key: str, columns: dict[str, int], blocks: Iterator[bytes]) -> int:
        """One csv object; with a header, into the columns it names (read once per object, not per row)."""
        from ferry.transfers import postgres_sink

        if not self.csv_header:
            return postgres_sink.copy_csv(conn, self.table, self.columns, blocks, header=False)
        names, rest = postgres_sink.split_csv_header(blocks)
        if names is None:  # an empty object
            return 0
        _check_header(names, columns, self.columns, key, self.table)
        return postgres_sink.copy_csv(conn, self.table, names, rest, header=False)


def _check_header(names: list[str], columns: dict[str, int], given: Sequence[str] | None, key: str,
                  table: str) -> None:
    """The header must name columns of the table, each once (and the ``columns`` given, if any)."""
    if not names:
        raise ValueError(f"{key}: the header line names no columns")
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"{key}: header names {twice} more than once")
    if unknown := sorted(set(names) - columns.keys()):
        raise ValueError(f"{key}: header columns {unknown} are not columns of {table}")
    if given is not None and set(given) != set(names):
        raise ValueError(f"{key}: header columns {names} are not the columns given {list(given)}")


def _not_loaded(conn: Any, table: str, committing: bool) -> str:
    """Roll back, and say what the table holds now.

    On a broken connection the rollback cannot be sent (it would raise and hide the real
    failure); PostgreSQL discards a transaction whose connection is gone, so nothing was
    committed, unless the connection broke during the COMMIT itself, whose outcome is unknown.
    """
    import psycopg

    if not conn.broken:
        try:
            conn.rollback()
            return f"nothing was loaded into {table} (the transaction was rolled back)"
        except psycopg.Error:
            pass
    if committing:
        return f"the connection broke during COMMIT, so whether {table} holds this load is unknown"
    return f"nothing was loaded into {table} (the transaction was never committed)"


def _jsonl_rows(lines: Iterator[bytes], columns: dict[str, int], key: str) -> Iterator[list[Any]]:
    """Rows in ``columns`` order; values bound for json/jsonb columns as their JSON text."""
    import json
    from decimal import Decimal

    from ferry.transfers.postgres_sink import JSON_TYPES, json_text

    names = list(columns)
    known = set(names)
    as_json = [i for i, oid in enumerate(columns.values()) if oid in JSON_TYPES]
    for number, line in enumerate(lines, 1):
        try:  # Decimal: numeric(38,10) survives, a float would not
            document = json.loads(line, parse_float=Decimal, parse_constant=_not_json)
        except ValueError as exc:
            raise ValueError(f"{key}, line {number}: {exc}") from exc
        if not isinstance(document, dict):
            raise ValueError(f"{key}, line {number}: a JSON object was expected, not {type(document).__name__}")
        if unknown := document.keys() - known:
            raise ValueError(f"{key}, line {number}: fields {sorted(unknown)} are not columns of the table")
        row = [document.get(name) for name in names]
        for i in as_json:  # none for a table without json columns
            if row[i] is not None:
                row[i] = json_text(row[i])
        yield row


def _not_json(constant: str) -> Any:
    """``json.loads`` takes NaN and Infinity; JSON does not, and neither does jsonb."""
    raise ValueError(f"{constant} is not a JSON number")


def _load_parquet(conn: Any, s3: Any, bucket: str, key: str, size: int, table: str, columns: dict[str, int],
                  etag: str | None) -> int:
    from ferry.transfers import postgres_sink, s3_source

    with s3_source.parquet_file(s3, bucket, key, size, etag=etag) as parquet:
        names = parquet.schema_arrow.names
        if unknown := set(names) - set(columns):
            raise ValueError(f"{key}: parquet columns {sorted(unknown)} are not columns of the table")
        wanted = {name: columns[name] for name in names}
        rows = (row for batch in parquet.iter_batches(batch_size=10_000)
                for row in zip(*(column.to_pylist() for column in batch.columns), strict=True))
        return postgres_sink.copy_rows(conn, table, wanted, rows)
