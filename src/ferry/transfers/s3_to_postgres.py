"""``S3ToPostgresOperator``: S3 objects streamed into a PostgreSQL table with COPY, in one transaction."""

from __future__ import annotations

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
        object per line; keys are column names, missing keys load NULL, dicts and lists bound
        for json/jsonb columns are stored as JSON) or ``parquet`` (columns matched by name).
    :param columns: csv only: the table columns the file's columns go to, in file order;
        default all of the table's, in table order.
    :param csv_header: csv only: whether each object starts with a header line (skipped).
    :param compression: ``infer`` (from the key: ``.gz``, ``.zst``), ``None``, ``gzip`` or
        ``zstd``. Parquet compresses inside the file and ignores this.
    :param truncate: empty the table first, in the same transaction (a rerun then replaces the
        earlier load instead of adding to it; readers see the old rows until the commit).
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
        try:
            if self.truncate:
                conn.execute(sql.SQL("TRUNCATE {}").format(postgres_sink.table_identifier(self.table)))
            columns = postgres_sink.table_columns(conn, self.table) if self.file_format != "csv" else {}
            for key, size in plan:
                rows = self._load(conn, s3, key, size, columns)
                progress.add(rows, size)
                files.append({"s3_key": key, "rows": rows, "bytes": size})
            conn.commit()
            namespace, database = postgres_namespace(conn)
        except BaseException as exc:
            conn.rollback()
            done = f"{len(files)} of {len(plan)} objects"
            not_loaded = f"nothing was loaded into {self.table} (the transaction was rolled back)"
            message = transfer_failure(exc, done=done, not_written=not_loaded)
            if message is None and isinstance(exc, ValueError):  # bad JSON, unknown fields, bad parquet
                message = f"the input is not valid after {done} ({one_line(exc)}); {not_loaded}"
            if message is None:
                raise
            raise AirflowException(message) from exc
        finally:
            conn.close()
        self.log.info("done: %s", progress.summary())
        rows = sum(f["rows"] for f in files)
        table = postgres_table(namespace, database, self.table)
        self.emit_asset_events(context, Lineage(
            inputs=s3_objects(self.s3_bucket, [f["s3_key"] for f in files]), outputs=[table],
            uris=[f"{table.namespace}/{table.name.replace('.', '/')}"], extra={"table": self.table, "rows": rows}))
        return {"table": self.table, "files": files, "rows": rows}

    def _load(self, conn: Any, s3: Any, key: str, size: int, columns: dict[str, int]) -> int:
        """One object into the table; ``columns`` (name → type oid) for jsonl and parquet."""
        from ferry.transfers import postgres_sink, s3_source

        compression = infer_compression(key) if self.compression == "infer" else self.compression
        if self.file_format == "csv":
            return postgres_sink.copy_csv(conn, self.table, self.columns,
                                          s3_source.chunks(s3, self.s3_bucket, key, compression),
                                          header=self.csv_header)
        if self.file_format == "jsonl":
            rows = _jsonl_rows(s3_source.lines(s3_source.chunks(s3, self.s3_bucket, key, compression)), columns, key)
            return postgres_sink.copy_rows(conn, self.table, columns, rows)
        return _load_parquet(conn, s3, self.s3_bucket, key, size, self.table, columns)


def _jsonl_rows(lines: Iterator[bytes], columns: dict[str, int], key: str) -> Iterator[list[Any]]:
    import json
    from decimal import Decimal

    names = list(columns)
    known = set(names)
    for number, line in enumerate(lines, 1):
        document = json.loads(line, parse_float=Decimal)  # numeric(38,10) survives; a float would not
        if not isinstance(document, dict):
            raise ValueError(f"{key}, line {number}: a JSON object was expected, not {type(document).__name__}")
        if unknown := document.keys() - known:
            raise ValueError(f"{key}, line {number}: fields {sorted(unknown)} are not columns of the table")
        yield [document.get(name) for name in names]


def _load_parquet(conn: Any, s3: Any, bucket: str, key: str, size: int, table: str, columns: dict[str, int]) -> int:
    import pyarrow.parquet as pq

    from ferry.transfers import postgres_sink, s3_source

    with s3_source.open_ranged(s3, bucket, key, size) as file:
        parquet = pq.ParquetFile(file)
        names = parquet.schema_arrow.names
        if unknown := set(names) - set(columns):
            raise ValueError(f"{key}: parquet columns {sorted(unknown)} are not columns of the table")
        wanted = {name: columns[name] for name in names}
        rows = (row for batch in parquet.iter_batches(batch_size=10_000)
                for row in zip(*(column.to_pylist() for column in batch.columns), strict=True))
        return postgres_sink.copy_rows(conn, table, wanted, rows)
