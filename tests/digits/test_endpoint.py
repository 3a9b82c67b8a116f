"""The endpoint server (ferry.sagemaker.endpoint_server), reached by boto3's real
sagemaker-runtime client as SageMaker would be, serving the digits models: the built-in k-means
and ferry's classifier in script mode. Hostile bodies, archives and deployers included."""

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

from .conftest import KMEANS_IMAGE, deploy, deploy_script_model, script_model_dir, upload_model_dir

pytestmark = pytest.mark.integration
BUCKET = "ferry-digits"


@pytest.fixture(scope="module")
def endpoint_url(stack):
    return stack.settings.url("endpoint")


@pytest.fixture(scope="module")
def artifacts(stack, kmeans_model_dir, svm_model, tmp_path_factory):
    import boto3

    s3 = boto3.client("s3")
    svm_dir = script_model_dir(svm_model, tmp_path_factory.mktemp("artifacts") / "svm")
    return {
        "kmeans": upload_model_dir(s3, kmeans_model_dir, BUCKET, "tests/kmeans/model.tar.gz"),
        "svm": upload_model_dir(s3, svm_dir, BUCKET, "tests/svm/model.tar.gz"),
    }


def labels_of(model, images) -> list[dict]:
    return [{"predicted_label": float(label)} for label in model.predict(images)]


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


def test_kmeans_endpoint_answers_like_sagemaker_kmeans(runtime, endpoint_url, artifacts, splits, kmeans_model_dir):
    from ferry.sagemaker.inference import load_builtin_model

    _, _, (test_x, _) = splits
    deploy(endpoint_url, "kmeans-test", artifacts["kmeans"], KMEANS_IMAGE)
    answer = invoke(runtime, "kmeans-test", recordio(test_x[:5]))
    assert answer == {"predictions": load_builtin_model(kmeans_model_dir).predict(test_x[:5])}
    first = answer["predictions"][0]
    assert set(first) == {"closest_cluster", "distance_to_cluster"}
    assert isinstance(first["closest_cluster"], float) and isinstance(first["distance_to_cluster"], float)


def test_kmeans_answers_in_the_format_accept_asks_for(runtime, endpoint_url, artifacts, splits):
    """AWS's inference formats for k-means: JSON, JSON lines, RecordIO out; csv in with label_size."""
    from botocore.exceptions import ClientError
    from sagemaker_training import record_pb2
    from sagemaker_training.recordio import _read_recordio

    _, _, (test_x, test_y) = splits
    deploy(endpoint_url, "kmeans-test", artifacts["kmeans"], KMEANS_IMAGE)
    expected = invoke(runtime, "kmeans-test", recordio(test_x[:3]))["predictions"]

    def ask(accept: str, body: bytes = recordio(test_x[:3]), content_type: str = "application/x-recordio-protobuf"):
        answer = runtime.invoke_endpoint(EndpointName="kmeans-test", ContentType=content_type, Accept=accept,
                                         Body=body)
        return answer["Body"].read(), answer["ContentType"]

    body, content_type = ask("application/jsonlines")
    assert content_type == "application/jsonlines" and [json.loads(line) for line in body.splitlines()] == expected
    body, content_type = ask("application/x-recordio-protobuf")
    records = []
    for payload in _read_recordio(io.BytesIO(body)):
        record = record_pb2.Record()
        record.ParseFromString(payload)
        records.append({k: v.float32_tensor.values[0] for k, v in record.label.items()})
    assert content_type == "application/x-recordio-protobuf"
    assert [r["closest_cluster"] for r in records] == [p["closest_cluster"] for p in expected]
    labelled = "\n".join(",".join([str(label), *map(str, row)]) for label, row in zip(test_y[:3], test_x[:3],
                                                                                     strict=True))
    body, _ = ask("application/json", labelled.encode(), "text/csv;label_size=1")
    assert [p["closest_cluster"] for p in json.loads(body)["predictions"]] == [p["closest_cluster"] for p in expected]
    with pytest.raises(ClientError) as refused:
        ask("text/html")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 406


