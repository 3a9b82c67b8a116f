"""Reading S3 objects as streams: which objects, their bytes in chunks, lines, and a seekable
file for parquet (whose footer comes first in reading order) made of ranged GETs.

Every read is pinned to the ETag the object had when it was listed (``IfMatch``): an object
replaced while it is read fails with :class:`ObjectChanged` instead of being read half old, half
new. A compressed object must reach the end of its gzip member or zstd frame, and a parquet
object must have its footer, or the read fails naming the object: a copy cut short is not
taken for a whole one.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from ferry.transfers.compression import Compression, CorruptInput, TruncatedInput, decompressor
from ferry.transfers.failures import SourceChanged

#: Bytes per read from an S3 body, and per ranged GET of a parquet file.
CHUNK = 8 * 1024 * 1024


class S3Object(NamedTuple):
    """One object as planned; its ETag pins every later GET to this very version.

    ``etag`` is None only if the server's listing gave none (S3 always does): reads are then
    not pinned.
    """

    key: str
    size: int
    etag: str | None


class ObjectChanged(SourceChanged, ValueError):
    """The object was replaced (or rewritten) after it was listed: its ETag no longer matches."""


def objects(client: Any, bucket: str, key: str) -> list[S3Object]:
    """One object, or every object under ``key`` if it ends in ``/``, with its size and ETag.

    Raises FileNotFoundError, naming what is missing, before any data moves.
    """
    if not key.endswith("/"):
        from botocore.exceptions import ClientError

        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            raise FileNotFoundError(f"s3://{bucket}/{key} cannot be read: {exc}") from exc
        return [S3Object(key, head["ContentLength"], head.get("ETag"))]
    found = [
        S3Object(item["Key"], item["Size"], item.get("ETag"))
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
        for item in page.get("Contents", [])
        if not item["Key"].endswith("/")  # "folder" markers
    ]
    if not found:
        raise FileNotFoundError(f"no objects under s3://{bucket}/{key}")
    return found


def pinned_get(client: Any, bucket: str, key: str, etag: str | None, **kwargs: Any) -> dict[str, Any]:
    """``get_object`` pinned to ``etag`` (None: unpinned); ObjectChanged if it is not that version.

    The server refuses a GET whose ``If-Match`` fails (412); the ETag of the response is checked
    as well, for a server that ignores ``If-Match``.
    """
    from botocore.exceptions import ClientError

    pin = {"IfMatch": etag} if etag else {}
    try:
        response = client.get_object(Bucket=bucket, Key=key, **pin, **kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if etag and (error.get("Code") == "PreconditionFailed" or status == 412):
            raise _changed(bucket, key, etag) from exc
        raise
    if etag and response.get("ETag", "").strip('"') != etag.strip('"'):
        response["Body"].close()
        raise _changed(bucket, key, etag)
    return response


def _changed(bucket: str, key: str, etag: str) -> ObjectChanged:
    return ObjectChanged(f"s3://{bucket}/{key} changed while it was read (its ETag is no longer {etag}); "
                         "rerun once its writer is done")


def chunks(client: Any, bucket: str, key: str, compression: Compression = None, *,
           etag: str | None) -> Iterator[bytes]:
    """The object's bytes, decompressed, in chunks of about :data:`CHUNK`.

    After the last chunk the decompressor must be at the end of a gzip member or zstd frame: a
    stream cut short (TruncatedInput) or damaged (CorruptInput) fails, naming the object and
    the byte offset in it, before the caller sees the end of the data.
    """
    unpack = decompressor(compression)
    body = pinned_get(client, bucket, key, etag)["Body"]
    try:
        for chunk in body.iter_chunks(CHUNK):
            if data := unpack.decompress(chunk):
                yield data
        unpack.finish()
    except TruncatedInput as exc:
        raise TruncatedInput(f"s3://{bucket}/{key} is truncated: {exc}") from exc
    except CorruptInput as exc:
        raise CorruptInput(f"s3://{bucket}/{key} is corrupt: {exc}") from exc
    finally:
        body.close()


#: Ranged GETs in flight per object read by :func:`ranged_chunks`.
RANGES_IN_FLIGHT = 4


def ranged_chunks(client: Any, bucket: str, key: str, size: int, *, etag: str | None,
                  in_flight: int = RANGES_IN_FLIGHT, chunk: int = CHUNK) -> Iterator[bytes]:
    """The object's ``size`` bytes, in order, read as ranged GETs of ``chunk`` bytes,
    ``in_flight`` of them at a time in threads, each pinned to ``etag``.

    Why not one GET: a single response is read only as fast as its consumer writes, and its
    server keeps the connection's send buffer full the whole time. Measured on the stack
    (bench/RESULTS.md, issue 21), SeaweedFS spent 3.3 CPU-seconds serving a 600 MiB object as one
    GET to S3ToSFTP, and 1.7 serving it as 8 MiB ranges, on two cores where its CPU is the
    transfer's; on AWS each S3 connection is limited to tens of MB/s, and parallel ranges are how
    boto3's ``download_fileobj`` (8 MiB, 10 threads) goes faster. Memory: ``in_flight + 1`` chunks.

    A range that comes back short (or whole: a server that ignored ``Range``) is
    :class:`TruncatedInput`; an object replaced between two ranges fails the next one with
    :class:`ObjectChanged` (every GET carries ``If-Match``: the listed ETag, or without one the
    ETag a HEAD gives first).
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    if etag is None and size:  # unpinned ranges could mix two versions: pin them all to one
        etag = client.head_object(Bucket=bucket, Key=key).get("ETag")

    def get(start: int) -> bytes:
        end = min(start + chunk, size) - 1
        response = pinned_get(client, bucket, key, etag, Range=f"bytes={start}-{end}")
        body, length = response["Body"], response.get("ContentLength")
        try:
            # A server that ignored Range announces the whole object: refused before it is read.
            data = body.read() if length is None or length == end - start + 1 else b""
        finally:
            body.close()
        if len(data) != end - start + 1:
            got = f"{length:,} bytes announced" if length is not None and not data else f"{len(data)} bytes"
            raise TruncatedInput(f"s3://{bucket}/{key} is truncated: bytes {start}-{end} of {size} returned {got}")
        return data

    starts = iter(range(0, size, chunk))
    pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="s3-range")
    pending: list[Future[bytes]] = []
    try:
        pending = [pool.submit(get, start) for start in itertools.islice(starts, in_flight)]
        while pending:
            data = pending.pop(0).result()
            pending += [pool.submit(get, start) for start in itertools.islice(starts, 1)]
            yield data
    finally:
        # The consumer failed or stopped early: no new GET starts; running ones end on their own.
        pool.shutdown(wait=False, cancel_futures=True)


def lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines (without the newline) from blocks that split them anywhere; skips empty lines.

    Linear in the input, however long a line: the pieces of an unfinished line are kept in a
    list and joined once, when its newline arrives.

    A last line without a newline is yielded too: many writers omit the final newline. Whether
    it is whole is for the caller to tell from its content (a JSON document cut short does not
    parse); a compressed object cut short already failed in :func:`chunks`.
    """
    pending: list[bytes] = []  # pieces of the line that has not ended yet
    for block in blocks:
        parts = block.split(b"\n")
        if len(parts) == 1:
            pending.append(block)
            continue
        if pending:
            pending.append(parts[0])
            parts[0] = b"".join(pending)
            pending = []
        if last := parts.pop():
            pending.append(last)
        yield from (line for line in parts if line.strip())
    if (rest := b"".join(pending)).strip():
        yield rest


class RangedObject(io.RawIOBase):
    """A read-only, seekable file over one S3 object: each read is a ranged GET.

    pyarrow reads a parquet file's footer first, then one row group at a time; wrapped in an
    ``io.BufferedReader`` of :data:`CHUNK` bytes, that is a handful of requests per row group
    and never the whole object in memory. Each GET is pinned to ``etag``, so ``size`` (from the
    same listing) stays true and the row groups all come from one version of the object.
    """

    def __init__(self, client: Any, bucket: str, key: str, size: int, etag: str | None = None) -> None:
        self.client, self.bucket, self.key, self.size, self.etag = client, bucket, key, size, etag
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
        body = pinned_get(self.client, self.bucket, self.key, self.etag, Range=f"bytes={self.position}-{end}")["Body"]
        data = body.read()
        if len(data) != wanted:
            raise TruncatedInput(f"s3://{self.bucket}/{self.key} is truncated: bytes {self.position}-{end} "
                                 f"of {self.size} returned {len(data)} bytes")
        buffer[:wanted] = data
        self.position += wanted
        return wanted


def open_ranged(client: Any, bucket: str, key: str, size: int, *, etag: str | None) -> io.BufferedReader:
    return io.BufferedReader(RangedObject(client, bucket, key, size, etag), buffer_size=CHUNK)


@contextmanager
def parquet_file(client: Any, bucket: str, key: str, size: int, *, etag: str | None) -> Iterator[Any]:
    """A ``pyarrow.parquet.ParquetFile`` over the object, read by ranged GETs pinned to ``etag``.

    A parquet file ends with its footer; an object cut short has none, and pyarrow's complaint
    ("magic bytes not found in footer") becomes a ValueError naming the object.
    """
    from ferry.extras import require

    require("parquet", "reading parquet", "pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open_ranged(client, bucket, key, size, etag=etag) as file:
        try:
            parquet = pq.ParquetFile(file)
        except pa.ArrowException as exc:
            raise CorruptInput(f"s3://{bucket}/{key} is not a whole parquet file ({size} bytes, "
                               f"{' '.join(str(exc).split())})") from exc
        yield parquet
