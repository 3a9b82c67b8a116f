"""Stream compressors (``compress(chunk)``, ``flush()``) and decompressors (``decompress(chunk)``)."""

from __future__ import annotations

import zlib
from typing import Literal, Protocol

Compression = Literal["gzip", "zstd"] | None

EXTENSIONS = {None: "", "gzip": ".gz", "zstd": ".zst"}


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def decompress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Zstd:
    def __init__(self, level: int) -> None:
        import zstandard

        self._obj = zstandard.ZstdCompressor(level=level).compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


def compressor(kind: Compression) -> Compressor:
    """A fresh compressor; one per output file, so each file decompresses on its own."""
    if kind is None:
        return _Identity()
    if kind == "gzip":
        # wbits=31: a gzip container, readable by gunzip, pandas, Spark and Athena. Level 6 is
        # gzip's own default.
        return zlib.compressobj(6, zlib.DEFLATED, 31)
    if kind == "zstd":
        return _Zstd(level=3)
    raise ValueError(f"compression must be None, 'gzip' or 'zstd', not {kind!r}")


class Decompressor(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


class _Gzip:
    """gzip, including files of several concatenated members (what ``cat a.gz b.gz`` makes)."""

    def __init__(self) -> None:
        self._obj = zlib.decompressobj(wbits=31)

    def decompress(self, data: bytes) -> bytes:
        out = [self._obj.decompress(data)]
        while self._obj.eof and self._obj.unused_data:
            rest = self._obj.unused_data
            self._obj = zlib.decompressobj(wbits=31)
            out.append(self._obj.decompress(rest))
        return b"".join(out)


class _ZstdReader:
    def __init__(self) -> None:
        import zstandard

        self._obj = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)

    def decompress(self, data: bytes) -> bytes:
        return self._obj.decompress(data)


def decompressor(kind: Compression) -> Decompressor:
    if kind is None:
        return _Identity()  # type: ignore[return-value]
    if kind == "gzip":
        return _Gzip()
    if kind == "zstd":
        return _ZstdReader()
    raise ValueError(f"compression must be None, 'gzip' or 'zstd', not {kind!r}")


def infer_compression(key: str) -> Compression:
    """From a file name's extension: ``.gz`` → gzip, ``.zst`` → zstd, anything else → None."""
    for kind, extension in EXTENSIONS.items():
        if kind and key.endswith(extension):
            return kind
    return None