def test_knn_answers_verbose_with_the_neighbours_when_asked(runtime, endpoint_url, splits, tmp_path):
    """AWS's k-NN verbose mode through boto3: ``labels`` and ``distances`` of the k nearest,
    nearest first, only for ``verbose=true``; checked against scikit-learn's neighbour search."""
    import boto3
    from sklearn.neighbors import NearestNeighbors

    from ferry.digits.configs import image_uri
    from ferry.sagemaker.algorithms import train_knn

    (images, labels), _, (test_x, _) = splits
    index, index_labels = images[:1000], labels[:1000]
    train_knn({"k": "3", "feature_dim": "784", "sample_size": "1000", "predictor_type": "classifier"},
              index, index_labels, tmp_path, log=lambda line: None)
    deploy(endpoint_url, "knn-test", upload_model_dir(boto3.client("s3"), tmp_path, BUCKET, "tests/knn/model.tar.gz"),
           image_uri("knn", "eu-west-1"))
    distances, rows = NearestNeighbors(n_neighbors=3).fit(index).kneighbors(test_x[:4])
    for accept in ("application/json", "application/json; verbose=true"):
        answer = runtime.invoke_endpoint(EndpointName="knn-test", ContentType="application/x-recordio-protobuf",
                                         Accept=accept, Body=recordio(test_x[:4]))
        predictions = json.loads(answer["Body"].read())["predictions"]
        if "verbose" not in accept:
            assert all(set(p) == {"predicted_label"} for p in predictions)
            continue
        assert [p["labels"] for p in predictions] == index_labels[rows].astype(float).tolist()
        assert np.allclose([p["distances"] for p in predictions], distances, rtol=1e-4)


@pytest.mark.parametrize("endpoint", ["kmeans-test", "svm-test"])
def test_every_request_format_gives_the_same_answer(runtime, endpoint_url, artifacts, splits, endpoint):
    _, _, (test_x, test_y) = splits
    deploy(endpoint_url, "kmeans-test", artifacts["kmeans"], KMEANS_IMAGE)
    deploy_script_model(endpoint_url, "svm-test", artifacts["svm"])
    images = test_x[:20]
    from_recordio = invoke(runtime, endpoint, recordio(images))
    csv = "\n".join(",".join(f"{v:.9g}" for v in row) for row in images).encode()
    from_csv = invoke(runtime, endpoint, csv, "text/csv")
    as_json = json.dumps({"instances": [{"features": row.tolist()} for row in images]}).encode()
    from_json = invoke(runtime, endpoint, as_json, "application/json")
    assert from_recordio == from_csv == from_json
    if endpoint == "svm-test":
        labels = np.array([p["predicted_label"] for p in from_recordio["predictions"]])
        assert (labels == test_y[:20]).mean() >= 0.9


HOSTILE_BODIES = [
    (b"1,2,3", "text/csv", "784"),
    (b"\xce\xd7\x23\x0a\xff\xff", "application/x-recordio-protobuf", "truncated"),
    (b"\x00\x01garbage", "application/x-recordio-protobuf", "RecordIO"),
    (b"[" * 200_000 + b"]" * 200_000, "application/json", "RecursionError"),
    (b'{"instances": [{"features": [1e999]}]}', "application/json", ""),
    (b'{"instances": [{"features": [' + b"9" * 5000 + b"]}]}", "application/json", ""),
    (b'{"instances": [{"features": "not numbers"}]}', "application/json", ""),
    (b'{"instances": [[1, [2, 3]]]}', "application/json", ""),
    (b'{"instances": 7}', "application/json", ""),
    (json.dumps([[float("nan")] * 784]).encode(), "application/json", "finite"),
    (",".join(["nan"] * 784).encode(), "text/csv", "finite"),
    (b"\xff\xfe\x00", "text/csv", ""),
    (b"{}", "image/gif", "unsupported content type"),
    (b"", "text/csv", "no records"),
]
HOSTILE_IDS = ["width", "truncated-recordio", "not-recordio", "deep-json", "overflowing-float", "5000-digit-int",
               "string-features", "ragged", "not-a-list", "json-nan", "csv-nan", "not-utf8", "content-type", "empty"]


@pytest.mark.parametrize("endpoint", ["kmeans-test", "svm-test"])
@pytest.mark.parametrize(("body", "content_type", "words"), HOSTILE_BODIES, ids=HOSTILE_IDS)
def test_hostile_bodies_get_sagemakers_4xx_never_a_500(runtime, endpoint_url, artifacts, splits, endpoint, body,
                                                         content_type, words):
    """The built-in model's parser (kmeans-test) and the script's input_fn (svm-test) alike."""
    from botocore.exceptions import ClientError

    _, _, (test_x, _) = splits
    deploy(endpoint_url, "kmeans-test", artifacts["kmeans"], KMEANS_IMAGE)
    deploy_script_model(endpoint_url, "svm-test", artifacts["svm"])
    with pytest.raises(ClientError) as caught:
        invoke(runtime, endpoint, body, content_type)
    error = caught.value.response
    assert error["Error"]["Code"] == "ValidationError", error
    assert 400 <= error["ResponseMetadata"]["HTTPStatusCode"] < 500
    assert words in error["Error"]["Message"]
    assert "Traceback" not in error["Error"]["Message"]
    assert len(invoke(runtime, endpoint, recordio(test_x[:1]))["predictions"]) == 1  # still serving


