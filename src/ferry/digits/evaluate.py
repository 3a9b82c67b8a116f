"""Asking the live endpoint about the sample's labelled digits, the way the API asks.

- :func:`learn_cluster_digits`: for a k-means model, which digit each cluster stands for, from
  the training split's labels; saved beside the model (ferry.digits.cluster_map).
- :func:`endpoint_accuracy`: accuracy on the held-out test split.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from ferry.digits import cluster_map
from ferry.digits.configs import ENDPOINT_NAME
from ferry.digits.convert import load_mnist_split
from ferry.sagemaker.recordio import write_numpy_to_dense_tensor

BATCH = 100


def endpoint_predictions(runtime: Any, images: np.ndarray, endpoint: str = ENDPOINT_NAME) -> list[dict[str, Any]]:
    """The endpoint's answer for each image, sent as RecordIO-protobuf in batches of 100."""
    predictions: list[dict[str, Any]] = []
    for start in range(0, len(images), BATCH):
        body = io.BytesIO()
        write_numpy_to_dense_tensor(body, images[start:start + BATCH].astype(np.float32))
        response = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/x-recordio-protobuf",
                                           Accept="application/json", Body=body.getvalue())
        predictions += json.loads(response["Body"].read())["predictions"]
    return predictions


def learn_cluster_digits(s3: Any, runtime: Any, bucket: str, model_data_url: str, key: str = "mnist.pkl.gz",
                         endpoint: str = ENDPOINT_NAME) -> dict[str, Any] | None:
    """Learn and save the cluster → digit map if the endpoint answers clusters; None if it answers labels."""
    images, labels = load_mnist_split(s3, bucket, key, "train")
    predictions = endpoint_predictions(runtime, images, endpoint)
    if "closest_cluster" not in predictions[0]:
        return None
    cluster_digits = cluster_map.learn((p["closest_cluster"] for p in predictions), labels)
    return {"cluster_digits": cluster_digits, "saved_to": cluster_map.save(s3, model_data_url, cluster_digits)}


def endpoint_accuracy(s3: Any, runtime: Any, bucket: str, *, cluster_digits: dict[str, int] | None = None,
                      key: str = "mnist.pkl.gz", endpoint: str = ENDPOINT_NAME) -> dict[str, Any]:
    images, labels = load_mnist_split(s3, bucket, key, "test")
    digits = [cluster_map.digit_of(p, cluster_digits) for p in endpoint_predictions(runtime, images, endpoint)]
    accuracy = float((np.asarray(digits) == labels).mean())
    return {"endpoint": endpoint, "test_images": len(labels), "accuracy": round(accuracy, 4)}
