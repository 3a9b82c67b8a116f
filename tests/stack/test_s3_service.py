"""The stack's S3 (SeaweedFS): what ferry relies on, who gets in, and where it differs from AWS."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
import urllib.request

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from ferry.stack.s3 import SAMPLE_BUCKET
from ferry.stack.s3_migration import migrate_moto_snapshot
from tests.conftest import empty_bucket

pytestmark = pytest.mark.integration

BUCKET = "s3-behaviour"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3(stack):
    client = stack.service("s3").client()
    if BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    empty_bucket(client, BUCKET)
    return client


def client_with(stack, **kwargs):
    return boto3.client("s3", endpoint_url=stack.settings.url("s3"), region_name="eu-west-1",
                        config=Config(retries={"max_attempts": 1}, **kwargs.pop("config", {})), **kwargs)


def test_only_the_generated_key_pair_gets_in(stack, s3):
    s3.put_object(Bucket=BUCKET, Key="secret.txt", Body=b"private")
    creds = stack.settings.credentials
    wrong_secret = client_with(stack, aws_access_key_id=creds.aws_access_key_id, aws_secret_access_key="guess")
    unknown_key = client_with(stack, aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key=creds.aws_secret_access_key)
    anonymous = client_with(stack, config={"signature_version": botocore.UNSIGNED})
    for client, codes in ((wrong_secret, {"SignatureDoesNotMatch"}), (unknown_key, {"InvalidAccessKeyId"}),
                          (anonymous, {"AccessDenied"})):
        for call in (lambda c: c.get_object(Bucket=BUCKET, Key="secret.txt"),
                     lambda c: c.list_objects_v2(Bucket=BUCKET),
                     lambda c: c.put_object(Bucket=BUCKET, Key="planted.txt", Body=b"x")):
            with pytest.raises(ClientError) as refused:
                call(client)
            assert refused.value.response["Error"]["Code"] in codes
    assert "planted.txt" not in [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]


def test_seaweedfs_own_http_apis_refuse_unsigned_requests(stack, s3):
    """The filer and volume server would serve any object without a signature; JWTs close that."""
    s3.put_object(Bucket=BUCKET, Key="behind-the-gateway.txt", Body=b"private")
    filer = f"http://127.0.0.1:{stack.settings.ports['s3-filer']}/buckets/{BUCKET}/behind-the-gateway.txt"
    for request in (urllib.request.Request(filer), urllib.request.Request(filer, data=b"planted", method="PUT")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
    assert s3.get_object(Bucket=BUCKET, Key="behind-the-gateway.txt")["Body"].read() == b"private"


def test_multipart_complete_abort_and_list(s3):
    parts = [b"a" * (5 * MiB), b"b" * (5 * MiB), b"tail"]
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="multi/object", ContentType="text/csv")["UploadId"]
    etags = [s3.upload_part(Bucket=BUCKET, Key="multi/object", UploadId=upload, PartNumber=n, Body=body)["ETag"]
             for n, body in enumerate(parts, 1)]
    listed = s3.list_multipart_uploads(Bucket=BUCKET, Prefix="multi/")["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == [("multi/object", upload)]
    listed_parts = s3.list_parts(Bucket=BUCKET, Key="multi/object", UploadId=upload)["Parts"]
    assert [p["PartNumber"] for p in listed_parts] == [1, 2, 3]
    with pytest.raises(ClientError):  # not visible before completion
        s3.head_object(Bucket=BUCKET, Key="multi/object")
    s3.complete_multipart_upload(Bucket=BUCKET, Key="multi/object", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    head = s3.head_object(Bucket=BUCKET, Key="multi/object")
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    assert head["ETag"] == f'"{digest}-3"'  # AWS's multipart ETag
    assert head["ContentLength"] == sum(map(len, parts)) and head["ContentType"] == "text/csv"
    assert s3.get_object(Bucket=BUCKET, Key="multi/object")["Body"].read() == b"".join(parts)

    aborted = s3.create_multipart_upload(Bucket=BUCKET, Key="multi/aborted")["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key="multi/aborted", UploadId=aborted, PartNumber=1, Body=b"x" * MiB)
    s3.abort_multipart_upload(Bucket=BUCKET, Key="multi/aborted", UploadId=aborted)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET, Prefix="multi/")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key="multi/aborted")


def test_etag_copy_ranged_get_type_and_metadata(s3):
    body = bytes(range(256)) * 4096
    put = s3.put_object(Bucket=BUCKET, Key="plain/one.bin", Body=body, ContentType="application/x-test",
                        Metadata={"origin": "ferry", "rows": "42"})
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    s3.copy_object(Bucket=BUCKET, Key="plain/copy.bin", CopySource={"Bucket": BUCKET, "Key": "plain/one.bin"})
    copy = s3.get_object(Bucket=BUCKET, Key="plain/copy.bin")
    assert copy["Body"].read() == body
    assert copy["ContentType"] == "application/x-test" and copy["Metadata"] == {"origin": "ferry", "rows": "42"}
    ranged = s3.get_object(Bucket=BUCKET, Key="plain/one.bin", Range="bytes=1000-1999")
    assert ranged["Body"].read() == body[1000:2000] and ranged["ContentRange"] == f"bytes 1000-1999/{len(body)}"


def test_listing_with_prefixes_delimiters_and_pages(s3):
    keys = ["list/a.csv", "list/b/1.csv", "list/b/2.csv", "list/c/d/3.csv", "list/key with spaces & ü.csv"]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    top = s3.list_objects_v2(Bucket=BUCKET, Prefix="list/", Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["list/a.csv", "list/key with spaces & ü.csv"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["list/b/", "list/c/"]
    paginator = s3.get_paginator("list_objects_v2")
    pages = list(paginator.paginate(Bucket=BUCKET, Prefix="list/", PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3 and [o["Key"] for p in pages for o in p["Contents"]] == sorted(keys)


def test_sample_bucket_holds_the_digits_data(s3):
    from ferry.digits.sample_data import SAMPLE_KEY

    assert s3.head_object(Bucket=SAMPLE_BUCKET, Key=SAMPLE_KEY)["ContentLength"] > 1_000_000


def test_differs_from_aws_bucket_location_is_not_kept(s3):
    """SeaweedFS accepts CreateBucketConfiguration but keeps no region: GetBucketLocation answers
    no constraint (AWS would say eu-west-1). Nothing in ferry reads a bucket's location."""
    assert s3.get_bucket_location(Bucket=BUCKET).get("LocationConstraint") in (None, "")


