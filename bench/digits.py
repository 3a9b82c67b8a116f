"""Digits classifier: training time and held-out accuracy per algorithm; endpoint and API latency
at 16 concurrent clients (closed loop, keep-alive, loopback), 5,000 requests each."""

from __future__ import annotations

import io
import time

from bench.load import run_load

BUCKET = "ferry-digits"
REQUESTS, CONCURRENCY = 5000, 16


def bench_digits(stack) -> list[str]:
    import boto3

    from ferry.digits.configs import training_config
    from ferry.digits.convert import mnist_to_recordio
    from ferry.digits.endpoint import deploy_model
    from ferry.digits.sample_data import SAMPLE_KEY, mnist_splits, sample_picture
    from ferry.digits.training import accuracy, load_model_artifact, run_training_job
    from ferry.sagemaker.recordio import write_numpy_to_dense_tensor

    s3 = boto3.client("s3")
    s3.copy_object(Bucket=BUCKET, Key="mnist.pkl.gz",
                   CopySource={"Bucket": "sagemaker-sample-data-eu-west-1", "Key": SAMPLE_KEY})
    mnist_to_recordio(s3, BUCKET, "mnist.pkl.gz", "mnist_data")
    _, _, (test_x, test_y) = mnist_splits()
    lines = ["### Digits: training (4,000 digits, SageMaker contract, S3 in and out) and held-out accuracy (500)",
             "| algorithm | training time | test accuracy |", "| --- | --- | --- |"]
    artifacts = {}
    for algorithm in ("kmeans", "svm"):
        # The DAG's request, with a concrete job name instead of its template.
        config = {**training_config(BUCKET, {"k": "10", "feature_dim": "784", "algorithm": algorithm}),
                  "TrainingJobName": f"bench-{algorithm}-{int(time.time())}"}
        started = time.perf_counter()
        job = run_training_job(s3, config)
        seconds = time.perf_counter() - started
        artifacts[algorithm] = job["ModelArtifacts"]["S3ModelArtifacts"]
        score = accuracy(load_model_artifact(s3, artifacts[algorithm]), test_x, test_y)
        lines.append(f"| {algorithm} | {seconds:.1f} s | {score:.3f} |")

    endpoint_url, api_url = stack.settings.url("endpoint"), stack.settings.url("api")
    for algorithm, artifact in artifacts.items():
        deploy_model(endpoint_url, f"bench-{algorithm}", artifact)
    deploy_model(endpoint_url, "mnistclassifier", artifacts["svm"])
    record = io.BytesIO()
    write_numpy_to_dense_tensor(record, test_x[:1])
    picture = sample_picture(test_x[0])
    runs = [
        ("endpoint, kmeans (RecordIO, 1 image)", endpoint_url, "/endpoints/bench-kmeans/invocations",
         record.getvalue(), "application/x-recordio-protobuf", 10),
        ("endpoint, svm (RecordIO, 1 image)", endpoint_url, "/endpoints/bench-svm/invocations",
         record.getvalue(), "application/x-recordio-protobuf", 10),
        (f"API under chalice local, svm behind ({len(picture):,} B JPEG)", api_url, "/", picture, "image/jpeg", 30),
    ]
    lines += ["", f"### Digits: latency at {CONCURRENCY} concurrent clients, {REQUESTS:,} requests each (loopback)",
              "| server | req/s | p50 | p90 | p99 | max | errors | p99 target |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, url, path, body, content_type, target in runs:
        run_load(url, path, body, content_type, requests=200, concurrency=CONCURRENCY)  # warm up
        result = run_load(url, path, body, content_type, requests=REQUESTS, concurrency=CONCURRENCY).summary()
        verdict = "✓" if result["p99_ms"] <= target and not result["errors"] else "✗"
        lines.append(f"| {label} | {result['rps']:.0f} | {result['p50_ms']:.1f} ms | {result['p90_ms']:.1f} ms | "
                     f"{result['p99_ms']:.1f} ms | {result['max_ms']:.1f} ms | {result['errors']} of "
                     f"{result['requests']:,} | ≤ {target} ms {verdict} |")
    return lines
