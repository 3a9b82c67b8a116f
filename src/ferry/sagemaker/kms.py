"""AWS KMS for the stack's S3: one symmetric key whose material lives in the stack's secrets.

The SageMaker SDK uploads source bundles with ``ServerSideEncryption=aws:kms`` (AWS's managed
key for S3 when no key id is given). SeaweedFS does SSE-KMS only through a KMS provider; its
``local`` provider keeps keys in memory (objects unreadable after a restart), so the stack's
SeaweedFS uses its ``aws`` provider pointed at the control plane, which answers the four calls
that provider and boto3 users make: ``GenerateDataKey``, ``Encrypt``, ``Decrypt``,
``DescribeKey`` (AWS JSON 1.1, ``X-Amz-Target: TrentService.<Operation>``).

Not a copy of KMS's wire format inside the ciphertext (that is AWS's secret): a blob here is
``version | key id | AES-GCM nonce | ciphertext+tag``, the encryption context bound as
associated data, so a blob decrypts only with the same context, as in KMS.

The key answers to its id, its ARN, ``alias/ferry`` and ``alias/aws/s3`` (AWS's managed key
for S3, which S3 uses when a request names none).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from datetime import datetime, timezone
from typing import Any

from ferry.sagemaker.identity import ACCOUNT

#: One fixed id (not a secret): the same on every machine, like an ARN in a DAG.
KEY_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/ferry/kms/stack-key"))
ALIASES = ("alias/ferry", "alias/aws/s3")
_VERSION = b"\x01"
_KEY_SPECS = {"AES_256": 32, "AES_128": 16}
#: Created with the stack's secrets; shown as the key's creation date.
_CREATED = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()


class KmsError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def key_arn(region: str) -> str:
    return f"arn:aws:kms:{region}:{ACCOUNT}:key/{KEY_ID}"


def material(secret: str) -> bytes:
    """The 256-bit key from the stack's ``kms_key`` secret (urlsafe base64 of 32 random bytes)."""
    key = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    if len(key) != 32:
        raise ValueError("the stack's kms_key must hold 32 bytes")
    return key


class Kms:
    def __init__(self, secret: str, region: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(material(secret))
        self.region = region

    def _resolve(self, key: Any) -> None:
        names = {KEY_ID, key_arn(self.region), *ALIASES,
                 *(f"arn:aws:kms:{self.region}:{ACCOUNT}:{alias}" for alias in ALIASES)}
        if not isinstance(key, str) or not 1 <= len(key) <= 2048:
            raise KmsError("ValidationException", "KeyId is required (1 to 2048 characters)")
        if key not in names:
            raise KmsError("NotFoundException", f"Key '{key[:300]}' does not exist")

    @staticmethod
    def _context(context: Any) -> bytes:
        if context is not None and (not isinstance(context, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in context.items())):
            raise KmsError("ValidationException", "EncryptionContext must map strings to strings")
        if not context:  # none and {} are the same context
            return b""
        return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()

    @staticmethod
    def _common(request: dict[str, Any]) -> None:
        """What every call may carry: DryRun (AWS answers that it would have succeeded, doing
        nothing) and EncryptionAlgorithm (a symmetric key knows one)."""
        if request.get("EncryptionAlgorithm", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
            raise KmsError("ValidationException", "EncryptionAlgorithm must be SYMMETRIC_DEFAULT for this key")
        if request.get("DryRun") is True:
            raise KmsError("DryRunOperationException", "The request would have succeeded, but the DryRun option "
                           "is set.")

    @staticmethod
    def _blob(value: Any, field: str) -> bytes:
        if not isinstance(value, str):
            raise KmsError("ValidationException", f"{field} is required")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise KmsError("ValidationException", f"{field} is not base64") from None

    def _encrypt(self, plaintext: bytes, context: Any) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + uuid.UUID(KEY_ID).bytes + nonce + self._aead.encrypt(nonce, plaintext, self._context(context))

    def _answer(self, **fields: bytes | str) -> dict[str, str]:
        return {"KeyId": key_arn(self.region),
                **{k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in fields.items()}}

    def GenerateDataKey(self, request: dict[str, Any]) -> dict[str, Any]:
        self._common(request)
        self._resolve(request.get("KeyId"))
        spec, size = request.get("KeySpec"), request.get("NumberOfBytes")
        if (spec is None) == (size is None):
            raise KmsError("ValidationException", "give exactly one of KeySpec and NumberOfBytes")
        if spec is not None and (not isinstance(spec, str) or spec not in _KEY_SPECS):
            raise KmsError("ValidationException", f"KeySpec must be one of {', '.join(_KEY_SPECS)}")
        if size is not None and (type(size) is not int or not 1 <= size <= 1024):
            raise KmsError("ValidationException", "NumberOfBytes must be between 1 and 1024")
        plaintext = os.urandom(_KEY_SPECS[spec] if spec else size)
        blob = self._encrypt(plaintext, request.get("EncryptionContext"))
        return self._answer(Plaintext=plaintext, CiphertextBlob=blob)

    def Encrypt(self, request: dict[str, Any]) -> dict[str, Any]:
        self._common(request)
        self._resolve(request.get("KeyId"))
        plaintext = self._blob(request.get("Plaintext"), "Plaintext")
        if not 1 <= len(plaintext) <= 4096:
            raise KmsError("ValidationException", "Plaintext must hold 1 to 4096 bytes")
        return self._answer(CiphertextBlob=self._encrypt(plaintext, request.get("EncryptionContext")),
                            EncryptionAlgorithm="SYMMETRIC_DEFAULT")

    def Decrypt(self, request: dict[str, Any]) -> dict[str, Any]:
        self._common(request)
        from cryptography.exceptions import InvalidTag

        if request.get("KeyId") is not None:
            self._resolve(request["KeyId"])
        blob = self._blob(request.get("CiphertextBlob"), "CiphertextBlob")
        if len(blob) > 6144:
            raise KmsError("ValidationException", "CiphertextBlob must hold at most 6144 bytes")
        if len(blob) < 1 + 16 + 12 + 16 or blob[:1] != _VERSION or blob[1:17] != uuid.UUID(KEY_ID).bytes:
            raise KmsError("InvalidCiphertextException", "the ciphertext was not made by this key")
        try:
            plaintext = self._aead.decrypt(blob[17:29], blob[29:], self._context(request.get("EncryptionContext")))
        except InvalidTag:
            raise KmsError("InvalidCiphertextException",
                           "the ciphertext or its encryption context does not match") from None
        return self._answer(Plaintext=plaintext, EncryptionAlgorithm="SYMMETRIC_DEFAULT")

    def DescribeKey(self, request: dict[str, Any]) -> dict[str, Any]:
        self._common(request)
        self._resolve(request.get("KeyId"))
        return {"KeyMetadata": {
            "AWSAccountId": ACCOUNT, "KeyId": KEY_ID, "Arn": key_arn(self.region), "CreationDate": _CREATED,
            "Enabled": True, "Description": "the ferry stack's key (its material is in credentials.json)",
            "KeyUsage": "ENCRYPT_DECRYPT", "KeyState": "Enabled", "Origin": "AWS_KMS", "KeyManager": "CUSTOMER",
            "KeySpec": "SYMMETRIC_DEFAULT", "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
            "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"], "MultiRegion": False}}


#: The operations served, by X-Amz-Target name.
OPERATIONS = ("GenerateDataKey", "Encrypt", "Decrypt", "DescribeKey")
