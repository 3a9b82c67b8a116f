"""Decompressors prove their input was whole, and ``lines()`` splits any stream linearly.

Unit tests, no server: a stream cut short (at a line boundary too, where it decompresses to
good-looking rows) or damaged must fail; concatenated gzip members and zstd frames must not.
"""

from __future__ import annotations

import gzip
import zlib

import pytest
import zstandard

from ferry.transfers.compression import CorruptInput, TruncatedInput, decompressor
from ferry.transfers.s3_source import lines

ROWS = b"".join(b"%d,row number %d\n" % (i, i) for i in range(20_000))


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zstd_bytes(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(data)


def unpack(kind: str | None, data: bytes, piece: int = 4096) -> bytes:
    """Decompress ``data`` fed in pieces (as S3 chunks arrive), then check its end."""
    d = decompressor(kind)
    out = b"".join(d.decompress(data[i:i + piece]) for i in range(0, len(data), piece))
    d.finish()
    return out


def cut_at_line_boundary(kind: str) -> bytes:
    """A stream that stops after whole lines: what a producer killed after a flush leaves behind."""
    if kind == "gzip":
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        return c.compress(ROWS[:50_000]) + c.flush(zlib.Z_SYNC_FLUSH)
    c = zstandard.ZstdCompressor(level=3).compressobj()
    return c.compress(ROWS[:50_000]) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


@pytest.mark.parametrize("kind,pack", [("gzip", gzip_bytes), ("zstd", zstd_bytes)])
def test_whole_streams_decompress(kind, pack):
    assert unpack(kind, pack(ROWS)) == ROWS
    assert unpack(kind, pack(ROWS), piece=1) == ROWS


@pytest.mark.parametrize("kind,pack", [("gzip", gzip_bytes), ("zstd", zstd_bytes)])
def test_concatenated_members_and_frames_decompress(kind, pack):
    # What `cat a.gz b.gz` (or a writer that starts a new frame per part) makes; pieces of 7
    # bytes split headers and trailers across reads.
    data = pack(ROWS[:1000]) + pack(b"") + pack(ROWS[1000:])
    assert unpack(kind, data) == ROWS
    assert unpack(kind, data, piece=7) == ROWS


@pytest.mark.parametrize("kind,pack", [("gzip", gzip_bytes), ("zstd", zstd_bytes)])
@pytest.mark.parametrize("cut", [0, 1, 10, 100, 0.5, -9, -1])
def test_a_stream_cut_short_fails(kind, pack, cut):
    data = pack(ROWS)
    end = int(len(data) * cut) if isinstance(cut, float) else cut % len(data)
    with pytest.raises(TruncatedInput, match=f"the {kind} stream ends at byte {end} without"):
        unpack(kind, data[:end])


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_a_stream_cut_at_a_line_boundary_fails(kind):
    # The hostile case: everything before the cut decompresses to whole rows.
    data = cut_at_line_boundary(kind)
    d = decompressor(kind)
    assert d.decompress(data) == ROWS[:50_000]
    with pytest.raises(TruncatedInput, match=f"ends at byte {len(data)} without"):
        d.finish()


def test_a_gzip_without_only_its_trailer_fails():
    data = gzip_bytes(ROWS)[:-8]  # CRC-32 and length missing; every data byte is there
    d = decompressor("gzip")
    assert d.decompress(data) == ROWS
    with pytest.raises(TruncatedInput, match="without its trailer"):
        d.finish()


def test_a_second_member_cut_short_fails():
    data = gzip_bytes(ROWS[:1000]) + gzip_bytes(ROWS[1000:])[:-3]
    with pytest.raises(TruncatedInput):
        unpack("gzip", data)


@pytest.mark.parametrize("kind,pack,where", [("gzip", gzip_bytes, -6), ("zstd", zstd_bytes, len(zstd_bytes(b"")))])
def test_corrupted_data_fails(kind, pack, where):
    """gzip: a flipped bit in the CRC-32 of the trailer; zstd: one in the compressed data."""
    if kind == "zstd":
        pack = zstandard.ZstdCompressor(level=3, write_checksum=True).compress
    data = bytearray(pack(ROWS))
    data[where] ^= 0x01
    with pytest.raises(CorruptInput, match=f"the {kind} stream is not valid {kind} in bytes"):
        unpack(kind, bytes(data))


@pytest.mark.parametrize("kind,pack", [("gzip", gzip_bytes), ("zstd", zstd_bytes)])
def test_garbage_after_the_stream_fails(kind, pack):
    with pytest.raises(CorruptInput):
        unpack(kind, pack(ROWS) + b"this is not a header of anything")


def test_uncompressed_input_has_no_end_to_check():
    assert unpack(None, ROWS[:1234]) == ROWS[:1234]


def test_lines_joins_a_long_line_from_many_blocks():
    # 50 MB on one line in 64 KiB blocks: rest + block per block would copy ~20 GB.
    line = bytes(range(256)).replace(b"\n", b"") * (50 * 1024 * 1024 // 255)
    data = b"first\n" + line + b"\nlast"
    blocks = (data[i:i + 65536] for i in range(0, len(data), 65536))
    got = list(lines(blocks))
    assert len(got) == 3 and got[0] == b"first" and got[1] == line and got[2] == b"last"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64])
def test_lines_wherever_blocks_split(size):
    data = b"a\n\nbb\r\n  \nccc\n" * 7 + b"dd"
    blocks = [data[i:i + size] for i in range(0, len(data), size)]
    assert list(lines(blocks)) == [b"a", b"bb\r", b"ccc"] * 7 + [b"dd"]


def test_a_last_line_without_newline_is_yielded_and_empty_lines_are_not():
    # The rule: many writers omit the final newline, so the last line counts; whether it is
    # whole is the caller's to tell (JSON cut short does not parse).
    assert list(lines([b'{"id": 1}\n{"id": 2}'])) == [b'{"id": 1}', b'{"id": 2}']
    assert list(lines([b'{"id": 1}\n', b"\n", b""])) == [b'{"id": 1}']
    assert list(lines([])) == []
