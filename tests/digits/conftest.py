"""Shared data for the digits tests: the sample splits, fitted models, and pictures of digits."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def splits():
    from ferry.digits.sample_data import mnist_splits

    return mnist_splits()


@pytest.fixture(scope="session")
def kmeans_model(splits):
    from ferry.digits.model import fit

    (images, labels), _, _ = splits
    return fit(images, labels, {"k": "10", "feature_dim": "784"})


@pytest.fixture(scope="session")
def svm_model(splits):
    from ferry.digits.model import fit

    (images, labels), _, _ = splits
    return fit(images, labels, {"algorithm": "svm", "feature_dim": "784"})


def photo_of(vector: np.ndarray, *, size: int = 300, fmt: str = "JPEG", margin: int = 120) -> bytes:
    from ferry.digits.sample_data import sample_picture

    return sample_picture(vector, size=size, fmt=fmt, margin=margin)


def upload_model(s3, model, bucket: str, key: str, tmp_path) -> str:
    """Pack ``model`` as a SageMaker artifact (model.tar.gz) in S3; return its URL."""
    from ferry.digits.training import pack_artifact

    tmp_path.mkdir(parents=True, exist_ok=True)
    archive = tmp_path / (key.replace("/", "_") + ".tar.gz")
    pack_artifact(model, archive)
    s3.upload_file(str(archive), bucket, key)
    return f"s3://{bucket}/{key}"


def deploy(endpoint_url: str, name: str, model_data_url: str) -> dict:
    from ferry.digits.endpoint import deploy_model

    return deploy_model(endpoint_url, name, model_data_url, timeout=60)


def undeploy(endpoint_url: str, name: str) -> None:
    """DELETE an endpoint on the endpoint server, signed with the stack's key pair."""
    import urllib.request

    import boto3

    from ferry.sagemaker.sigv4 import signed_request

    request = signed_request("DELETE", f"{endpoint_url}/endpoints/{name}", None,
                             credentials=boto3.Session().get_credentials(), region="eu-west-1")
    urllib.request.urlopen(request, timeout=10).close()
