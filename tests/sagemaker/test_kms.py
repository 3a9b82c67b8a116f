"""The stack's KMS (ferry.sagemaker.kms): what SeaweedFS's SSE-KMS and boto3 users call, with
AWS's errors for hostile input. The first tests call it directly; the last go through the
control plane with boto3 (SigV4 checked), as SeaweedFS's AWS provider does."""

from __future__ import annotations

import base64
import secrets

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from ferry.sagemaker.kms import KEY_ID, Kms, KmsError, key_arn

REGION = "eu-west-1"
CONTEXT = {"aws:s3:arn": "arn:aws:s3:::bucket/key"}


@pytest.fixture
def kms() -> Kms:
    return Kms(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(), REGION)


def refused(call, request: dict, code: str) -> str:
    with pytest.raises(KmsError) as error:
        call(request)
    assert error.value.code == code
    return error.value.message


def test_a_data_key_decrypts_with_its_context_only(kms):
    made = kms.GenerateDataKey({"KeyId": "alias/aws/s3", "KeySpec": "AES_256", "EncryptionContext": CONTEXT})
    assert len(base64.b64decode(made["Plaintext"])) == 32 and made["KeyId"] == key_arn(REGION)
    back = kms.Decrypt({"CiphertextBlob": made["CiphertextBlob"], "EncryptionContext": CONTEXT})
    assert back["Plaintext"] == made["Plaintext"]
    refused(kms.Decrypt, {"CiphertextBlob": made["CiphertextBlob"]}, "InvalidCiphertextException")
    refused(kms.Decrypt, {"CiphertextBlob": made["CiphertextBlob"],
                          "EncryptionContext": {**CONTEXT, "aws:s3:arn": "arn:aws:s3:::bucket/other"}},
            "InvalidCiphertextException")


def test_a_blob_from_another_stack_or_tampered_with_does_not_decrypt(kms):
    made = kms.Encrypt({"KeyId": KEY_ID, "Plaintext": base64.b64encode(b"secret").decode()})
    other = Kms(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(), REGION)
    refused(other.Decrypt, {"CiphertextBlob": made["CiphertextBlob"]}, "InvalidCiphertextException")
    blob = bytearray(base64.b64decode(made["CiphertextBlob"]))
    for position in (0, 5, 20, len(blob) - 1):  # version, key id, nonce, tag
        tampered = bytearray(blob)
        tampered[position] ^= 1
        refused(kms.Decrypt, {"CiphertextBlob": base64.b64encode(bytes(tampered)).decode()},
                "InvalidCiphertextException")
    refused(kms.Decrypt, {"CiphertextBlob": base64.b64encode(bytes(blob[:20])).decode()}, "InvalidCiphertextException")
    assert base64.b64decode(kms.Decrypt({"CiphertextBlob": made["CiphertextBlob"]})["Plaintext"]) == b"secret"


@pytest.mark.parametrize("key", ["alias/aws/s3", "alias/ferry", KEY_ID, key_arn(REGION),
                                 f"arn:aws:kms:{REGION}:000000000000:alias/aws/s3"])
def test_the_key_answers_to_its_names(kms, key):
    assert kms.DescribeKey({"KeyId": key})["KeyMetadata"]["Arn"] == key_arn(REGION)


