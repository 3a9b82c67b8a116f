"""The digits DAG end to end under real Airflow (`airflow dags test`) on the test stack, once per
model: the amazon provider's SageMaker operators drive ferry's control plane, which really
trains (built-in k-means and k-NN, ferry's classifier in script mode) and deploys on the
endpoint server; the DAG then measures the live endpoint on the held-out split."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration

AIRFLOW = str(Path(sys.executable).parent / "airflow")
BUCKET = "ferry-digits"


def airflow(*args: str) -> str:
    result = subprocess.run([AIRFLOW, *args], env=os.environ.copy(), capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "state=success" in output, output[-6000:]
    assert "state=failed" not in output, output[-6000:]
    return output


#: What each model's training log says (shown in the task log through print_log), and its accuracy
#: range: near what each reaches here, seeded (measured 2026-12-03: 0.978, 0.916, 0.572).
EXPECTED = {
    "sklearn": ("training on 4000 digits", 0.97, 1.0),
    "knn": ("k-NN: index of 4000 of 4000 records", 0.90, 0.94),
    "kmeans": ("k-means: 4000 records of 784 features, k=10", 0.55, 0.60),
}


@pytest.mark.parametrize("model", ["sklearn", "kmeans", "knn"])
def test_the_dag_trains_deploys_and_measures_each_model(airflow_db, stack, splits, model):
    import boto3

    from ferry.digits.configs import hyperparameters, image_uri
    from ferry.sagemaker.recordio import read_records

    output = airflow("dags", "test", "digits_classifier", "--conf", json.dumps({"model": model}))
    s3, sagemaker = boto3.client("s3"), boto3.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName="mnistclassifier")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model_name = config["ProductionVariants"][0]["ModelName"]
    # The seed's bug, fixed: the endpoint config serves the model that was created, named after its job.
    created = sagemaker.describe_model(ModelName=model_name)
    job = sagemaker.describe_training_job(TrainingJobName=model_name)
    assert model_name.startswith(f"mnistclassifier-{model}-")
    assert job["TrainingJobStatus"] == "Completed" and endpoint["EndpointStatus"] == "InService"
    assert job["AlgorithmSpecification"]["TrainingImage"] == image_uri(model, "eu-west-1")
    assert job["HyperParameters"] == hyperparameters(model, f"s3://{BUCKET}/code/sourcedir.tar.gz")
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/mnist_data"
    artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert created["PrimaryContainer"]["ModelDataUrl"] == artifact and artifact.endswith("/output/model.tar.gz")
    # It really trained, and the task log showed the job's CloudWatch log.
    log_line, low, high = EXPECTED[model]
    assert log_line in output, output[-3000:]
    measured = re.search(r"'accuracy': ([0-9.]+)", output)
    print(f"\n  {model} accuracy through the DAG: {measured and measured.group(1)}")
    assert measured and low <= float(measured.group(1)) <= high, output[-3000:]
    bucket, key = artifact.removeprefix("s3://").split("/", 1)
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
        members = sorted(tar.getnames())
    (train_x, train_y), _, (test_x, _) = splits
    if model == "sklearn":
        # Script mode: the model carries its code, and serves from it.
        assert {"model.npz", "metadata.json", "code/classifier.py", "code/sagemaker_recordio.py"} <= set(members)
        assert created["PrimaryContainer"]["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
        assert job["FinalMetricDataList"][0]["MetricName"] == "train:accuracy"
        # The RecordIO train set holds exactly the pickle's train split, labels included.
        records = read_records(io.BytesIO(s3.get_object(Bucket=BUCKET, Key="mnist_data")["Body"].read()))
        assert len(records) == len(train_x)
        assert np.array_equal(records[17].features["values"], train_x[17])
        assert records[17].label["values"][0] == train_y[17]
    else:
        assert members == ["metadata.json", "model.npz"]  # plain arrays, as the built-in algorithms leave
    if model == "kmeans":
        # The cluster → digit map beside the model, learned from the labelled training digits.
        cluster_digits = json.loads(s3.get_object(Bucket=bucket, Key=key.replace("model.tar.gz",
                                                                                   "cluster-digits.json"))["Body"].read())
        assert sorted(cluster_digits) == [str(c) for c in range(10)]
    answer = boto3.client("sagemaker-runtime").invoke_endpoint(
        EndpointName="mnistclassifier", ContentType="text/csv", Body=",".join(map(str, test_x[0])).encode())
    prediction = json.loads(answer["Body"].read())["predictions"][0]
    assert ("closest_cluster" if model == "kmeans" else "predicted_label") in prediction


def test_rerunning_the_sagemaker_deploy_reuses_what_exists(stack, capfd, kmeans_model_dir):
    """The provider's operator fails on a second try once the model exists ("Cannot create
    already existing model", from SageMaker and from ferry's control plane alike); ours reuses
    the model and endpoint config, and the endpoint that exists is updated — and serves, both
    times (a real model: an endpoint that failed could only be deleted, as on AWS)."""
    import boto3

    from ferry.digits.operators import ReusingSageMakerEndpointOperator

    from .conftest import upload_model_dir

    artifact = upload_model_dir(boto3.client("s3"), kmeans_model_dir, BUCKET, "rerun/model.tar.gz")

    def config() -> dict:
        return {
            "Model": {"ModelName": "rerun-model", "ExecutionRoleArn": "arn:aws:iam::000000000000:role/x",
                      "PrimaryContainer": {"Image": "438346466558.dkr.ecr.eu-west-1.amazonaws.com/kmeans:1",
                                           "ModelDataUrl": artifact}},
            "EndpointConfig": {"EndpointConfigName": "rerun-config", "ProductionVariants": [
                {"InitialInstanceCount": 1, "InstanceType": "ml.t2.medium", "ModelName": "rerun-model",
                 "VariantName": "AllTraffic"}]},
            "Endpoint": {"EndpointConfigName": "rerun-config", "EndpointName": "rerun-endpoint"},
        }

    logs = []
    for _ in range(2):
        operator = ReusingSageMakerEndpointOperator(task_id="deploy", config=config(), wait_for_completion=False)
        result = operator.execute({})
        assert result["Endpoint"]["EndpointName"] == "rerun-endpoint"
        logs.append(capfd.readouterr().out)
        while (endpoint := boto3.client("sagemaker").describe_endpoint(
                EndpointName="rerun-endpoint"))["EndpointStatus"] in ("Creating", "Updating"):
            time.sleep(0.2)  # a retry comes after the first try ended
        assert endpoint["EndpointStatus"] == "InService", endpoint.get("FailureReason")
    assert "Creating SageMaker model rerun-model" in logs[0] and "exists already" not in logs[0]
    assert "Creating SageMaker model" not in logs[1] and "Creating endpoint config" not in logs[1]
    assert "Model rerun-model exists already" in logs[1]
    assert boto3.client("sagemaker").describe_model(ModelName="rerun-model")["ModelName"] == "rerun-model"
