"""Checking AWS Signature Version 4 on requests, as AWS's own services do.

botocore signs requests but has no verifier, and the local control plane must refuse anyone
without the stack's key pair. This follows AWS's published algorithm for a signed header:
canonical request → string to sign → HMAC chain of date, region, service → compare in
constant time. Requests older or newer than 15 minutes are refused, as AWS refuses them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.request
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

MAX_SKEW = timedelta(minutes=15)
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<headers>[a-z0-9;\-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


class SignatureError(Exception):
    """The request is not signed with the expected key: (error code, message) as AWS words them."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _canonical_query(query: str) -> str:
    pairs = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        pairs.append((quote(name, safe="-_.~%"), quote(value, safe="-_.~%")))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def signed_request(method: str, url: str, body: bytes | None, *, credentials: Any, region: str,
                   service: str = "sagemaker") -> urllib.request.Request:
    """A urllib request signed with SigV4 by botocore (``credentials``: botocore Credentials)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    aws = AWSRequest(method=method, url=url, data=body or b"", headers={"Content-Type": "application/json"})
    SigV4Auth(credentials, service, region).add_auth(aws)
    return urllib.request.Request(url, data=body, method=method, headers=dict(aws.headers.items()))


def credential_scope(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The (service, region) a request says it is signed for, or None if it is not signed so."""
    found = _AUTHORIZATION.match(headers.get("authorization", "").strip())
    return (found["service"], found["region"]) if found else None


def verify(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, *,
           access_key_id: str, secret_access_key: str, now: datetime | None = None,
           service: str | None = None, region: str | None = None, must_sign: tuple[str, ...] = (),
           unsigned_payload: bool = False) -> str:
    """Raise :class:`SignatureError` unless the request is signed with this key pair; return the
    region the client signed for. ``headers`` have lower-case names.

    As AWS's services check: the credential scope must name ``service`` and ``region`` (when
    given: a signature made for another service or region is not valid here), ``host`` and each
    header of ``must_sign`` (``x-amz-target`` on AWS's JSON APIs: the operation itself) must be
    among the signed headers, and the payload must be hashed unless ``unsigned_payload`` (S3's
    ``UNSIGNED-PAYLOAD``; JSON APIs refuse it).
    """
    found = _AUTHORIZATION.match(headers.get("authorization", "").strip())
    if not found:
        raise SignatureError("MissingAuthenticationToken", "Request is missing Authentication Token")
    if not hmac.compare_digest(found["key"].encode("utf-8", "replace"), access_key_id.encode()):
        raise SignatureError("UnrecognizedClientException", "The security token included in the request is invalid.")
    if service is not None and found["service"] != service:
        raise SignatureError("InvalidSignatureException", f"Credential should be scoped to correct service: "
                             f"'{service}'.")
    if region is not None and found["region"] != region:
        raise SignatureError("InvalidSignatureException", f"Credential should be scoped to a valid region, not "
                             f"'{found['region'][:40]}'.")
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise SignatureError("IncompleteSignature", "X-Amz-Date is missing or malformed") from None
    if abs((now or datetime.now(timezone.utc)) - signed_at) > MAX_SKEW or amz_date[:8] != found["date"]:
        raise SignatureError("InvalidSignatureException", "Signature expired or not yet valid")
    signed = found["headers"].split(";")
    if "host" not in signed or any(name not in headers for name in signed):
        raise SignatureError("IncompleteSignature", "a signed header is missing from the request")
    for name in must_sign:
        if name not in signed:
            raise SignatureError("IncompleteSignature", f"'{name}' must be a signed header")
    canonical_headers = "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in signed)
    payload_hash = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    if payload_hash == "UNSIGNED-PAYLOAD" and not unsigned_payload:
        raise SignatureError("InvalidSignatureException", "UNSIGNED-PAYLOAD is not accepted here: sign the body")
    if payload_hash != "UNSIGNED-PAYLOAD" and payload_hash != hashlib.sha256(body).hexdigest():
        raise SignatureError("InvalidSignatureException", "the body does not match the signed payload hash")
    canonical_request = "\n".join([method, quote(path or "/", safe="/-_.~%"), _canonical_query(query),
                                   canonical_headers, found["headers"], payload_hash])
    scope = f"{found['date']}/{found['region']}/{found['service']}/aws4_request"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = ("AWS4" + secret_access_key).encode()
    for part in (found["date"], found["region"], found["service"], "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, found["signature"]):
        raise SignatureError("InvalidSignatureException",
                             "The request signature we calculated does not match the signature you provided.")
    return found["region"]
