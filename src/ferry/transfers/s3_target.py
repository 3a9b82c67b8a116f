"""The checked S3 destination every S3-writing operator starts from."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException

from ferry.transfers.compression import Compression
from ferry.transfers.failures import transfer_failure
from ferry.transfers.s3_sink import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, S3Output

CONTENT_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}
COMPRESSED_CONTENT_TYPES = {"gzip": "application/gzip", "zstd": "application/zstd"}


def format_content_type(file_format: str, compression: Compression) -> str:
    # Parquet compresses inside the file (column codecs): it stays a parquet file.
    if compression and file_format != "parquet":
        return COMPRESSED_CONTENT_TYPES[compression]
    return CONTENT_TYPES[file_format]


def open_s3_output(
    s3_conn_id: str,
    bucket: str,
    key: str,
    *,
    file_format: str = "",
    compression: Compression = None,
    content_type: str | None = None,
    split: bool = False,
    replace: bool = True,
    part_size: int = DEFAULT_PART_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> S3Output:
    """An :class:`S3Output` whose bucket exists and whose key may be written, or a task failure
    that says which it is, raised before any data moves. ``content_type`` defaults to the one of
    ``file_format`` and ``compression``."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    output = S3Output(
        S3Hook(aws_conn_id=s3_conn_id).get_conn(), bucket, key,
        content_type=content_type or format_content_type(file_format, compression),
        split=split, replace=replace, part_size=part_size, concurrency=concurrency,
    )
    try:
        output.check_target()
    except (FileNotFoundError, FileExistsError) as exc:
        raise AirflowException(str(exc)) from exc
    except Exception as exc:
        target = f"s3://{bucket}/{key}"
        message = transfer_failure(exc, done="checking the target", not_written=f"nothing was written to {target}")
        if message is None:
            raise
        raise AirflowException(message) from exc
    return output
