"""How well the live endpoint classifies the held-out test split, asked the way the API asks."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from ferry.digits.configs import ENDPOINT_NAME
from ferry.digits.convert import load_mnist_split
from ferry.sagemaker.recordio import write_numpy_to_dense_tensor

BATCH = 100


def endpoint_accuracy(s3: Any, runtime: Any, bucket: str, key: str = "mnist.pkl.gz",
                      endpoint: str = ENDPOINT_NAME) -> dict[str, Any]:
    images, labels = load_mnist_split(s3, bucket, key, "test")
    digits: list[int] = []
    for start in range(0, len(images), BATCH):
        body = io.BytesIO()
        write_numpy_to_dense_tensor(body, images[start:start + BATCH].astype(np.float32))
        response = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/x-recordio-protobuf",
                                           Accept="application/json", Body=body.getvalue())
        digits += [p["digit"] for p in json.loads(response["Body"].read())["predictions"]]
    accuracy = float((np.asarray(digits) == labels).mean())
    return {"endpoint": endpoint, "test_images": len(labels), "accuracy": round(accuracy, 4)}