@pytest.mark.parametrize(("request_", "code"), [
    ({}, "ValidationException"),
    ({"KeyId": ["alias/aws/s3"]}, "ValidationException"),
    ({"KeyId": "alias/someone-else"}, "NotFoundException"),
    ({"KeyId": key_arn("us-east-1")}, "NotFoundException"),
    ({"KeyId": "alias/aws/s3"}, "ValidationException"),  # neither KeySpec nor NumberOfBytes
    ({"KeyId": "alias/aws/s3", "KeySpec": "AES_256", "NumberOfBytes": 32}, "ValidationException"),
    ({"KeyId": "alias/aws/s3", "KeySpec": "RSA_2048"}, "ValidationException"),
    ({"KeyId": "alias/aws/s3", "KeySpec": ["AES_256"]}, "ValidationException"),
    ({"KeyId": "alias/aws/s3", "KeySpec": {"AES_256": 1}}, "ValidationException"),
    ({"KeyId": "x" * 2049, "KeySpec": "AES_256"}, "ValidationException"),
    ({"KeyId": "alias/aws/s3", "KeySpec": "AES_256", "DryRun": True}, "DryRunOperationException"),
    ({"KeyId": "alias/aws/s3", "NumberOfBytes": 0}, "ValidationException"),
    ({"KeyId": "alias/aws/s3", "NumberOfBytes": 10**9}, "ValidationException"),
    ({"KeyId": "alias/aws/s3", "NumberOfBytes": True}, "ValidationException"),
    ({"KeyId": "alias/aws/s3", "KeySpec": "AES_256", "EncryptionContext": {"a": 1}}, "ValidationException"),
    ({"KeyId": "alias/aws/s3", "KeySpec": "AES_256", "EncryptionContext": ["a"]}, "ValidationException"),
])
def test_bad_generate_data_key_requests_get_aws_errors(kms, request_, code):
    refused(kms.GenerateDataKey, request_, code)


@pytest.mark.parametrize("blob", [None, 12, "not base64!", "", base64.b64encode(b"x" * 100).decode()])
def test_bad_ciphertexts_get_aws_errors(kms, blob):
    with pytest.raises(KmsError) as error:
        kms.Decrypt({"CiphertextBlob": blob})
    assert error.value.code in ("ValidationException", "InvalidCiphertextException")


def test_encrypt_takes_at_most_4096_bytes(kms):
    refused(kms.Encrypt, {"KeyId": KEY_ID, "Plaintext": base64.b64encode(b"x" * 4097).decode()}, "ValidationException")


@pytest.mark.integration
def test_boto3_uses_the_control_planes_kms_with_the_stack_key_pair_only(stack):
    client = boto3.client("kms")  # AWS_ENDPOINT_URL_KMS, the stack's key pair: ferry stack env
    made = client.generate_data_key(KeyId="alias/aws/s3", KeySpec="AES_256", EncryptionContext=CONTEXT)
    assert client.decrypt(CiphertextBlob=made["CiphertextBlob"], EncryptionContext=CONTEXT)["Plaintext"] == \
        made["Plaintext"]
    assert client.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyState"] == "Enabled"
    with pytest.raises(ClientError) as error:
        client.decrypt(CiphertextBlob=made["CiphertextBlob"])
    assert error.value.response["Error"]["Code"] == "InvalidCiphertextException"
    stranger = boto3.client("kms", aws_access_key_id="FERRYSTRANGER000", aws_secret_access_key="guess",
                            config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as error:
        stranger.describe_key(KeyId="alias/aws/s3")
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_no_context_and_an_empty_context_are_one_context(kms):
    made = kms.GenerateDataKey({"KeyId": KEY_ID, "KeySpec": "AES_128", "EncryptionContext": {}})
    assert kms.Decrypt({"CiphertextBlob": made["CiphertextBlob"]})["Plaintext"] == made["Plaintext"]
    made = kms.GenerateDataKey({"KeyId": KEY_ID, "NumberOfBytes": 7})
    assert len(base64.b64decode(made["Plaintext"])) == 7
    assert kms.Decrypt({"CiphertextBlob": made["CiphertextBlob"], "EncryptionContext": {}})["Plaintext"] == \
        made["Plaintext"]


def test_asymmetric_algorithms_and_oversized_blobs_are_refused(kms):
    made = kms.Encrypt({"KeyId": KEY_ID, "Plaintext": base64.b64encode(b"x").decode()})
    refused(kms.Decrypt, {"CiphertextBlob": made["CiphertextBlob"], "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"},
            "ValidationException")
    refused(kms.Decrypt, {"CiphertextBlob": base64.b64encode(b"x" * 6145).decode()}, "ValidationException")
