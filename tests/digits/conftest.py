"""Shared data for the digits tests: the sample splits, fitted models, their artifacts, pictures."""

from __future__ import annotations

import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ferry.digits.code_bundle import CODE_DIR, FILES, PROGRAM
from ferry.digits.configs import image_uri

SKLEARN_IMAGE = image_uri("sklearn", "eu-west-1")
KMEANS_IMAGE = image_uri("kmeans", "eu-west-1")
#: How the DAG's model serves the script: from the code the script packed into the model.
SCRIPT_ENVIRONMENT = {"SAGEMAKER_PROGRAM": PROGRAM, "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}


@pytest.fixture(scope="session")
def splits():
    from ferry.digits.sample_data import mnist_splits

    return mnist_splits()


@pytest.fixture(scope="session")
def classifier():
    """ferry's classifier script, imported as SageMaker's scikit-learn container imports it (its
    directory on sys.path, so its ``sagemaker_recordio`` is the one packed beside it)."""
    sys.path.insert(0, str(CODE_DIR))
    import classifier

    return classifier


@pytest.fixture(scope="session")
def svm_model(splits, classifier):
    """Trained as the DAG trains it: the train split, augmented, and the synthetic printed digits."""
    from ferry.digits.synthetic import training_digits

    (images, labels), _, _ = splits
    model, pipeline = classifier.fit(images, labels, extra=training_digits())
    model.estimator = pipeline  # kept for the tests that compare with scikit-learn
    return model


@pytest.fixture(scope="session")
def kmeans_model_dir(splits, tmp_path_factory) -> Path:
    """The built-in k-means algorithm's model directory, trained on the train split."""
    from ferry.sagemaker.algorithms import train_kmeans

    (images, labels), _, _ = splits
    directory = tmp_path_factory.mktemp("kmeans-model")
    train_kmeans({"k": "10", "feature_dim": "784"}, images, labels, directory, lambda line: None)
    return directory


def script_model_dir(model, directory: Path) -> Path:
    """What the training script leaves in SM_MODEL_DIR: the arrays and its own code."""
    model.save(directory)
    (directory / "code").mkdir(exist_ok=True)
    for name in FILES:
        shutil.copyfile(CODE_DIR / name, directory / "code" / name)
    return directory


def upload_model_dir(s3, directory: Path, bucket: str, key: str) -> str:
    """Pack a model directory as SageMaker's model.tar.gz (its files at the root) into S3."""
    archive = directory.parent / f"{directory.name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
    s3.upload_file(str(archive), bucket, key)
    return f"s3://{bucket}/{key}"


def photo_of(vector: np.ndarray, *, size: int = 300, fmt: str = "JPEG", margin: int = 120) -> bytes:
    from ferry.digits.sample_data import sample_picture

    return sample_picture(vector, size=size, fmt=fmt, margin=margin)


def deploy(endpoint_url: str, name: str, model_data_url: str, image: str | None = None,
           environment: dict[str, str] | None = None) -> dict:
    """Deploy straight to the endpoint server, signed with the stack's key pair (as the control plane does)."""
    from ferry.sagemaker.endpoint_server import deploy_model

    return deploy_model(endpoint_url, name, model_data_url, image=image, environment=environment, timeout=60)


def deploy_script_model(endpoint_url: str, name: str, model_data_url: str) -> dict:
    return deploy(endpoint_url, name, model_data_url, SKLEARN_IMAGE, SCRIPT_ENVIRONMENT)


def undeploy(endpoint_url: str, name: str) -> None:
    """DELETE an endpoint on the endpoint server, signed with the stack's key pair."""
    import urllib.request

    import boto3

    from ferry.sagemaker.sigv4 import signed_request

    request = signed_request("DELETE", f"{endpoint_url}/endpoints/{name}", None,
                             credentials=boto3.Session().get_credentials(), region="eu-west-1")
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture(scope="session")
def svm_artifact(stack, svm_model, tmp_path_factory) -> str:
    """The classifier's model.tar.gz (arrays and code) in the stack's S3, as the DAG's job leaves it."""
    import boto3

    directory = script_model_dir(svm_model, tmp_path_factory.mktemp("svm-artifact") / "model")
    return upload_model_dir(boto3.client("s3"), directory, "ferry-digits", "tests/svm-session/model.tar.gz")