def test_sse_s3_objects_are_written_and_still_readable_after_a_restart(stack, s3):
    """ServerSideEncryption=AES256 as AWS takes it (the SageMaker SDK and many users set it), on
    one PUT and on a multipart upload; the key-encryption key outlives restarts."""
    from boto3.s3.transfer import TransferConfig

    body = bytes(range(256)) * 40_000  # ~10 MB: three parts at 4 MiB
    answer = s3.put_object(Bucket=BUCKET, Key="sse/one", Body=b"secret", ServerSideEncryption="AES256")
    assert answer["ServerSideEncryption"] == "AES256"
    s3.upload_fileobj(io.BytesIO(body), BUCKET, "sse/parts", ExtraArgs={"ServerSideEncryption": "AES256"},
                      Config=TransferConfig(multipart_threshold=4 * MiB, multipart_chunksize=4 * MiB))
    stack.service("s3").stop()
    stack.up(["s3"], echo=lambda line: None)
    assert s3.get_object(Bucket=BUCKET, Key="sse/one")["Body"].read() == b"secret"
    got = s3.get_object(Bucket=BUCKET, Key="sse/parts")
    assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == body


@pytest.mark.parametrize("key_id", ["alias/aws/s3", "alias/ferry", "KEY_ID", "KEY_ARN"])
def test_sse_kms_objects_are_written_under_the_stack_key(s3, key_id):
    """aws:kms with a key named as users name it: AWS's managed key for S3, an alias, the key
    id, its ARN. The answer names the key's ARN, as AWS's does."""
    from ferry.sagemaker.kms import KEY_ID, key_arn

    key_id = {"KEY_ID": KEY_ID, "KEY_ARN": key_arn("eu-west-1")}.get(key_id, key_id)
    answer = s3.put_object(Bucket=BUCKET, Key="kms/one", Body=b"secret", ServerSideEncryption="aws:kms",
                           SSEKMSKeyId=key_id)
    assert (answer["ServerSideEncryption"], answer["SSEKMSKeyId"]) == ("aws:kms", key_arn("eu-west-1"))
    got = s3.get_object(Bucket=BUCKET, Key="kms/one")
    assert got["ServerSideEncryption"] == "aws:kms" and got["Body"].read() == b"secret"