def test_an_unknown_endpoint_is_a_validation_error(runtime, splits):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="Endpoint no-such-endpoint not found"):
        invoke(runtime, "no-such-endpoint", recordio(splits[2][0][:1]))


def test_a_lying_content_length_is_a_4xx(endpoint_url):
    import http.client
    from urllib.parse import urlparse

    url = urlparse(endpoint_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    connection.putrequest("POST", "/endpoints/svm-test/invocations")
    connection.putheader("Content-Type", "text/csv")
    connection.putheader("Content-Length", "99999999999")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and b"exceeds" in response.read()
    connection.close()


@pytest.mark.parametrize("endpoint", ["kmeans-test", "svm-test"])
def test_concurrent_requests_each_get_their_own_answer(runtime, endpoint_url, artifacts, splits, svm_model,
                                                       kmeans_model_dir, endpoint):
    """k-means predicts requests that arrive together in one batch, the script their rows in one call:
    answers must not mix."""
    from concurrent.futures import ThreadPoolExecutor

    from ferry.sagemaker.inference import load_builtin_model

    _, _, (test_x, _) = splits
    deploy(endpoint_url, "kmeans-test", artifacts["kmeans"], KMEANS_IMAGE)
    deploy_script_model(endpoint_url, "svm-test", artifacts["svm"])
    model = load_builtin_model(kmeans_model_dir) if endpoint == "kmeans-test" else None
    sizes = [1, 3, 1, 2] * 8  # requests of 1 to 3 images, 32 in flight from 16 threads
    starts = np.cumsum([0, *sizes[:-1]])
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: invoke(runtime, endpoint, recordio(test_x[starts[i]:starts[i] + sizes[i]])),
                                range(len(sizes))))
    for i, answer in enumerate(answers):
        images = test_x[starts[i]:starts[i] + sizes[i]]
        expected = model.predict(images) if model else labels_of(svm_model, images)
        # A batch's float32 arithmetic may differ in the last bits from a single request's.
        assert len(answer["predictions"]) == len(expected)
        for got, want in zip(answer["predictions"], expected, strict=True):
            assert got == pytest.approx(want, rel=1e-5)


def test_container_contract_routes(endpoint_url):
    with urllib.request.urlopen(f"{endpoint_url}/ping", timeout=5) as response:
        assert response.status == 200  # models are deployed by the tests above (or not: 503)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{endpoint_url}/nowhere", timeout=5)
    assert caught.value.code == 404 and "no route" in json.loads(caught.value.read())["message"]


def hostile_archive(tmp_path, members: dict[str, bytes], symlink: tuple[str, str] | None = None) -> bytes:
    import tarfile

    archive = tmp_path / "hostile.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink[0])
            info.type, info.linkname = tarfile.SYMTYPE, symlink[1]
            tar.addfile(info)
    return archive.read_bytes()


def test_models_that_cannot_load_fail_the_deploy_and_keep_the_old_model(runtime, endpoint_url, artifacts, splits,
                                                                          tmp_path):
    """A missing archive, garbage, members that climb out of the model directory, a link out,
    a script whose model_fn raises: each fails its deploy with the reason, nothing is written
    outside the model directory, and the endpoint keeps serving the model it had."""
    import boto3

    _, _, (test_x, _) = splits
    s3 = boto3.client("s3")
    deploy_script_model(endpoint_url, "svm-test", artifacts["svm"])
    failing_script = b"def model_fn(model_dir):\n    raise RuntimeError('weights are corrupt')\n"
    cases = {
        "missing": (None, "Not Found"),
        "garbage": (b"not a tar.gz at all", "not a readable tar.gz"),
        "climbing": (hostile_archive(tmp_path, {"../../escaped.txt": b"x"}), "outside the destination"),
        "absolute": (hostile_archive(tmp_path, {"/tmp/ferry-absolute.txt": b"x"}), ""),
        "absolute-link": (hostile_archive(tmp_path, {}, ("code", "/etc")), "link to an absolute path"),
        "link-out": (hostile_archive(tmp_path, {}, ("code", "../../../../etc")), "outside the destination"),
        "model-fn-raises": (hostile_archive(tmp_path, {"code/classifier.py": failing_script}), "weights are corrupt"),
    }
    for case, (archive, words) in cases.items():
        key = f"tests/hostile/{case}/model.tar.gz"
        if archive is not None:
            s3.put_object(Bucket=BUCKET, Key=key, Body=archive)
        with pytest.raises(urllib.error.HTTPError) as caught:
            deploy_script_model(endpoint_url, "svm-test", f"s3://{BUCKET}/{key}")
        message = json.loads(caught.value.read())["message"]
        assert caught.value.code == 400 and words in message, (case, message)
        assert "predicted_label" in invoke(runtime, "svm-test", recordio(test_x[:1]))["predictions"][0], case
    assert not os.path.exists("/tmp/ferry-absolute.txt")


