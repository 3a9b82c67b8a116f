"""``ranged_chunks``: an object read as parallel ranged GETs, against the test stack's S3.

The bytes come back whole and in order whatever the size and the number in flight; an object
replaced between two ranges, or shorter than its listing said, fails instead of being read.
"""

from __future__ import annotations

import os

import pytest

from ferry.transfers.compression import TruncatedInput
from ferry.transfers.s3_source import ObjectChanged, ranged_chunks

pytestmark = pytest.mark.integration

CHUNK = 1000


def etag(s3, bucket: str, key: str) -> str:
    return s3.head_object(Bucket=bucket, Key=key)["ETag"]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 3])
@pytest.mark.parametrize("in_flight", [1, 3])
def test_every_byte_in_order(s3, bucket, size, in_flight):
    body = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="obj", Body=body)
    chunks = list(ranged_chunks(s3, bucket, "obj", size, etag=etag(s3, bucket, "obj"), in_flight=in_flight,
                                chunk=CHUNK))
    assert b"".join(chunks) == body
    assert [len(c) for c in chunks] == [min(CHUNK, size - start) for start in range(0, size, CHUNK)]


def test_an_object_replaced_between_ranges_fails(s3, bucket):
    s3.put_object(Bucket=bucket, Key="obj", Body=b"a" * 6 * CHUNK)
    reading = ranged_chunks(s3, bucket, "obj", 6 * CHUNK, etag=etag(s3, bucket, "obj"), in_flight=1, chunk=CHUNK)
    assert next(reading) == b"a" * CHUNK
    s3.put_object(Bucket=bucket, Key="obj", Body=b"b" * 6 * CHUNK)
    with pytest.raises(ObjectChanged, match=f"s3://{bucket}/obj changed while it was read"):
        for chunk in reading:
            assert chunk == b"a" * CHUNK  # a range fetched before the replacement, never a mixture


def test_an_object_shorter_than_listed_is_truncated_input(s3, bucket):
    s3.put_object(Bucket=bucket, Key="obj", Body=b"x" * (2 * CHUNK + 10))
    with pytest.raises(TruncatedInput, match=r"bytes 2000-2999 of 3000 returned 10 bytes"):
        list(ranged_chunks(s3, bucket, "obj", 3 * CHUNK, etag=etag(s3, bucket, "obj"), chunk=CHUNK))


def test_a_consumer_that_stops_early_stops_the_reads(s3, bucket):
    s3.put_object(Bucket=bucket, Key="obj", Body=os.urandom(50 * CHUNK))
    reading = ranged_chunks(s3, bucket, "obj", 50 * CHUNK, etag=etag(s3, bucket, "obj"), chunk=CHUNK)
    next(reading)
    reading.close()  # returns at once; the pool takes no new range
    with pytest.raises(StopIteration):
        next(reading)
