"""``PostgresToS3Operator``: a query's result streamed from PostgreSQL into S3 objects."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from ferry.transfers.compression import EXTENSIONS, Compression
from ferry.transfers.failures import export_failure
from ferry.transfers.lineage import LineageMixin, postgres_query_inputs, wrote_to_s3
from ferry.transfers.progress import Progress
from ferry.transfers.s3_sink import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, check_upload_settings
from ferry.transfers.s3_target import CONTENT_TYPES, open_s3_output

FileFormat = Literal["csv", "jsonl", "parquet"]


log = logging.getLogger(__name__)


class PostgresToS3Operator(LineageMixin, BaseOperator):
    """Export the result of a PostgreSQL query to S3 without holding it in memory.

    Rows are read with ``COPY (query) TO STDOUT`` (csv, jsonl) or a server-side cursor
    (parquet) and uploaded as they arrive, in multipart uploads that are completed only when
    the whole result has been written: a failed run leaves no object at any final key.

    :param postgres_conn_id: connection to the PostgreSQL database.
    :param query: SQL (templated; may be a ``.sql`` file). Prefer bind placeholders
        (``%(name)s``) with ``parameters`` over values pasted in with Jinja.
    :param s3_bucket: destination bucket (templated).
    :param s3_key: destination key (templated). With splitting, parts are named
        ``<stem>-part-00000<ext>``, or ``{part}`` in the key is replaced by the part number.
    :param s3_conn_id: AWS connection.
    :param parameters: bind values for ``query`` (templated).
    :param file_format: ``csv`` (exactly ``COPY … WITH (FORMAT csv, HEADER)``), ``jsonl``
        (one JSON object per row) or ``parquet`` (PostgreSQL types kept: numeric as decimal,
        timestamptz as UTC timestamps, arrays as lists, NULL as null).
    :param compression: ``None``, ``gzip`` or ``zstd``; for parquet, the column codec.
    :param max_rows_per_file: start a new part after this many rows.
    :param max_bytes_per_file: start a new part after this many bytes (uncompressed for text
        formats; checked per row group for parquet).
    :param replace: overwrite existing objects; if False, fail when the target exists.
    :param part_size: bytes per multipart part (at least 5 MiB; boto3's 8 MiB by default).
    :param upload_concurrency: parts uploading at once (boto3's 10 by default). Memory holds
        about ``upload_concurrency + 1`` parts.
    :return: a manifest: the bucket, and for each key written its rows and bytes.
    """

    template_fields: Sequence[str] = ("query", "s3_bucket", "s3_key", "parameters")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"query": "sql", "parameters": "json"}
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        postgres_conn_id: str,
        query: str,
        s3_bucket: str,
        s3_key: str,
        s3_conn_id: str = "aws_default",
        parameters: Sequence[Any] | Mapping[str, Any] | None = None,
        file_format: FileFormat = "csv",
        compression: Compression = None,
        max_rows_per_file: int | None = None,
        max_bytes_per_file: int | None = None,
        replace: bool = True,
        part_size: int = DEFAULT_PART_SIZE,
        upload_concurrency: int = DEFAULT_CONCURRENCY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if file_format not in CONTENT_TYPES:
            raise ValueError(f"file_format must be one of {sorted(CONTENT_TYPES)}, not {file_format!r}")
        if compression not in EXTENSIONS:
            raise ValueError(f"compression must be None, 'gzip' or 'zstd', not {compression!r}")
        for name, value in (("max_rows_per_file", max_rows_per_file), ("max_bytes_per_file", max_bytes_per_file)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        self.postgres_conn_id = postgres_conn_id
        self.query = query
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.s3_conn_id = s3_conn_id
        self.parameters = parameters
        self.file_format = file_format
        self.compression = compression
        self.max_rows_per_file = max_rows_per_file
        self.max_bytes_per_file = max_bytes_per_file
        self.replace = replace
        check_upload_settings(part_size, upload_concurrency)
        self.part_size = part_size
        self.upload_concurrency = upload_concurrency

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        from ferry.transfers import postgres_source, writers

        output = open_s3_output(
            self.s3_conn_id, self.s3_bucket, self.s3_key, file_format=self.file_format,
            compression=self.compression, split=bool(self.max_rows_per_file or self.max_bytes_per_file),
            replace=self.replace, part_size=self.part_size, concurrency=self.upload_concurrency,
        )

        target = f"s3://{self.s3_bucket}/{self.s3_key}"
        progress = Progress(self.log, f"{self.file_format} → {target}")
        limits = {"max_rows": self.max_rows_per_file, "max_bytes": self.max_bytes_per_file}
        conn = PostgresHook(postgres_conn_id=self.postgres_conn_id).get_conn()
        try:
            if self.file_format == "parquet":
                batches = postgres_source.arrow_batches(conn, self.query, self.parameters)
                writers.write_parquet(batches, output, compression=self.compression, progress=progress, **limits)
            else:
                copy = postgres_source.copy_csv if self.file_format == "csv" else postgres_source.copy_jsonl
                rows = copy(conn, self.query, self.parameters)
                writers.write_text(
                    rows,
                    output,
                    header=self.file_format == "csv",
                    compression=self.compression,
                    progress=progress,
                    **limits,
                )
            manifest = output.commit()
            query_inputs = postgres_query_inputs(conn, self.query)  # parsed if OpenLineage asks
        except BaseException as exc:
            message = export_failure(exc, output, done=f"{progress.rows:,} rows", target=target)
            if message is None:
                raise
            raise AirflowException(message) from exc
        finally:
            conn.close()
        self.log.info(
            "done: %s; wrote %s",
            progress.summary(),
            ", ".join(f"{f['key']} ({f['rows']:,} rows, {f['bytes']:,} B)" for f in manifest["files"]),
        )
        if manifest["deleted_stale_parts"]:
            self.log.info("deleted %d parts left by an earlier, larger run", len(manifest["deleted_stale_parts"]))
        keys = [f["key"] for f in manifest["files"]]
        self.emit_asset_events(context, wrote_to_s3(self.s3_bucket, keys, [], query_inputs=query_inputs,
                                                    rows=manifest["rows"], bytes=manifest["bytes"]))
        return manifest