def test_an_archive_over_the_size_cap_is_not_fetched(stack, artifacts, tmp_path):
    """The caps are 1 GiB packed and 4 GiB unpacked; the same check with small caps."""
    import boto3

    from ferry.sagemaker.endpoint_server import fetch_artifact

    with pytest.raises(ValueError, match="at most 1,000 are accepted"):
        fetch_artifact(boto3.client("s3"), artifacts["svm"], tmp_path / "a", max_bytes=1000)
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="expands to"):
        fetch_artifact(boto3.client("s3"), artifacts["svm"], tmp_path / "b", max_expanded=1000)


def test_redeploy_swaps_the_model_without_a_failed_request(runtime, endpoint_url, artifacts, splits):
    """Requests run in a loop while the endpoint is redeployed kmeans → svm → kmeans."""
    _, _, (test_x, _) = splits
    body = recordio(test_x[:1])
    deploy(endpoint_url, "swap-test", artifacts["kmeans"], KMEANS_IMAGE)
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
        deploy_script_model(endpoint_url, "swap-test", artifacts["svm"])
        deploy(endpoint_url, "swap-test", artifacts["kmeans"], KMEANS_IMAGE)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not errors, errors[:3]
    assert "svm" in shapes and shapes[0] == shapes[-1] == "kmeans" and len(shapes) > 20


def test_endpoints_come_back_after_a_restart(stack, runtime, endpoint_url, artifacts, splits):
    _, _, (test_x, _) = splits
    deploy_script_model(endpoint_url, "restart-test", artifacts["svm"])
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
    model_dir = script_model_dir(svm_model, tmp_path / "svm")
    url = upload_model_dir(s3, model_dir, BUCKET, "tests/fragile/model.tar.gz")
    deploy_script_model(endpoint_url, "fragile", url)
    s3.delete_object(Bucket=BUCKET, Key="tests/fragile/model.tar.gz")
    service = stack.service("endpoint")
    service.stop()
    service.start()
    with pytest.raises(ClientError) as caught:
        invoke(runtime, "fragile", recordio(test_x[:1]))
    assert "not in service" in caught.value.response["Error"]["Message"]
    assert json.loads(service.registry.read_text())["fragile"]["EndpointStatus"] == "Failed"
    upload_model_dir(s3, model_dir, BUCKET, "tests/fragile/model.tar.gz")
    service.stop()
    service.start()
    assert "predicted_label" in invoke(runtime, "fragile", recordio(test_x[:1]))["predictions"][0]


def test_only_the_stack_credentials_can_deploy(runtime, endpoint_url, artifacts, splits):
    """A model is code's next of kin: nobody without the stack's key pair may put one here."""
    from botocore.credentials import Credentials

    from ferry.sagemaker.endpoint_server import deploy_model

    _, _, (test_x, _) = splits
    deploy_script_model(endpoint_url, "guarded", artifacts["svm"])
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
        # InvokeEndpoint and the endpoint list need a signature too, as on AWS.
        "unsigned invocation": lambda: urllib.request.urlopen(urllib.request.Request(
            f"{endpoint_url}/endpoints/guarded/invocations", data=recordio(test_x[:1]), method="POST",
            headers={"Content-Type": "application/x-recordio-protobuf"}), timeout=10),
        "unsigned container invocation": lambda: urllib.request.urlopen(urllib.request.Request(
            f"{endpoint_url}/invocations", data=b"1", method="POST", headers={"Content-Type": "text/csv"}), timeout=10),
        "unsigned listing": lambda: urllib.request.urlopen(f"{endpoint_url}/endpoints", timeout=10),
        "unsigned description": lambda: urllib.request.urlopen(f"{endpoint_url}/endpoints/guarded", timeout=10),
    }
    for what, attempt in attempts.items():
        with pytest.raises(urllib.error.HTTPError) as refused:
            attempt()
        assert refused.value.code == 403, what
        assert "needs the stack's credentials" in json.loads(refused.value.read())["message"], what
    # Still the model the stack deployed.
    assert "predicted_label" in invoke(runtime, "guarded", recordio(test_x[:1]))["predictions"][0]
    import boto3
    from botocore.exceptions import ClientError

    for credentials in ({"aws_secret_access_key": "not-the-secret"}, {"region_name": "us-east-1"}):
        stranger = boto3.client("sagemaker-runtime", **{"aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
                                                         "aws_secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
                                                         "region_name": "eu-west-1", **credentials})
        with pytest.raises(ClientError) as refused:
            invoke(stranger, "guarded", recordio(test_x[:1]))
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, credentials
