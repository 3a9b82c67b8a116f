"""Stream compressors with one interface: ``compress(chunk) -> bytes`` and ``flush() -> bytes``."""

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
