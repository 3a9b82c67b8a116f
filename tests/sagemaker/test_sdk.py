"""The SageMaker Python SDK (v2, and v3's ModelTrainer) drives the local SageMaker as users write it for AWS.

Each flow of tests/sagemaker/sdk_user.py runs in the SDK's own venv (.tools/sagemaker-sdk,
made by scripts/setup.sh: the SDK pins packages Airflow 3 cannot share) with the stack's
environment only, as ``eval "$(ferry stack env)"`` gives a shell: fit (logs shown), deploy,
predict through the SDK's own serializers, delete_endpoint. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess

import boto3
import pytest

from ferry.stack.settings import project_root

pytestmark = pytest.mark.integration

SDK_PYTHON = project_root() / ".tools" / "sagemaker-sdk" / "bin" / "python"
SDK3_PYTHON = project_root() / ".tools" / "sagemaker-sdk-v3" / "bin" / "python"
USER_CODE = project_root() / "tests" / "sagemaker" / "sdk_user.py"
USER_CODE_V3 = project_root() / "tests" / "sagemaker" / "sdk3_user.py"


@pytest.fixture(scope="module")
def flows(stack, tmp_path_factory) -> dict[str, subprocess.Popen]:
    """Every flow started at once: each spends most of its time in the SDK's waiters (a deploy
    polls every 30 s, as on AWS), so together they take the time of one."""
    assert SDK_PYTHON.exists() and SDK3_PYTHON.exists(), "an SDK's venv is missing: run `make setup`"
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST")}
    env["SAGEMAKER_SUPPRESS_V2_WARNING"] = "1"
    started = {}
    for flow in ("kmeans", "knn", "builtin_image", "sklearn"):
        work = tmp_path_factory.mktemp(flow)
        started[flow] = subprocess.Popen([str(SDK_PYTHON), str(USER_CODE), flow, str(work)], env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    started["model_trainer"] = subprocess.Popen([str(SDK3_PYTHON), str(USER_CODE_V3),
                                                 str(tmp_path_factory.mktemp("v3"))], env=env, text=True,
                                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    yield started
    for process in started.values():
        process.kill()


def run_flow(flows: dict[str, subprocess.Popen], flow: str) -> tuple[dict, str]:
    """(the flow's result, everything it printed)."""
    output, _ = flows[flow].communicate(timeout=600)
    assert flows[flow].returncode == 0, output[-4000:]
    return json.loads(output.strip().splitlines()[-1]), output


def test_kmeans_on_a_record_set_trains_deploys_predicts_and_deletes(flows):
    result, output = run_flow(flows, "kmeans")
    # fit's logs, as the SDK prints them from CloudWatch Logs
    assert "#train_score (algo-1) : ('msd'" in output and "Training job completed" in output
    assert len(set(result["clusters"])) == 3  # the three centers fall in three clusters
    assert result["encryption"] == "aws:kms"  # OutputDataConfig.KmsKeyId from the stack's SDK config
    assert result["gone"]


def test_knn_on_a_record_set_answers_each_centers_label(flows):
    result, _output = run_flow(flows, "knn")
    assert result["predicted"] == [0.0, 1.0, 2.0] and result["gone"]


def test_estimator_with_the_kmeans_image_trains_on_csv_without_labels(flows):
    result, output = run_flow(flows, "builtin_image")
    assert len(set(result["clusters"])) == 3
    assert "300 records of 4 features" in output  # label_size=0: no column taken for a label


def test_sklearn_with_entry_point_and_source_dir(flows):
    result, output = run_flow(flows, "sklearn")
    assert "training with C=0.5 on 300 rows" in output  # -C 0.5, train.csv under its own name
    assert result["predicted"] == [0.0, 1.0, 2.0] and result["gone"]
    assert result["encryption"] == "aws:kms"
    bucket, key = result["source"].removeprefix("s3://").split("/", 1)
    assert boto3.client("s3").head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "aws:kms"


def test_v3_model_trainer_validates_the_role_and_runs_its_driver_by_absolute_paths(flows):
    """ModelTrainer asks IAM (GetRole, SimulatePrincipalPolicy) before it trains, then sends a
    ContainerEntrypoint that runs /opt/ml/input/data/sm_drivers/sm_train.sh: here in a private
    mount namespace with the job's directory on /opt/ml."""
    import boto3

    result, _output = run_flow(flows, "model_trainer")
    assert result["status"] == "Completed" and result["members"] == ["model.joblib"]
    assert result["entrypoint"] == ["/bin/bash"]
    logs, group = boto3.client("logs"), "/aws/sagemaker/TrainingJobs"
    stream = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=result["name"])["logStreams"][0]
    log = "\n".join(e["message"] for e in logs.get_log_events(logGroupName=group,
                                                               logStreamName=stream["logStreamName"])["events"])
    assert "training with C=0.5 on 200 rows in /opt/ml/input/data/code" in log
    assert "Training Container Execution Completed" in log
