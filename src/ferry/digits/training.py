"""The local backend's training: SageMaker's training contract, executed on this machine.

:func:`run_training_job` takes the same request as SageMaker's ``CreateTrainingJob`` (the dict
the DAG gives ``SageMakerTrainingOperator``) and does what a SageMaker training job does with it:

- hyperparameters are strings (SageMaker rejects anything else); ``k`` and ``feature_dim`` as
  for the built-in KMeans, ``algorithm`` (``kmeans`` or ``svm``) to pick the supervised model;
- the channel named ``train`` (``S3Prefix``: every object under the URI) is copied to a local
  directory, as in ``File`` input mode, and read as RecordIO-protobuf;
- the model directory is packed as ``model.tar.gz`` and written to
  ``<S3OutputPath>/<TrainingJobName>/output/model.tar.gz``;
- the answer has DescribeTrainingJob's shape (status, ``ModelArtifacts.S3ModelArtifacts``).

The same request therefore trains here or on SageMaker; only the operator running it differs.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ferry.digits.model import DigitModel, fit
from ferry.sagemaker.algorithms import read_channel
from ferry.sagemaker.worker import download_prefix, split_s3_uri

TRAIN_CHANNEL = "train"
ARTIFACT_NAME = "model.tar.gz"


def check_hyperparameters(hyperparameters: dict[str, Any]) -> dict[str, str]:
    not_strings = sorted(name for name, value in hyperparameters.items() if not isinstance(value, str))
    if not_strings:
        raise ValueError(f"hyperparameters must be strings, as SageMaker requires: {', '.join(not_strings)}")
    return dict(hyperparameters)


def train_channel_uri(config: dict[str, Any]) -> str:
    for channel in config.get("InputDataConfig", []):
        if channel["ChannelName"] == TRAIN_CHANNEL:
            source = channel["DataSource"]["S3DataSource"]
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise ValueError(f"only S3DataType=S3Prefix is supported here, not {source['S3DataType']}")
            return source["S3Uri"]
    raise ValueError(f"the training job has no input channel named {TRAIN_CHANNEL!r}")


def download_channel(client: Any, uri: str, directory: Path) -> list[Path]:
    """Every object under the prefix, into ``directory`` (SageMaker's File input mode)."""
    bucket, prefix = split_s3_uri(uri)
    files = download_prefix(client, bucket, prefix, directory)
    if not files:
        raise FileNotFoundError(f"the train channel {uri} holds no objects")
    return files


def run_training_job(client: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Train as SageMaker would for ``config`` (a CreateTrainingJob request); see the module doc."""
    name = config["TrainingJobName"]
    hyperparameters = check_hyperparameters(config.get("HyperParameters", {}))
    output_bucket, output_prefix = split_s3_uri(config["OutputDataConfig"]["S3OutputPath"])
    artifact_key = "/".join(p for p in (output_prefix.rstrip("/"), name, "output", ARTIFACT_NAME) if p)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ferry-training-") as scratch:
        root = Path(scratch)
        channel_dir = root / "input" / "data" / TRAIN_CHANNEL
        channel_dir.mkdir(parents=True)
        files = download_channel(client, train_channel_uri(config), channel_dir)
        images, labels = read_channel(files, "application/x-recordio-protobuf")
        model = fit(images, labels, hyperparameters)
        if labels is not None:
            model.metadata["train_accuracy"] = accuracy(model, images, labels)
        model.metadata.update(training_job=name, records=len(images))
        archive = root / ARTIFACT_NAME
        pack_artifact(model, archive)
        # One PUT (or one completed multipart upload): the key holds the old artifact or the new one.
        client.upload_file(str(archive), output_bucket, artifact_key)
    seconds = time.monotonic() - started
    metrics = [{"MetricName": "train:accuracy", "Value": model.metadata["train_accuracy"]}] \
        if "train_accuracy" in model.metadata else []
    return {
        "TrainingJobName": name,
        "TrainingJobStatus": "Completed",
        "HyperParameters": hyperparameters,
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{output_bucket}/{artifact_key}"},
        "TrainingTimeInSeconds": round(seconds, 3),
        "FinalMetricDataList": metrics,
    }


def pack_artifact(model: DigitModel, archive: Path) -> None:
    """``model.tar.gz`` as a SageMaker training job leaves it: the model directory's files at its root."""
    with tempfile.TemporaryDirectory(prefix="ferry-model-") as scratch:
        model.save(Path(scratch))
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(Path(scratch).iterdir()):
                tar.add(path, arcname=path.name)


def load_model_artifact(client: Any, model_data_url: str) -> Any:
    """Fetch and unpack a ``model.tar.gz`` (plain arrays and JSON: no code runs on load): a
    built-in algorithm's model (ferry.sagemaker.inference) or a DigitModel."""
    from ferry.sagemaker.inference import load_builtin_model

    bucket, key = split_s3_uri(model_data_url)
    with tempfile.TemporaryDirectory(prefix="ferry-model-") as scratch:
        archive = Path(scratch) / ARTIFACT_NAME
        client.download_file(bucket, key, str(archive))
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")
        return load_builtin_model(Path(scratch)) or DigitModel.load(Path(scratch))


def accuracy(model: DigitModel, images: np.ndarray, labels: np.ndarray) -> float:
    predicted = np.array([p["digit"] for p in model.predict(images)])
    return float((predicted == labels).mean())
