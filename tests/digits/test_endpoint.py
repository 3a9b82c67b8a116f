"""The endpoint server, reached by boto3's real sagemaker-runtime client as SageMaker would be."""

from __future__ import annotations

import io
import json
import os
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from ferry.sagemaker.recordio import write_numpy_to_dense_tensor

from .conftest import deploy, upload_model

pytestmark = pytest.mark.integration
BUCKET = "ferry-digits"


@pytest.fixture(scope="module")
def endpoint_url(stack):
    return stack.settings.url("endpoint")


@pytest.fixture(scope="module")
def artifacts(stack, kmeans_model, svm_model, tmp_path_factory):
    import boto3

    s3, tmp = boto3.client("s3"), tmp_path_factory.mktemp("artifacts")
    return {
        "kmeans": upload_model(s3, kmeans_model, BUCKET, "tests/kmeans/model.tar.gz", tmp),
        "svm": upload_model(s3, svm_model, BUCKET, "tests/svm/model.tar.gz", tmp),
    }


@pytest.fixture(scope="module")
def runtime(stack):
    import boto3

    return boto3.client("sagemaker-runtime")  # AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME from the stack env


def recordio(images: np.ndarray) -> bytes:
    out = io.BytesIO()
    write_numpy_to_dense_tensor(out, images.astype(np.float32))
    return out.getvalue()


def invoke(runtime, name: str, body: bytes, content_type: str = "application/x-recordio-protobuf") -> dict:
    response = runtime.invoke_endpoint(EndpointName=name, ContentType=content_type, Body=body)
    return json.loads(response["Body"].read())


def test_kmeans_endpoint_answers_like_sagemaker_kmeans(runtime, endpoint_url, artifacts, splits, kmeans_model):
    _, _, (test_x, _) = splits
    deploy(endpoint_url, "kmeans-test", artifacts["kmeans"])
    answer = invoke(runtime, "kmeans-test", recordio(test_x[:5]))
    assert answer == {"predictions": kmeans_model.predict(test_x[:5])}
    first = answer["predictions"][0]
    assert isinstance(first["closest_cluster"], float) and isinstance(first["distance_to_cluster"], float)


def test_every_request_format_gives_the_same_answer(runtime, endpoint_url, artifacts, splits):
    _, _, (test_x, test_y) = splits
    deploy(endpoint_url, "svm-test", artifacts["svm"])
    images = test_x[:20]
    from_recordio = invoke(runtime, "svm-test", recordio(images))
    csv = "\n".join(",".join(f"{v:.9g}" for v in row) for row in images).encode()
    from_csv = invoke(runtime, "svm-test", csv, "text/csv")
    as_json = json.dumps({"instances": [{"features": row.tolist()} for row in images]}).encode()
    from_json = invoke(runtime, "svm-test", as_json, "application/json")
    assert from_recordio == from_csv == from_json
    digits = np.array([p["digit"] for p in from_recordio["predictions"]])
    assert (digits == test_y[:20]).mean() >= 0.9


@pytest.mark.parametrize(
    ("name", "body", "content_type", "words"),
    [
        ("no-such-endpoint", None, "application/x-recordio-protobuf", "Endpoint no-such-endpoint not found"),
        ("svm-test", b"1,2,3", "text/csv", "exactly 784 features"),
        ("svm-test", b"\x00\x01garbage", "application/x-recordio-protobuf", "cannot read"),
        ("svm-test", b"{}", "image/gif", "unsupported content type"),
        ("svm-test", ",".join(["nan"] * 784).encode(), "text/csv", "finite"),
    ],
    ids=["unknown-endpoint", "wrong-width", "not-recordio", "content-type", "nan"],
)
def test_bad_requests_raise_sagemakers_validation_error(runtime, endpoint_url, artifacts, splits, name, body,
                                                         content_type, words):
    from botocore.exceptions import ClientError

    _, _, (test_x, _) = splits
    deploy(endpoint_url, "svm-test", artifacts["svm"])
    with pytest.raises(ClientError) as caught:
        invoke(runtime, name, body if body is not None else recordio(test_x[:1]), content_type)
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert words in caught.value.response["Error"]["Message"]


def test_concurrent_requests_each_get_their_own_answer(runtime, endpoint_url, artifacts, splits, svm_model):
    """The server predicts requests that arrive together in one batch: answers must not mix."""
    from concurrent.futures import ThreadPoolExecutor

    _, _, (test_x, _) = splits
    deploy(endpoint_url, "svm-test", artifacts["svm"])
    sizes = [1, 3, 1, 2] * 8  # requests of 1 to 3 images, 32 in flight from 16 threads
    starts = np.cumsum([0, *sizes[:-1]])
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: invoke(runtime, "svm-test", recordio(test_x[starts[i]:starts[i] + sizes[i]])),
                                range(len(sizes))))
    for i, answer in enumerate(answers):
        assert answer["predictions"] == svm_model.predict(test_x[starts[i]:starts[i] + sizes[i]])


