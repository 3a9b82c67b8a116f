"""ferry's SigV4 verifier against botocore's signer: a request botocore signs passes; each rule
is then broken on a copy of it (key, scope, headers, body, time), and each copy is refused with
AWS's error code. No server: the verifier is a function of the request."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ferry.sagemaker.sigv4 import SignatureError, verify

KEY, SECRET = "FERRYTESTKEY00001", "the-secret"
URL = "http://127.0.0.1:18081/"
BODY = b'{"TrainingJobName": "job"}'


def signed(*, service: str = "sagemaker", region: str = "eu-west-1", secret: str = SECRET, key: str = KEY,
           headers: dict[str, str] | None = None, body: bytes = BODY, url: str = URL) -> dict[str, str]:
    """``headers`` values of None leave that header out of the request botocore signs."""
    given = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.DescribeTrainingJob",
             **(headers or {})}
    request = AWSRequest(method="POST", url=url, data=body,
                         headers={k: v for k, v in given.items() if v is not None})
    SigV4Auth(Credentials(key, secret), service, region).add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()} | {"host": urlsplit(url).netloc}


def check(headers: dict[str, str], body: bytes = BODY, *, path: str = "/", **rules) -> str:
    return verify("POST", path, "", headers, body, access_key_id=KEY, secret_access_key=SECRET,
                  service=rules.pop("service", "sagemaker"), region=rules.pop("region", "eu-west-1"),
                  must_sign=rules.pop("must_sign", ("x-amz-target",)), **rules)


def refused(headers: dict[str, str], body: bytes = BODY, **rules) -> str:
    with pytest.raises(SignatureError) as error:
        check(headers, body, **rules)
    return error.value.code


def test_a_request_botocore_signed_passes():
    assert check(signed()) == "eu-west-1"


def test_a_wrong_secret_or_an_unknown_key_is_refused():
    assert refused(signed(secret="another")) == "InvalidSignatureException"
    assert refused(signed(key="SOMEONEELSE")) == "UnrecognizedClientException"
    assert refused(signed(key="KÉY-ünïcode")) == "UnrecognizedClientException"  # not a 500


def test_the_credential_scope_must_name_this_service_and_region():
    assert refused(signed(service="s3")) == "InvalidSignatureException"
    assert refused(signed(region="us-east-1")) == "InvalidSignatureException"


def test_the_target_and_the_host_must_be_signed():
    headers = signed()
    # A signature made without X-Amz-Target, the target added afterwards: any operation could be swapped in.
    unsigned_target = signed(headers={"X-Amz-Target": None})
    auth = unsigned_target["authorization"]
    assert "x-amz-target" not in auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert refused({**unsigned_target, "x-amz-target": "SageMaker.DeleteEndpoint"}) == "IncompleteSignature"
    # Swapping the signed target for another breaks the signature.
    assert refused({**headers, "x-amz-target": "SageMaker.DeleteEndpoint"}) == "InvalidSignatureException"
    # Host is signed: the same request aimed at another server does not verify.
    assert refused({**headers, "host": "127.0.0.1:9999"}) == "InvalidSignatureException"


def test_the_body_must_be_the_signed_one_and_hashed():
    assert refused(signed(), b'{"TrainingJobName": "other"}') == "InvalidSignatureException"
    unsigned = signed(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert refused(unsigned, b"anything") == "InvalidSignatureException"
    assert check(unsigned, b"anything", unsigned_payload=True) == "eu-west-1"  # S3's rule, when asked for


@pytest.mark.parametrize("authorization", [
    "", "AWS4-HMAC-SHA256", "Bearer token", "AWS4-HMAC-SHA256 Credential=x, SignedHeaders=host, Signature=00",
    "AWS4-HMAC-SHA256 Credential=\u0000/20260101/eu-west-1/sagemaker/aws4_request, SignedHeaders=host, "
    "Signature=" + "0" * 64,
])
def test_malformed_authorization_headers_are_refused_not_crashed(authorization):
    assert refused({**signed(), "authorization": authorization}) in (
        "MissingAuthenticationToken", "UnrecognizedClientException", "IncompleteSignature")


def test_stale_or_future_or_malformed_dates_are_refused():
    headers = signed()
    later = datetime.now(timezone.utc) + timedelta(minutes=16)
    with pytest.raises(SignatureError, match="expired"):
        verify("POST", "/", "", headers, BODY, access_key_id=KEY, secret_access_key=SECRET, now=later)
    assert refused({**headers, "x-amz-date": "yesterday"}) == "IncompleteSignature"


def test_a_signed_header_missing_from_the_request_is_refused():
    headers = signed()
    del headers["content-type"]
    assert refused(headers) == "IncompleteSignature"


def test_the_payload_hash_header_is_checked_against_the_body():
    headers = signed(headers={"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()})
    assert check(headers) == "eu-west-1"
    assert refused({**headers, "x-amz-content-sha256": hashlib.sha256(b"x").hexdigest()}) == \
        "InvalidSignatureException"
