"""The Chalice app under `chalice local` (the stack's `api` service), in front of the endpoint
server: pictures in, digits out; every bad input a JSON 4xx; a dead endpoint a JSON 503."""

from __future__ import annotations

import io
import json
import subprocess
import urllib.error
import urllib.request

import pytest
from PIL import Image

from .conftest import deploy_script_model, photo_of, undeploy
from .test_preprocess import blank_jpeg, png_bomb

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_url(stack, svm_artifact):
    """The API with ferry's classifier live on the endpoint it calls (mnistclassifier)."""
    deploy_script_model(stack.settings.url("endpoint"), "mnistclassifier", svm_artifact)
    return stack.settings.url("api")


def post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/", data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_pictures_of_test_digits_get_their_digit(api_url, splits):
    _, _, (test_x, test_y) = splits
    right = 0
    for index in range(40):
        fmt = "JPEG" if index % 2 else "PNG"
        status, answer = post(api_url, photo_of(test_x[index], fmt=fmt), f"image/{fmt.lower()}")
        assert status == 200, answer
        assert answer["digit"] == answer["predictions"][0]["predicted_label"]
        right += answer["digit"] == test_y[index]
    assert right >= 36


def test_the_readmes_curl_example(api_url, splits, tmp_path):
    _, _, (test_x, test_y) = splits
    picture = tmp_path / "digit.jpeg"
    picture.write_bytes(photo_of(test_x[0]))
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--request", "POST", "--url", f"{api_url}/",
         "--header", "content-type: image/jpeg", "--data-binary", f"@{picture}"],
        capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(result.stdout)["digit"] == test_y[0]


def truncated_jpeg(splits) -> bytes:
    whole = photo_of(splits[2][0][0])
    return whole[: len(whole) // 2]


def huge_jpeg() -> bytes:
    """A real JPEG of 8,000 x 6,000 pixels: over the pixel limit, small on the wire."""
    out = io.BytesIO()
    Image.new("L", (8000, 6000), 255).save(out, "JPEG", quality=10)
    return out.getvalue()


@pytest.mark.parametrize(
    ("make_body", "content_type", "status"),
    [
        (lambda s: b"GIF89a not really", "image/gif", 415),
        (lambda s: b"plain text, not a picture", "image/jpeg", 400),
        (truncated_jpeg, "image/jpeg", 400),
        (lambda s: png_bomb(50_000, 50_000), "image/png", 413),
        (lambda s: huge_jpeg(), "image/jpeg", 413),
        (lambda s: b"\xff\xd8" + b"\x00" * (9 * 1024 * 1024), "image/jpeg", 413),
        (lambda s: blank_jpeg(), "image/jpeg", 422),
        (lambda s: b"", "image/png", 400),
    ],
    ids=["wrong-type", "not-an-image", "truncated", "png-bomb", "too-many-pixels", "oversized-body", "blank",
         "empty"],
)
def test_bad_input_gets_a_json_4xx_and_the_server_keeps_serving(api_url, splits, make_body, content_type, status):
    got, answer = post(api_url, make_body(splits), content_type)
    assert got == status, answer
    assert answer.get("error") or answer.get("Message")  # Chalice's own 415 says "Message"
    assert "Traceback" not in json.dumps(answer)
    _, _, (test_x, _) = splits
    assert post(api_url, photo_of(test_x[1]), "image/jpeg")[0] == 200


def test_a_dead_endpoint_gets_a_json_503_and_the_api_recovers(stack, api_url, splits):
    _, _, (test_x, _) = splits
    picture = photo_of(test_x[2])
    service = stack.service("endpoint")
    service.stop()
    try:
        status, answer = post(api_url, picture, "image/jpeg")
        assert status == 503 and "not available" in answer["error"]
    finally:
        service.start()  # the registry brings mnistclassifier back
    assert post(api_url, picture, "image/jpeg")[0] == 200


def test_an_endpoint_that_does_not_exist_is_a_503(stack, api_url, splits, svm_artifact):
    _, _, (test_x, _) = splits
    undeploy(stack.settings.url("endpoint"), "mnistclassifier")
    try:
        status, answer = post(api_url, photo_of(test_x[2]), "image/jpeg")
        assert status == 503 and "mnistclassifier" in answer["error"]
    finally:
        deploy_script_model(stack.settings.url("endpoint"), "mnistclassifier", svm_artifact)


def test_get_serves_the_drawing_page(api_url):
    with urllib.request.urlopen(api_url + "/", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        assert b"<canvas" in response.read()


def test_blank_canvas_drawing_gets_422(api_url):
    out = io.BytesIO()
    Image.new("RGBA", (280, 280), (255, 255, 255, 255)).save(out, "PNG")
    status, answer = post(api_url, out.getvalue(), "image/png")
    assert status == 422 and "blank" in answer["error"]


def test_digits_are_independent_of_picture_size(api_url, splits):
    _, _, (test_x, test_y) = splits
    answers = {post(api_url, photo_of(test_x[0], size=size), "image/jpeg")[1]["digit"] for size in (56, 300, 1500)}
    assert answers == {int(test_y[0])}


def test_a_kmeans_endpoint_answers_digits_through_the_map_beside_its_model(stack, api_url, splits, svm_artifact,
                                                                             kmeans_model_dir):
    """The seed's model answers clusters; the API finds the cluster → digit map beside the model
    the endpoint serves (through the control plane, as on AWS) and answers a digit."""
    import boto3

    from ferry.digits import cluster_map
    from ferry.sagemaker.inference import load_builtin_model

    from .conftest import KMEANS_IMAGE, upload_model_dir

    (images, labels), _, (test_x, _) = splits
    s3, sagemaker = boto3.client("s3"), boto3.client("sagemaker")
    artifact = upload_model_dir(s3, kmeans_model_dir, "ferry-digits", "tests/api-kmeans/output/model.tar.gz")
    model = load_builtin_model(kmeans_model_dir)
    cluster_digits = cluster_map.learn([p["closest_cluster"] for p in model.predict(images)], labels)
    try:
        for name in ("api-kmeans-nomap", "api-kmeans"):
            sagemaker.create_model(ModelName=name, ExecutionRoleArn="arn:aws:iam::000000000000:role/x",
                                   PrimaryContainer={"Image": KMEANS_IMAGE, "ModelDataUrl": artifact})
            sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
                "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large"}])
        sagemaker.create_endpoint(EndpointName="mnistclassifier", EndpointConfigName="api-kmeans-nomap")
        sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="mnistclassifier",
                                                         WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        status, answer = post(api_url, photo_of(test_x[0]), "image/jpeg")
        assert status == 503 and "map to digits" in answer["error"]  # no map stored yet
        cluster_map.save(s3, artifact, cluster_digits)  # a failed look-up is not cached: the next request finds it
        status, answer = post(api_url, photo_of(test_x[0]), "image/jpeg")
        expected = cluster_digits[str(int(model.predict(test_x[:1])[0]["closest_cluster"]))]
        assert status == 200 and answer["digit"] == expected, answer
        assert "closest_cluster" in answer["predictions"][0]
    finally:
        sagemaker.delete_endpoint(EndpointName="mnistclassifier")
        deploy_script_model(stack.settings.url("endpoint"), "mnistclassifier", svm_artifact)

