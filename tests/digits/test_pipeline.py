"""Both backends' DAGs end to end under real Airflow (`airflow dags test`) on the test stack:
the local one trains and serves here; the SageMaker one drives ferry's SageMaker control plane,
which runs the built-in k-means job and deploys its model on the endpoint server."""

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


def test_local_backend_trains_deploys_and_serves(airflow_db, stack, splits):
    import boto3

    from ferry.sagemaker.recordio import read_records

    output = airflow("dags", "test", "digits_classifier", "--conf", json.dumps({"algorithm": "svm"}))
    s3 = boto3.client("s3")
    # The RecordIO train set holds exactly the pickle's train split, labels included.
    records = read_records(io.BytesIO(s3.get_object(Bucket=BUCKET, Key="mnist_data")["Body"].read()))
    (train_x, train_y), _, _ = splits
    assert len(records) == len(train_x)
    assert np.array_equal(records[17].features["values"], train_x[17])
    assert records[17].label["values"][0] == train_y[17]
    # The artifact sits where SageMaker puts it, and holds plain arrays.
    jobs = s3.list_objects_v2(Bucket=BUCKET, Prefix="mnistclassifier-output/")["Contents"]
    artifact = max(jobs, key=lambda o: o["LastModified"])["Key"]
    assert artifact.endswith("/output/model.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=BUCKET, Key=artifact)["Body"].read())) as tar:
        assert sorted(tar.getnames()) == ["metadata.json", "model.npz"]
    # The endpoint serves it, and the DAG measured it on the held-out split.
    measured = re.search(r"'accuracy': ([0-9.]+)", output)
    assert measured and float(measured.group(1)) >= 0.97, output[-3000:]
    runtime = boto3.client("sagemaker-runtime")
    answer = runtime.invoke_endpoint(EndpointName="mnistclassifier", ContentType="text/csv",
                                     Body=",".join(map(str, splits[2][0][0])).encode())
    assert json.loads(answer["Body"].read())["predictions"][0]["digit"] == splits[2][1][0]


def test_sagemaker_backend_runs_against_the_control_plane(airflow_db, stack):
    import boto3

    output = airflow("dags", "test", "digits_classifier_sagemaker")
    sagemaker = boto3.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName="mnistclassifier")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model_name = config["ProductionVariants"][0]["ModelName"]
    # The seed's bug, fixed: the endpoint config serves the model that was created.
    model = sagemaker.describe_model(ModelName=model_name)
    assert model_name.startswith("mnistclassifier-")
    job = sagemaker.describe_training_job(TrainingJobName=model_name)
    assert job["HyperParameters"] == {"k": "10", "feature_dim": "784"}
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/mnist_data"
    assert model["PrimaryContainer"]["ModelDataUrl"] == job["ModelArtifacts"]["S3ModelArtifacts"]
    # It really trained, the task log showed the job's CloudWatch log, and the model is live.
    assert job["TrainingJobStatus"] == "Completed" and endpoint["EndpointStatus"] == "InService"
    assert "k-means: 4000 records of 784 features, k=10" in output
    answer = boto3.client("sagemaker-runtime").invoke_endpoint(
        EndpointName="mnistclassifier", ContentType="text/csv", Body=",".join(["0"] * 784))
    assert "closest_cluster" in json.loads(answer["Body"].read())["predictions"][0]


def test_rerunning_the_sagemaker_deploy_reuses_what_exists(stack, capfd):
    """The provider's operator fails on a second try once the model exists ("Cannot create
    already existing model", from SageMaker and from ferry's control plane alike); ours reuses
    the model and endpoint config, and the endpoint that exists is updated."""
    import boto3

    from ferry.digits.operators import ReusingSageMakerEndpointOperator

    def config() -> dict:
        return {
            "Model": {"ModelName": "rerun-model", "ExecutionRoleArn": "arn:aws:iam::000000000000:role/x",
                      "PrimaryContainer": {"Image": "kmeans:1", "ModelDataUrl": f"s3://{BUCKET}/x/model.tar.gz"}},
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
        while boto3.client("sagemaker").describe_endpoint(EndpointName="rerun-endpoint")["EndpointStatus"] in (
                "Creating", "Updating"):
            time.sleep(0.2)  # a retry comes after the first try ended
    assert "Creating SageMaker model rerun-model" in logs[0] and "exists already" not in logs[0]
    assert "Creating SageMaker model" not in logs[1] and "Creating endpoint config" not in logs[1]
    assert "Model rerun-model exists already" in logs[1]
    assert boto3.client("sagemaker").describe_model(ModelName="rerun-model")["ModelName"] == "rerun-model"