def test_container_contract_routes(endpoint_url):
    with urllib.request.urlopen(f"{endpoint_url}/ping", timeout=5) as response:
        assert response.status == 200  # models are deployed by the tests above (or not: 503)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{endpoint_url}/nowhere", timeout=5)
    assert caught.value.code == 404 and "no route" in json.loads(caught.value.read())["message"]


def test_deploying_a_missing_artifact_fails_and_keeps_the_old_model(runtime, endpoint_url, artifacts, splits):
    _, _, (test_x, _) = splits
    deploy(endpoint_url, "svm-test", artifacts["svm"])
    with pytest.raises(urllib.error.HTTPError) as caught:
        deploy(endpoint_url, "svm-test", f"s3://{BUCKET}/tests/missing/model.tar.gz")
    assert caught.value.code == 400
    assert "predicted_label" in invoke(runtime, "svm-test", recordio(test_x[:1]))["predictions"][0]


def test_redeploy_swaps_the_model_without_a_failed_request(runtime, endpoint_url, artifacts, splits):
    """Requests run in a loop while the endpoint is redeployed kmeans → svm → kmeans."""
    _, _, (test_x, _) = splits
    body = recordio(test_x[:1])
    deploy(endpoint_url, "swap-test", artifacts["kmeans"])
    shapes: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                prediction = invoke(runtime, "swap-test", body)["predictions"][0]
                shapes.append("svm" if "predicted_label" in prediction else "kmeans")
            except BaseException as exc:
                errors.append(exc)

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        deploy(endpoint_url, "swap-test", artifacts["svm"])
        deploy(endpoint_url, "swap-test", artifacts["kmeans"])
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not errors, errors[:3]
    assert "svm" in shapes and shapes[0] == shapes[-1] == "kmeans" and len(shapes) > 20


def test_endpoints_come_back_after_a_restart(stack, runtime, endpoint_url, artifacts, splits):
    _, _, (test_x, _) = splits
    deploy(endpoint_url, "restart-test", artifacts["svm"])
    service = stack.service("endpoint")
    service.stop()
    service.start()
    assert "predicted_label" in invoke(runtime, "restart-test", recordio(test_x[:1]))["predictions"][0]


def test_an_endpoint_that_cannot_be_restored_is_kept_and_retried(stack, runtime, endpoint_url, svm_model, splits,
                                                                   tmp_path):
    import boto3
    from botocore.exceptions import ClientError

    _, _, (test_x, _) = splits
    s3 = boto3.client("s3")
    url = upload_model(s3, svm_model, BUCKET, "tests/fragile/model.tar.gz", tmp_path)
    deploy(endpoint_url, "fragile", url)
    s3.delete_object(Bucket=BUCKET, Key="tests/fragile/model.tar.gz")
    service = stack.service("endpoint")
    service.stop()
    service.start()
    with pytest.raises(ClientError) as caught:
        invoke(runtime, "fragile", recordio(test_x[:1]))
    assert "not in service" in caught.value.response["Error"]["Message"]
    assert json.loads(service.registry.read_text())["fragile"]["EndpointStatus"] == "Failed"
    upload_model(s3, svm_model, BUCKET, "tests/fragile/model.tar.gz", tmp_path / "again")
    service.stop()
    service.start()
    assert "predicted_label" in invoke(runtime, "fragile", recordio(test_x[:1]))["predictions"][0]


def test_only_the_stack_credentials_can_deploy(runtime, endpoint_url, artifacts, splits):
    """A model is code's next of kin: nobody without the stack's key pair may put one here."""
    from botocore.credentials import Credentials

    from ferry.digits.endpoint import deploy_model

    _, _, (test_x, _) = splits
    deploy(endpoint_url, "guarded", artifacts["svm"])
    body = json.dumps({"ModelDataUrl": artifacts["kmeans"]}).encode()
    attempts = {
        "unsigned": lambda: urllib.request.urlopen(urllib.request.Request(
            f"{endpoint_url}/endpoints/guarded", data=body, method="PUT",
            headers={"Content-Type": "application/json"}), timeout=10),
        "wrong secret": lambda: deploy_model(endpoint_url, "guarded", artifacts["kmeans"], credentials=Credentials(
            os.environ["AWS_ACCESS_KEY_ID"], "not-the-secret"), timeout=10),
        "unknown key": lambda: deploy_model(endpoint_url, "guarded", artifacts["kmeans"],
                                            credentials=Credentials("AKIASTRANGER", "x"), timeout=10),
        "unsigned delete": lambda: urllib.request.urlopen(urllib.request.Request(
            f"{endpoint_url}/endpoints/guarded", method="DELETE"), timeout=10),
    }
    for what, attempt in attempts.items():
        with pytest.raises(urllib.error.HTTPError) as refused:
            attempt()
        assert refused.value.code == 403, what
        assert "needs the stack's credentials" in json.loads(refused.value.read())["message"], what
    # Still the model the stack deployed.
    assert "predicted_label" in invoke(runtime, "guarded", recordio(test_x[:1]))["predictions"][0]
