"""Shared data for the digits tests: the sample splits, fitted models, and pictures of digits."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image


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
    """An MNIST digit as a person might send it: dark ink on light paper, large, off-centre."""
    digit = Image.fromarray((255 - vector.reshape(28, 28) * 255).astype(np.uint8)).resize((size, size))
    paper = Image.new("L", (size + 2 * margin, size + margin), 235)
    paper.paste(digit.point(lambda v: min(v, 235)), (margin + margin // 2, margin // 3))
    out = io.BytesIO()
    paper.save(out, fmt)
    return out.getvalue()


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
