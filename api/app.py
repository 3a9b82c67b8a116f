"""The seed's number-classifier API: POST a picture of a digit, get the digit back.

``POST /`` with ``image/jpeg`` or ``image/png`` (any size) answers
``{"digit": 7, "predictions": [...]}``; ``GET /`` serves a page to draw a digit on. The picture
is turned into an MNIST vector (chalicelib/preprocess.py) and sent to the SageMaker endpoint as
RecordIO-protobuf through boto3's ``sagemaker-runtime`` client, exactly as the seed does: the
local endpoint server or SageMaker itself, chosen only by ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``.
A supervised model answers the digit (``predicted_label``); a k-means model answers a cluster,
which the map the DAG stored beside the model turns into a digit (chalicelib/cluster_map.py).

Every failure answers JSON with ``error``: 4xx for a bad picture, 503 when the endpoint cannot
answer. chalicelib's modules are links to ferry's own (one source), copied by ``chalice deploy``.
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from chalice import Chalice, Response

from chalicelib.cluster_map import EndpointClusterMaps, digit_of
from chalicelib.preprocess import ImageRejected, mnist_vector
from chalicelib.recordio import write_numpy_to_dense_tensor

app = Chalice(app_name="number-classifier")
app.log.setLevel(logging.INFO)

ENDPOINT_NAME = os.environ.get("FERRY_ENDPOINT_NAME", "mnistclassifier")
#: API Gateway's own payload limit is 10 MB; a picture of a digit needs far less.
MAX_BODY = 8 * 1024 * 1024
PAGE = (Path(__file__).parent / "chalicelib" / "draw.html").read_text()

# Built once per process: creating a boto3 client costs ~0.3 s, a call a few milliseconds.
# One attempt and short timeouts: a caller waiting on a dead endpoint should hear so quickly.
runtime = boto3.session.Session().client(
    "sagemaker-runtime",
    config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=10,
                  max_pool_connections=32),
)
#: Only k-means answers need these (its cluster → digit map); created on first use.
_cluster_maps: EndpointClusterMaps | None = None


def cluster_maps() -> EndpointClusterMaps:
    global _cluster_maps
    if _cluster_maps is None:
        session = boto3.session.Session()
        config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=10)
        _cluster_maps = EndpointClusterMaps(session.client("sagemaker", config=config),
                                            session.client("s3", config=config))
    return _cluster_maps


def error(status: int, message: str) -> Response:
    return Response({"error": message}, status_code=status, headers={"Content-Type": "application/json"})


@app.route("/", methods=["GET"])
def page() -> Response:
    return Response(PAGE, status_code=200, headers={"Content-Type": "text/html; charset=utf-8"})


@app.route("/", methods=["POST"], content_types=["image/jpeg", "image/png"])
def predict() -> Response:
    body = app.current_request.raw_body or b""
    if len(body) > MAX_BODY:
        return error(413, f"the picture is {len(body):,} bytes; at most {MAX_BODY:,} are accepted")
    try:
        vector = mnist_vector(body)
    except ImageRejected as exc:
        return error(exc.status, str(exc))
    record = io.BytesIO()
    write_numpy_to_dense_tensor(record, vector.reshape(1, -1))
    try:
        response = runtime.invoke_endpoint(
            EndpointName=ENDPOINT_NAME,
            ContentType="application/x-recordio-protobuf",
            Accept="application/json",
            Body=record.getvalue(),
        )
        result = json.loads(response["Body"].read())
    except (ClientError, BotoCoreError, ValueError) as exc:
        app.log.warning("endpoint %s did not answer: %s", ENDPOINT_NAME, exc)
        return error(503, f"the model endpoint {ENDPOINT_NAME!r} is not available; try again later")
    prediction = result["predictions"][0]
    try:
        digit = digit_of(prediction, cluster_maps().get(ENDPOINT_NAME) if "closest_cluster" in prediction else None)
    except (ClientError, BotoCoreError, KeyError, ValueError, TypeError) as exc:
        app.log.warning("no digit for %s's answer %s: %s", ENDPOINT_NAME, prediction, exc)
        return error(503, f"the model endpoint {ENDPOINT_NAME!r} answers clusters, and their map to digits "
                     "is not available; try again later")
    return Response({"digit": digit, "predictions": result["predictions"]}, status_code=200,
                    headers={"Content-Type": "application/json"})
