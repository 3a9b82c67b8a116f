"""Stream compressors (``compress(chunk)``, ``flush()``) and decompressors (``decompress(chunk)``,
then ``finish()``, which proves the stream was whole)."""

from __future__ import annotations

import zlib
from typing import Any, Literal, Protocol

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

    def finish(self) -> None:
        """Uncompressed input has no end marker: a short object is told only by its content."""


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


class CorruptInput(ValueError):
    """A compressed stream that is not what it claims: a bad checksum, bad data, garbage after it.

    A ValueError, so an operator reports it as bad input in one line; the message says where.
    """


class TruncatedInput(CorruptInput):
    """A compressed stream that stopped before its end: a gzip member without its trailer (CRC and
    length), a zstd frame without its last block. A copy cut off at a line boundary decompresses
    to good-looking rows; only this check tells it from a whole file.
    """


class Decompressor(Protocol):
    def decompress(self, data: bytes) -> bytes:
        """The bytes ``data`` (the next piece of the stream) decompress to; CorruptInput if bad."""
        ...

    def finish(self) -> None:
        """Raise TruncatedInput unless the stream so far ended where a member or frame ends."""
        ...


class _Gzip:
    """gzip, including files of several concatenated members (what ``cat a.gz b.gz`` makes).

    zlib checks each member's CRC-32 and length against its trailer; ``finish`` checks that the
    last member reached its trailer. Bytes after a member that do not start another member are
    an error (gzip(1) warns and exits 2; they are not data we can load).
    """

    def __init__(self) -> None:
        self._obj = zlib.decompressobj(wbits=31)
        self._read = 0  # compressed bytes consumed, for the messages

    def decompress(self, data: bytes) -> bytes:
        start, self._read = self._read, self._read + len(data)
        try:
            out = [self._obj.decompress(data)]
            while self._obj.eof and self._obj.unused_data:
                rest = self._obj.unused_data
                self._obj = zlib.decompressobj(wbits=31)
                out.append(self._obj.decompress(rest))
        except zlib.error as exc:
            raise CorruptInput(f"the gzip stream is not valid gzip in bytes {start}-{self._read} ({exc})") from exc
        return b"".join(out)

    def finish(self) -> None:
        if not self._obj.eof:
            raise TruncatedInput(f"the gzip stream ends at byte {self._read} without its trailer")


class _ZstdReader:
    """zstd, one or more frames (what ``cat a.zst b.zst`` or a multi-frame writer makes).

    One decompressobj per frame: with ``read_across_frames=True`` zstandard never reports the end
    of a frame, so a stream cut short would look whole. ``finish`` checks that the last frame
    ended; garbage after a frame is not a frame header, which zstd reports as an error.
    """

    def __init__(self) -> None:
        import zstandard

        self._zstd = zstandard
        self._obj: Any = None  # None: between frames
        self._frames = 0
        self._read = 0

    def decompress(self, data: bytes) -> bytes:
        start, self._read = self._read, self._read + len(data)
        out = []
        try:
            while data:
                if self._obj is None:
                    self._obj = self._zstd.ZstdDecompressor().decompressobj(read_across_frames=False)
                out.append(self._obj.decompress(data))
                data = b""
                if self._obj.eof:  # a decompressobj takes no input after its frame: start the next
                    data, self._obj = self._obj.unused_data, None
                    self._frames += 1
        except self._zstd.ZstdError as exc:
            raise CorruptInput(f"the zstd stream is not valid zstd in bytes {start}-{self._read} ({exc})") from exc
        return b"".join(out)

    def finish(self) -> None:
        if self._obj is not None or not self._frames:
            raise TruncatedInput(f"the zstd stream ends at byte {self._read} without the end of its frame")


def decompressor(kind: Compression) -> Decompressor:
    """A fresh decompressor for one stream; call ``finish()`` after its last byte."""
    if kind is None:
        return _Identity()
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
