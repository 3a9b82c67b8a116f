"""Encoders from a source to an :class:`~ferry.transfers.s3_sink.S3Output`: text rows or Arrow batches.

Splitting: ``max_rows`` and ``max_bytes`` start a new file once a file holds that many rows or
bytes. For text formats ``max_bytes`` counts uncompressed bytes and a file never exceeds it
(unless a single row does); for parquet it counts encoded bytes, checked after each row group.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ferry.extras import optional_module
from ferry.transfers.compression import Compression, compressor
from ferry.transfers.progress import Progress
from ferry.transfers.s3_sink import S3Output

#: Rows are gathered into blocks of this size before compressing and writing: a call into
#: zlib or zstd per 200-byte row would cost more than the copy it saves.
BLOCK = 1 << 20

pa = optional_module("pyarrow", "parquet", "file_format='parquet'")  # text formats need no pyarrow
pq = optional_module("pyarrow.parquet", "parquet", "file_format='parquet'")


class _TextFile:
    """The file being written: a compressor in front of one multipart object."""

    def __init__(self, output: S3Output, compression: Compression, header: bytes) -> None:
        self.file = output.next_file()
        self.compressor = compressor(compression)
        self.block = bytearray(header)
        self.rows = 0
        self.raw_bytes = len(header)

    def add(self, row: bytes | memoryview) -> None:
        self.block += row
        self.rows += 1
        self.raw_bytes += len(row)

    def drain(self) -> int:
        size = len(self.block)
        if size:
            self.file.write(self.compressor.compress(bytes(self.block)))
            self.block.clear()
        return size

    def close(self) -> None:
        self.drain()
        self.file.write(self.compressor.flush())
        self.file.rows = self.rows


def write_text(
    rows: Iterable[bytes | memoryview],
    output: S3Output,
    *,
    header: bool,
    compression: Compression,
    max_rows: int | None,
    max_bytes: int | None,
    progress: Progress,
) -> None:
    """Write newline-terminated rows; with ``header`` the first item is repeated atop every file."""
    rows = iter(rows)
    head = bytes(next(rows, b"")) if header else b""
    current = _TextFile(output, compression, head)
    if not (max_rows or max_bytes):
        _write_unsplit(rows, current, progress)
        return
    reported = 0  # rows of the current file already counted in ``progress``
    for row in rows:
        if current.rows and (
            (max_rows and current.rows >= max_rows) or (max_bytes and current.raw_bytes + len(row) > max_bytes)
        ):
            progress.add(current.rows - reported, current.drain())
            current.close()
            current, reported = _TextFile(output, compression, head), 0
        current.add(row)
        if len(current.block) >= BLOCK:
            progress.add(current.rows - reported, current.drain())
            reported = current.rows
    progress.add(current.rows - reported, current.drain())
    current.close()


def _write_unsplit(rows: Iterator[bytes | memoryview], current: _TextFile, progress: Progress) -> None:
    """The common case, kept tight: this loop runs once per row of the result."""
    block = current.block
    count = reported = 0
    for row in rows:
        block += row
        count += 1
        if len(block) >= BLOCK:
            progress.add(count - reported, current.drain())
            reported = count
    current.rows = count
    progress.add(count - reported, current.drain())
    current.close()


PARQUET_CODECS = {None: "none", "gzip": "gzip", "zstd": "zstd"}


def write_parquet(
    batches: Iterable[pa.RecordBatch],
    output: S3Output,
    *,
    compression: Compression,
    max_rows: int | None,
    max_bytes: int | None,
    progress: Progress,
) -> None:
    """Write Arrow batches as parquet; ``compression`` picks the column codec."""
    codec = PARQUET_CODECS[compression]
    writer: pq.ParquetWriter | None = None
    for batch in batches:
        if writer is None:  # the first batch (possibly empty) carries the schema
            writer = pq.ParquetWriter(output.next_file(), batch.schema, compression=codec)
        offset = 0
        while offset < batch.num_rows:
            file = output.current
            if (max_rows and file.rows >= max_rows) or (max_bytes and file.rows and file.tell() >= max_bytes):
                writer.close()
                writer = pq.ParquetWriter(output.next_file(), batch.schema, compression=codec)
                continue
            take = batch.num_rows - offset
            if max_rows:
                take = min(take, max_rows - file.rows)
            piece = batch.slice(offset, take)
            writer.write_batch(piece)
            file.rows += take
            offset += take
            progress.add(take, piece.nbytes)
    if writer is not None:
        writer.close()
