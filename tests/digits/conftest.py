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
    import tarfile

    model_dir = tmp_path / key.replace("/", "_")
    model.save(model_dir)
    archive = model_dir.with_suffix(".tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        for path in model_dir.iterdir():
            tar.add(path, arcname=path.name)
    s3.upload_file(str(archive), bucket, key)
    return f"s3://{bucket}/{key}"


def deploy(endpoint_url: str, name: str, model_data_url: str) -> dict:
    import json
    import urllib.request

    request = urllib.request.Request(f"{endpoint_url}/endpoints/{name}", method="PUT",
                                     data=json.dumps({"ModelDataUrl": model_data_url}).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())
