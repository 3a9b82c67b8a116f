"""Digits classifier on ferry's local SageMaker: per model, the training job's time and the live
endpoint's held-out accuracy; then endpoint and API latency at 16 concurrent clients (closed
loop, keep-alive, loopback), 5,000 requests each. Everything goes through the control plane
with plain boto3, as the DAG's operators do."""

from __future__ import annotations

import io
import time

from bench.load import run_load

BUCKET = "ferry-digits"
REQUESTS, CONCURRENCY = 5000, 16
MODELS = ("kmeans", "knn", "sklearn")


def wait(describe, status_key: str, done: tuple[str, ...], timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while (answer := describe())[status_key] not in done:
        if time.monotonic() > deadline:
            raise TimeoutError(answer)
        time.sleep(0.5)
    return answer


def train_and_deploy(sagemaker, s3, model: str, code_uri: str) -> tuple[float, float, str]:
    """(job seconds from create to Completed, seconds the job itself reports, endpoint name)."""
    from ferry.digits.configs import endpoint_request, training_request

    name = f"bench-{model}-{int(time.time())}"
    request = training_request(model, bucket=BUCKET, code_uri=code_uri, job_name=name, region="eu-west-1",
                               role_arn="arn:aws:iam::000000000000:role/ferry-sagemaker")
    started = time.perf_counter()
    sagemaker.create_training_job(**request)
    job = wait(lambda: sagemaker.describe_training_job(TrainingJobName=name), "TrainingJobStatus",
               ("Completed", "Failed", "Stopped"))
    wall = time.perf_counter() - started
    if job["TrainingJobStatus"] != "Completed":
        raise RuntimeError(f"{name}: {job.get('FailureReason')}")
    deploy = endpoint_request(job)
    endpoint = f"bench-{model}"
    sagemaker.create_model(**deploy["Model"])
    sagemaker.create_endpoint_config(**deploy["EndpointConfig"])
    try:
        sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=name)
    except sagemaker.exceptions.ClientError:
        sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=name)
    time.sleep(1)
    wait(lambda: sagemaker.describe_endpoint(EndpointName=endpoint), "EndpointStatus", ("InService", "Failed"))
    return wall, (job["TrainingEndTime"] - job["TrainingStartTime"]).total_seconds(), endpoint


def bench_digits(stack) -> list[str]:
    import boto3

    from ferry.digits.code_bundle import upload_source_bundle
    from ferry.digits.convert import mnist_to_recordio
    from ferry.digits.evaluate import endpoint_accuracy, learn_cluster_digits
    from ferry.digits.sample_data import SAMPLE_KEY, mnist_splits, sample_picture
    from ferry.digits.synthetic import upload_training_digits
    from ferry.sagemaker.endpoint_server import deploy_model
    from ferry.sagemaker.recordio import write_numpy_to_dense_tensor

    s3, sagemaker, runtime = boto3.client("s3"), boto3.client("sagemaker"), boto3.client("sagemaker-runtime")
    s3.copy_object(Bucket=BUCKET, Key="mnist.pkl.gz",
                   CopySource={"Bucket": "sagemaker-sample-data-eu-west-1", "Key": SAMPLE_KEY})
    mnist_to_recordio(s3, BUCKET, "mnist.pkl.gz", "mnist_data")
    code_uri = upload_source_bundle(s3, BUCKET)
    upload_training_digits(s3, BUCKET)
    _, _, (test_x, _) = mnist_splits()
    lines = ["### Digits: training jobs on the local control plane (4,000 digits, S3 in and out) and held-out "
             "accuracy of the live endpoint (500)",
             "| model | create → Completed | job's own time | test accuracy |", "| --- | --- | --- | --- |"]
    for model in MODELS:
        wall, own, endpoint = train_and_deploy(sagemaker, s3, model, code_uri)
        description = sagemaker.describe_endpoint(EndpointName=endpoint)
        config = sagemaker.describe_endpoint_config(EndpointConfigName=description["EndpointConfigName"])
        artifact = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])[
            "PrimaryContainer"]["ModelDataUrl"]
        learned = learn_cluster_digits(s3, runtime, BUCKET, artifact, endpoint=endpoint)
        accuracy = endpoint_accuracy(s3, runtime, BUCKET, endpoint=endpoint,
                                     cluster_digits=learned["cluster_digits"] if learned else None)["accuracy"]
        lines.append(f"| {model} | {wall:.1f} s | {own:.1f} s | {accuracy:.3f} |")

    endpoint_url, api_url = stack.settings.url("endpoint"), stack.settings.url("api")
    served = sagemaker.describe_endpoint(EndpointName="bench-sklearn")
    model = sagemaker.describe_model(ModelName=served["EndpointConfigName"])["PrimaryContainer"]
    deploy_model(endpoint_url, "mnistclassifier", model["ModelDataUrl"], image=model["Image"],
                 environment=model.get("Environment"))
    record = io.BytesIO()
    write_numpy_to_dense_tensor(record, test_x[:1])
    picture = sample_picture(test_x[0])
    signer = boto3.Session().get_credentials()  # the endpoint server checks SigV4, as InvokeEndpoint does
    runs = [(f"endpoint, {m} (RecordIO, 1 image, SigV4-signed)", endpoint_url, f"/endpoints/bench-{m}/invocations",
             record.getvalue(), "application/x-recordio-protobuf", 10, signer) for m in MODELS]
    runs.append((f"API under chalice local, sklearn behind ({len(picture):,} B JPEG)", api_url, "/", picture,
                 "image/jpeg", 30, None))
    lines += ["", f"### Digits: latency at {CONCURRENCY} concurrent clients, {REQUESTS:,} requests each (loopback)",
              "| server | req/s | p50 | p90 | p99 | max | errors | p99 target |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, url, path, body, content_type, target, credentials in runs:
        run_load(url, path, body, content_type, requests=200, concurrency=CONCURRENCY,
                 credentials=credentials)  # warm up
        result = run_load(url, path, body, content_type, requests=REQUESTS, concurrency=CONCURRENCY,
                          credentials=credentials).summary()
        verdict = "✓" if result["p99_ms"] <= target and not result["errors"] else "✗"
        lines.append(f"| {label} | {result['rps']:.0f} | {result['p50_ms']:.1f} ms | {result['p90_ms']:.1f} ms | "
                     f"{result['p99_ms']:.1f} ms | {result['max_ms']:.1f} ms | {result['errors']} of "
                     f"{result['requests']:,} | ≤ {target} ms {verdict} |")
    return lines