def test_sse_kms_objects_are_still_readable_after_s3_and_kms_restart(stack, s3):
    """The data keys are wrapped by the control plane's KMS, whose key is the stack's secret:
    after both servers restart (no key cached anywhere), single and multipart objects read back."""
    from boto3.s3.transfer import TransferConfig

    body = bytes(range(256)) * 40_000
    s3.put_object(Bucket=BUCKET, Key="kms/restart", Body=b"kept", ServerSideEncryption="aws:kms",
                  SSEKMSKeyId="alias/aws/s3")
    s3.upload_fileobj(io.BytesIO(body), BUCKET, "kms/parts",
                      ExtraArgs={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/aws/s3"},
                      Config=TransferConfig(multipart_threshold=4 * MiB, multipart_chunksize=4 * MiB))
    for service in ("s3", "sagemaker"):
        stack.service(service).stop()
    stack.up(["s3", "sagemaker"], echo=lambda line: None)
    assert s3.get_object(Bucket=BUCKET, Key="kms/restart")["Body"].read() == b"kept"
    got = s3.get_object(Bucket=BUCKET, Key="kms/parts")
    assert got["ServerSideEncryption"] == "aws:kms" and got["Body"].read() == body


def test_differs_from_aws_sse_kms_needs_a_key_id(s3):
    """AWS takes aws:kms with no key id as its managed key for S3; SeaweedFS refuses it with a 500
    ("key ID must be non-empty"), and nothing is written. The SageMaker SDK, which sends it so,
    gets the key named by the stack's SDK config (ferry.stack.environment.write_sdk_config). The
    README lists this."""
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=BUCKET, Key="sse/kms", Body=b"x", ServerSideEncryption="aws:kms")
    assert refused.value.response["Error"]["Code"] == "InternalError"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key="sse/kms")


def test_moto_snapshot_is_migrated_once(stack, s3, tmp_path):
    snapshot = tmp_path / "s3"
    bucket_dir = snapshot / "0123abcd"
    bucket_dir.mkdir(parents=True)
    (bucket_dir / "bucket.json").write_text(json.dumps({"name": "migrated-bucket", "region": "eu-west-1"}))
    for key in ("old run/listing é.csv", "old/../refused.csv"):  # SeaweedFS refuses the second
        digest = hashlib.sha256(key.encode()).hexdigest()
        (bucket_dir / digest).write_bytes(b"id,price\n1,100\n")
        (bucket_dir / f"{digest}.json").write_text(json.dumps(
            {"key": key, "etag": "x", "content_type": "text/csv", "metadata": {"from": "moto"}}))
    lines = []
    assert migrate_moto_snapshot(s3, snapshot, echo=lines.append) == 1
    obj = s3.get_object(Bucket="migrated-bucket", Key="old run/listing é.csv")
    assert obj["Body"].read() == b"id,price\n1,100\n" and obj["Metadata"] == {"from": "moto"}
    assert obj["ContentType"] == "text/csv"
    assert not snapshot.exists() and (tmp_path / "s3.migrated-to-seaweedfs").is_dir()
    assert len(lines) == 2 and "s3://migrated-bucket/old/../refused.csv (InvalidRequest)" in lines[1]
    assert migrate_moto_snapshot(s3, snapshot, echo=lines.append) == 0  # once
    empty_bucket(s3, "migrated-bucket")
    s3.delete_bucket(Bucket="migrated-bucket")
