"""Reading S3 objects as streams: which objects, their bytes in chunks, lines, and a seekable
file for parquet (whose footer comes first in reading order) made of ranged GETs."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

from ferry.transfers.compression import Compression, decompressor

#: Bytes per read from an S3 body, and per ranged GET of a parquet file.
CHUNK = 8 * 1024 * 1024


def objects(client: Any, bucket: str, key: str) -> list[tuple[str, int]]:
    """``(key, size)`` of one object, or of every object under ``key`` if it ends in ``/``.

    Raises FileNotFoundError, naming what is missing, before any data moves.
    """
    if not key.endswith("/"):
        from botocore.exceptions import ClientError

        try:
            return [(key, client.head_object(Bucket=bucket, Key=key)["ContentLength"])]
        except ClientError as exc:
            raise FileNotFoundError(f"s3://{bucket}/{key} cannot be read: {exc}") from exc
    found = [
        (item["Key"], item["Size"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
        for item in page.get("Contents", [])
        if not item["Key"].endswith("/")  # "folder" markers
    ]
    if not found:
        raise FileNotFoundError(f"no objects under s3://{bucket}/{key}")
    return found


def chunks(client: Any, bucket: str, key: str, compression: Compression = None) -> Iterator[bytes]:
    """The object's bytes, decompressed, in chunks of about :data:`CHUNK`."""
    unpack = decompressor(compression)
    for chunk in client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(CHUNK):
        if data := unpack.decompress(chunk):
            yield data


def lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines (without the newline) from blocks that split them anywhere; skips empty lines."""
    rest = b""
    for block in blocks:
        parts = (rest + block).split(b"\n")
        rest = parts.pop()
        yield from (line for line in parts if line.strip())
    if rest.strip():
        yield rest


class RangedObject(io.RawIOBase):
    """A read-only, seekable file over one S3 object: each read is a ranged GET.

    pyarrow reads a parquet file's footer first, then one row group at a time; wrapped in an
    ``io.BufferedReader`` of :data:`CHUNK` bytes, that is a handful of requests per row group
    and never the whole object in memory.
    """

    def __init__(self, client: Any, bucket: str, key: str, size: int) -> None:
        self.client, self.bucket, self.key, self.size = client, bucket, key, size
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self.size - self.position)
        if wanted <= 0:
            return 0
        end = self.position + wanted - 1
        body = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self.position}-{end}")["Body"]
        data = body.read()
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def open_ranged(client: Any, bucket: str, key: str, size: int) -> io.BufferedReader:
    return io.BufferedReader(RangedObject(client, bucket, key, size), buffer_size=CHUNK)
