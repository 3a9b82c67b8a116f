"""``MongoToS3Operator``: a MongoDB query or aggregation streamed into S3 as JSON lines or parquet."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from ferry.transfers.compression import EXTENSIONS, Compression
from ferry.transfers.failures import export_failure, nothing_written
from ferry.transfers.lineage import Dataset, LineageMixin, wrote_to_s3
from ferry.transfers.progress import Progress
from ferry.transfers.s3_sink import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, check_upload_settings
from ferry.transfers.s3_target import open_s3_output

if TYPE_CHECKING:  # pyarrow, which mongo_source needs, stays out of DAG parsing
    from ferry.transfers.mongo_source import MongoQuery

Transform = Callable[[Iterable[dict[str, Any]]], Iterable[dict[str, Any]]]


def _identity(docs: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    return docs


class MongoToS3Operator(LineageMixin, BaseOperator):
    """Export documents from MongoDB to S3, reading the cursor in batches.

    :param mongo_conn_id: MongoDB connection.
    :param mongo_collection: collection to read (templated).
    :param mongo_query: a filter (dict) for ``find`` or a pipeline (list) for ``aggregate``
        (templated).
    :param s3_bucket: destination bucket (templated).
    :param s3_key: destination key (templated).
    :param mongo_db: database; default: the connection's.
    :param transform: as in the seed, a function from documents to documents. It receives an
        iterator; to keep memory flat, make it a generator (``yield``), not a list builder.
    :param file_format: ``jsonl`` (relaxed Extended JSON) or ``parquet``.
    :param compression: ``None``, ``gzip`` or ``zstd``.
    :param parquet_schema: a ``pyarrow.Schema`` for parquet; default: inferred from the first
        10,000 documents. Either way every field of every document must fit it exactly, nested ones
        too: a field it lacks (``host.since``, ``reviews[].b``), of another kind, typed null (a field
        null or empty in all the first documents) or a value its type cannot hold exactly fails the
        task naming the field and document, with nothing written; nothing is dropped or rounded.
    :param replace: overwrite an existing object; if False, fail when it exists.
    :param s3_conn_id: AWS connection.
    :param batch_size: documents per cursor batch.
    :param part_size: bytes per multipart part (at least 5 MiB; boto3's 8 MiB by default).
    :param upload_concurrency: parts uploading at once (boto3's 10 by default).
    :return: a manifest: the key written, its documents (rows) and bytes.
    """

    template_fields: Sequence[str] = ("mongo_collection", "mongo_query", "s3_bucket", "s3_key")
    ui_color = "#589636"

    def __init__(
        self,
        *,
        mongo_conn_id: str = "mongo_default",
        mongo_collection: str,
        mongo_query: MongoQuery,
        s3_bucket: str,
        s3_key: str,
        mongo_db: str | None = None,
        transform: Transform | None = None,
        file_format: Literal["jsonl", "parquet"] = "jsonl",
        compression: Compression = None,
        parquet_schema: Any = None,
        replace: bool = True,
        s3_conn_id: str = "aws_default",
        batch_size: int = 5_000,
        part_size: int = DEFAULT_PART_SIZE,
        upload_concurrency: int = DEFAULT_CONCURRENCY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_upload_settings(part_size, upload_concurrency)
        if file_format not in ("jsonl", "parquet"):
            raise ValueError(f"file_format must be 'jsonl' or 'parquet', not {file_format!r}")
        if compression not in EXTENSIONS:
            raise ValueError(f"compression must be None, 'gzip' or 'zstd', not {compression!r}")
        self.mongo_conn_id = mongo_conn_id
        self.mongo_collection = mongo_collection
        self.mongo_query = mongo_query
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.mongo_db = mongo_db
        self.transform = transform or _identity
        self.file_format = file_format
        self.compression = compression
        self.parquet_schema = parquet_schema
        self.replace = replace
        self.s3_conn_id = s3_conn_id
        self.batch_size = batch_size
        self.part_size = part_size
        self.upload_concurrency = upload_concurrency

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.mongo.hooks.mongo import MongoHook

        from ferry.transfers import mongo_source, writers

        output = open_s3_output(self.s3_conn_id, self.s3_bucket, self.s3_key, file_format=self.file_format,
                                compression=self.compression, replace=self.replace, part_size=self.part_size,
                                concurrency=self.upload_concurrency)

        hook = MongoHook(mongo_conn_id=self.mongo_conn_id)
        database = hook.get_conn()[self.mongo_db or hook.connection.schema]
        target = f"s3://{self.s3_bucket}/{self.s3_key}"
        progress = Progress(self.log, f"{self.mongo_collection} → {target}")
        try:
            docs: Iterator[dict[str, Any]] = iter(
                self.transform(
                    mongo_source.documents(
                        database[self.mongo_collection], self.mongo_query, batch_size=self.batch_size
                    )
                )
            )
            if self.file_format == "jsonl":
                writers.write_text(
                    mongo_source.jsonl_lines(docs),
                    output,
                    header=False,
                    compression=self.compression,
                    max_rows=None,
                    max_bytes=None,
                    progress=progress,
                )
            else:
                batches = mongo_source.arrow_batches(docs, schema=self.parquet_schema)
                writers.write_parquet(
                    batches, output, compression=self.compression, max_rows=None, max_bytes=None, progress=progress
                )
            manifest = output.commit()
        except mongo_source.SchemaMismatch as exc:  # the data's fault: say so, and what was not written
            raise mongo_source.SchemaMismatch(f"{exc}; {nothing_written(target, output.abort())}") from None
        except BaseException as exc:
            message = export_failure(exc, output, done=f"{progress.rows:,} documents", target=target)
            if message is None:
                raise
            raise AirflowException(message) from exc
        finally:
            hook.close()
        self.log.info("done: %s", progress.summary())
        connection = hook.connection
        source = Dataset(f"mongodb://{connection.host}:{connection.port or 27017}",
                         f"{database.name}.{self.mongo_collection}")
        self.emit_asset_events(context, wrote_to_s3(self.s3_bucket, [f["key"] for f in manifest["files"]], [source],
                                                    rows=manifest["rows"], bytes=manifest["bytes"]))
        return manifest
