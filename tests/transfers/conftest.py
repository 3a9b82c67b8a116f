"""Fixtures for the transfer tests: a fresh bucket per test and a table of awkward values."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

AWKWARD_DDL = """
DROP TABLE IF EXISTS awkward;
CREATE TABLE awkward (
    id int, t text, n numeric(38,10), ts timestamptz, arr int[], j jsonb, b bytea,
    f float8, d date, flag bool, tags text[]
);
INSERT INTO awkward VALUES
 (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (2, '', 1234567890123456789012345678.0123456789, '2019-12-07 10:00:00+02', '{1,2,3}',
  '{"a": "x\\"y\\\\z", "n": [1, null]}', '\\x00ff'::bytea, 1.5, '2019-12-07', true, '{"a,b","c\\"d"}'),
 (3, E'quote " comma , newline \\n tab \\t backslash \\\\ unicode é 漢字 😀', -0.0000000001,
  '1970-01-01 00:00:00+00', '{}', 'null', '', 'NaN', '2015-04-05', false, '{}');
"""


@pytest.fixture
def s3(stack):
    import boto3

    return boto3.client("s3")


@pytest.fixture
def bucket(s3) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return name


@pytest.fixture(scope="session")
def pg_tables(stack) -> None:
    """The awkward table and a 20,000-row table in inside_airbnb, made once per session."""
    with stack.service("postgres").connect("inside_airbnb", autocommit=True) as conn:
        conn.execute(AWKWARD_DDL)
        conn.execute("""
            DROP TABLE IF EXISTS numbers;
            CREATE TABLE numbers AS
            SELECT g AS id, md5(g::text) AS word, (g * 1.5)::numeric(12,2) AS amount,
                   timestamptz '2019-01-01 00:00:00+00' + g * interval '1 minute' AS at
            FROM generate_series(1, 20000) AS g;
        """)


@pytest.fixture
def pg(stack, pg_tables):
    """A psycopg connection to inside_airbnb, new for each test (a crash test kills the server)."""
    conn = stack.service("postgres").connect("inside_airbnb", autocommit=True)
    yield conn
    conn.close()


def get_body(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def keys(s3, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def open_uploads(s3, bucket: str) -> list[str]:
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def on_operator_s3_calls(monkeypatch, *handlers: tuple[str, Callable[..., None]]) -> None:
    """Register botocore event handlers on each S3 client the operators' ``S3Hook`` makes.

    For fault injection at an exact moment (an object replaced before a GET, a server killed
    before a call); the client and the server stay the real ones.
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    real_get_conn = S3Hook.get_conn

    def get_conn(self):
        client = real_get_conn(self)
        for event, handler in handlers:
            client.meta.events.register(event, handler)
        return client

    monkeypatch.setattr(S3Hook, "get_conn", get_conn)
