"""The local SageMaker control plane driven with plain boto3, as a user's code would drive SageMaker:
training jobs that really run (and fail, and stop), their CloudWatch logs, models, endpoint
configs and endpoints on the endpoint server, names refused when taken, signatures checked,
state kept across a restart. No Airflow here."""

from __future__ import annotations

import io
import json
import os
import signal
import time
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from ferry.sagemaker.recordio import write_numpy_to_dense_tensor

pytestmark = pytest.mark.integration

KMEANS = "438346466558.dkr.ecr.eu-west-1.amazonaws.com/kmeans:1"
KNN = "438346466558.dkr.ecr.eu-west-1.amazonaws.com/knn:1"
BUCKET = "ferry-digits"  # created by the stack
ROLE = "arn:aws:iam::000000000000:role/ferry-sagemaker"
SKLEARN = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
FEATURES = 16
DIM = str(FEATURES)


@pytest.fixture(scope="module")
def sm(stack):
    return boto3.client("sagemaker")


@pytest.fixture(scope="module")
def s3(stack):
    return boto3.client("s3")


@pytest.fixture(scope="module")
def blobs(s3) -> str:
    """Three well-separated labelled clusters, as RecordIO under a prefix of their own."""
    rng = np.random.default_rng(3)
    centers = rng.normal(0, 10, (3, FEATURES))
    labels = np.repeat(np.arange(3), 400)
    features = (centers[labels] + rng.normal(0, 0.5, (len(labels), FEATURES))).astype(np.float32)
    prefix = f"cp-test-{uuid.uuid4().hex[:8]}"
    for part in range(2):  # two objects: the channel is every object under the prefix
        buffer = io.BytesIO()
        write_numpy_to_dense_tensor(buffer, features[part::2], labels[part::2].astype(np.float32))
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/train/part-{part}", Body=buffer.getvalue())
    return prefix


@pytest.fixture(scope="module")
def blob_centers() -> np.ndarray:
    return np.random.default_rng(3).normal(0, 10, (3, FEATURES))


def job_request(name: str, prefix: str, hyperparameters: dict[str, str], image: str = KMEANS) -> dict:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "HyperParameters": hyperparameters,
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{prefix}/train",
            "S3DataDistributionType": "FullyReplicated"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/{prefix}/output"},
        "ResourceConfig": {"InstanceType": "ml.c4.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "RoleArn": ROLE,
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def wait_job(sm, name: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = sm.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.5)


def wait_endpoint(sm, name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        endpoint = sm.describe_endpoint(EndpointName=name)
        if endpoint["EndpointStatus"] in ("InService", "Failed"):
            return endpoint
        assert time.monotonic() < deadline, endpoint
        time.sleep(0.3)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def trained(sm, blobs) -> dict:
    name = unique("kmeans")
    sm.create_training_job(**job_request(name, blobs, {"k": "3", "feature_dim": DIM, "mini_batch_size": "100"}))
    return wait_job(sm, name)


def test_kmeans_job_trains_and_reports_like_sagemaker(sm, s3, trained):
    job = trained
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert job["TrainingStartTime"] <= job["TrainingEndTime"]
    artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact.endswith(f"/{job['TrainingJobName']}/output/model.tar.gz")
    bucket, key = artifact[len("s3://"):].split("/", 1)
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    assert {m["MetricName"] for m in job["FinalMetricDataList"]} == {"train:msd"}
    listed = sm.list_training_jobs(NameContains=job["TrainingJobName"])["TrainingJobSummaries"]
    assert [j["TrainingJobStatus"] for j in listed] == ["Completed"]


def test_training_log_is_in_cloudwatch_logs(stack, trained):
    logs = boto3.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                        logStreamNamePrefix=trained["TrainingJobName"] + "/")["logStreams"]
    assert len(streams) == 1 and streams[0]["logStreamName"].startswith(trained["TrainingJobName"] + "/algo-1-")
    first = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                logStreamName=streams[0]["logStreamName"], startFromHead=True)
    messages = [e["message"] for e in first["events"]]
    assert any(m.startswith(f"k-means: 1200 records of {FEATURES} features, k=3") for m in messages), messages
    assert any("#train_score" in m for m in messages)
    again = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                logStreamName=streams[0]["logStreamName"], nextToken=first["nextForwardToken"])
    assert again["events"] == [] and again["nextForwardToken"] == first["nextForwardToken"]


@pytest.mark.parametrize(("hyperparameters", "image", "reason"), [
    ({"feature_dim": DIM}, KMEANS, "Missing required hyperparameters for kmeans: k"),
    ({"k": "3", "feature_dim": DIM, "algorithm": "svm"}, KMEANS, "Additional hyperparameters are not allowed"),
    ({"k": "zero", "feature_dim": DIM}, KMEANS,
     "hyperparameter k='zero' is not valid: expected a positive integer"),
    ({"k": "3", "feature_dim": "21"}, KMEANS, f"feature_dim=21 but the train records have {FEATURES} features"),
    ({"k": "3", "feature_dim": DIM, "sample_size": "100"}, KNN, "Missing required hyperparameters for knn: "
     "predictor_type"),
    ({"k": "3", "feature_dim": DIM, "sample_size": "100", "predictor_type": "guess"}, KNN,
     "predictor_type='guess' is not valid: expected classifier or regressor"),
    ({"k": "3", "feature_dim": DIM}, "438346466558.dkr.ecr.eu-west-1.amazonaws.com/xgboost-unknown:1",
     "is not one this control plane runs"),
    ({"k": "3", "feature_dim": DIM}, "my-image:latest", "is not a SageMaker image URI"),
])
def test_bad_requests_fail_the_job_with_a_reason(sm, blobs, hyperparameters, image, reason):
    name = unique("bad")
    sm.create_training_job(**job_request(name, blobs, hyperparameters, image))
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert reason in job["FailureReason"], job["FailureReason"]


def test_no_data_under_the_channel_fails_the_job(sm):
    name = unique("empty")
    sm.create_training_job(**job_request(name, f"nothing-{uuid.uuid4().hex}", {"k": "3", "feature_dim": DIM}))
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Failed" and "no objects under the train channel" in job["FailureReason"]


def test_names_are_unique(sm, blobs, trained):
    with pytest.raises(ClientError) as taken:
        sm.create_training_job(**job_request(trained["TrainingJobName"], blobs, {"k": "3", "feature_dim": DIM}))
    assert taken.value.response["Error"]["Code"] == "ResourceInUse"
    with pytest.raises(ClientError, match="Requested resource not found"):
        sm.describe_training_job(TrainingJobName="never-created")


def test_stop_training_job(sm, blobs, sleeper_code):
    name = unique("slow")
    sm.create_training_job(**slow_job(name, blobs, sleeper_code))
    wait_training(sm, name)
    sm.stop_training_job(TrainingJobName=name)
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Stopped", (job["TrainingJobStatus"], job.get("FailureReason"))
    assert "ModelArtifacts" not in job
    with pytest.raises(ClientError, match="in status Stopped"):
        sm.stop_training_job(TrainingJobName=name)


@pytest.fixture(scope="module")
def sleeper_code(s3) -> str:
    """A training script that trains for ten minutes, whatever the machine: long enough to be
    stopped or killed (a built-in algorithm's run time depends on when it converges)."""
    key = f"{unique('sleeper')}/sourcedir.tar.gz"
    script = "import time\nprint('training, slowly', flush=True)\ntime.sleep(600)\n"
    s3.put_object(Bucket=BUCKET, Key=key, Body=source_bundle({"train.py": script}))
    return f"s3://{BUCKET}/{key}"


def slow_job(name: str, prefix: str, code: str) -> dict:
    return script_job(name, prefix, code)


def wait_training(sm, name: str) -> None:
    deadline = time.monotonic() + 60
    while sm.describe_training_job(TrainingJobName=name)["SecondaryStatus"] != "Training":
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_max_runtime_stops_the_job(sm, blobs, sleeper_code):
    name = unique("overtime")
    request = slow_job(name, blobs, sleeper_code)
    request["StoppingCondition"] = {"MaxRuntimeInSeconds": 3}
    sm.create_training_job(**request)
    job = wait_job(sm, name, timeout=60)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded"), job
    assert "ModelArtifacts" not in job
    assert (job["TrainingEndTime"] - job["TrainingStartTime"]).total_seconds() < 10


def process_group_members(group: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except (OSError, ValueError):  # not a process, or gone meanwhile
            continue
        if len(fields) > 2 and fields[2] == str(group) and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_a_worker_killed_mid_job_fails_the_job_within_seconds(stack, sm, blobs, sleeper_code):
    import os
    import signal
    import sqlite3

    name = unique("killed")
    sm.create_training_job(**slow_job(name, blobs, sleeper_code))
    wait_training(sm, name)
    state = stack.settings.data("sagemaker") / "control-plane.sqlite"
    with sqlite3.connect(state) as conn:  # the worker's pid, which the API does not show
        body = conn.execute("SELECT body FROM resources WHERE kind = 'TrainingJob' AND name = ?", (name,)).fetchone()
    os.kill(json.loads(body[0])["_pid"], signal.SIGKILL)  # the worker alone, as the OOM killer would
    pid = json.loads(body[0])["_pid"]
    started = time.monotonic()
    job = wait_job(sm, name, timeout=30)
    assert job["TrainingJobStatus"] == "Failed" and "died without a result" in job["FailureReason"], job
    assert time.monotonic() - started < 10
    # The user's script, left behind by the dead worker, is stopped too.
    deadline = time.monotonic() + 10
    while process_group_members(pid):
        assert time.monotonic() < deadline, "the script outlived its worker"
        time.sleep(0.2)


def test_only_the_stack_key_pair_gets_in(stack):
    from ferry.stack.settings import REGION

    url = stack.settings.url("sagemaker")
    wrong_secret = boto3.client("sagemaker", endpoint_url=url, region_name=REGION,
                                aws_access_key_id=stack.settings.credentials.aws_access_key_id,
                                aws_secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as refused:
        wrong_secret.list_training_jobs()
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
    stranger = boto3.client("sagemaker", endpoint_url=url, region_name=REGION, aws_access_key_id="AKIASTRANGER",
                            aws_secret_access_key="x")
    with pytest.raises(ClientError) as unknown:
        stranger.list_endpoints()
    assert unknown.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_model_config_endpoint_create_update_invoke_delete(sm, trained):
    runtime = boto3.client("sagemaker-runtime")
    artifact = trained["ModelArtifacts"]["S3ModelArtifacts"]
    names = [unique("m"), unique("m")]
    for name in names:
        sm.create_model(ModelName=name, PrimaryContainer={"Image": KMEANS, "ModelDataUrl": artifact},
                        ExecutionRoleArn=ROLE)
        sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
            "InstanceType": "ml.t2.medium"}])
    with pytest.raises(ClientError, match="Cannot create already existing model"):
        sm.create_model(ModelName=names[0], PrimaryContainer={"Image": KMEANS}, ExecutionRoleArn=ROLE)
    with pytest.raises(ClientError, match="Cannot create already existing endpoint configuration"):
        sm.create_endpoint_config(EndpointConfigName=names[0], ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": names[0], "InitialInstanceCount": 1,
            "InstanceType": "ml.t2.medium"}])
    endpoint = unique("ep")
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=names[0])
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] in ("Creating", "InService")
    assert wait_endpoint(sm, endpoint)["EndpointStatus"] == "InService"
    # The three request formats of the built-in algorithms, one answer.
    record = np.full((1, FEATURES), 0.5, dtype=np.float32)
    recordio = io.BytesIO()
    write_numpy_to_dense_tensor(recordio, record)
    bodies = {"text/csv": ",".join(["0.5"] * FEATURES), "application/x-recordio-protobuf": recordio.getvalue(),
              "application/json": json.dumps({"instances": [{"features": record[0].tolist()}]})}
    answers = [json.loads(runtime.invoke_endpoint(EndpointName=endpoint, ContentType=content_type,
                                                  Body=body)["Body"].read()) for content_type, body in bodies.items()]
    assert answers[0] == answers[1] == answers[2]
    assert set(answers[0]["predictions"][0]) == {"closest_cluster", "distance_to_cluster"}
    with pytest.raises(ClientError, match="Cannot create already existing endpoint"):
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=names[0])

    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=names[1])
    updated = wait_endpoint(sm, endpoint)
    assert updated["EndpointStatus"] == "InService" and updated["EndpointConfigName"] == names[1]
    assert endpoint in [e["EndpointName"] for e in sm.list_endpoints(NameContains=endpoint)["Endpoints"]]

    sm.delete_endpoint(EndpointName=endpoint)
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sm.describe_endpoint(EndpointName=endpoint)
    with pytest.raises(ClientError):
        runtime.invoke_endpoint(EndpointName=endpoint, ContentType="text/csv", Body=",".join(["0"] * FEATURES))


def test_knn_trains_deploys_and_classifies(sm, blobs, blob_centers):
    name = unique("knn")
    sm.create_training_job(**job_request(name, blobs, {"k": "5", "feature_dim": DIM, "sample_size": "300",
                                                       "predictor_type": "classifier"}, KNN))
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": KNN, "ModelDataUrl": job["ModelArtifacts"]["S3ModelArtifacts"]})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.t2.medium"}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert wait_endpoint(sm, name)["EndpointStatus"] == "InService"
    body = "\n".join(",".join(f"{v:.4f}" for v in center + 0.3) for center in blob_centers)
    answer = boto3.client("sagemaker-runtime").invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=body)
    predictions = json.loads(answer["Body"].read())["predictions"]
    assert [p["predicted_label"] for p in predictions] == [0.0, 1.0, 2.0]
    sm.delete_endpoint(EndpointName=name)


def test_a_model_that_cannot_load_fails_the_endpoint(sm):
    name = unique("broken")
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": KMEANS, "ModelDataUrl": f"s3://{BUCKET}/no/such/model.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.t2.medium"}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    endpoint = wait_endpoint(sm, name)
    assert endpoint["EndpointStatus"] == "Failed" and "refused" in endpoint["FailureReason"]
    # AWS: DeleteEndpoint is the only operation a Failed endpoint allows; then its name is free.
    with pytest.raises(ClientError) as refused:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=name)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "Failed" in refused.value.response["Error"]["Message"]
    sm.delete_endpoint(EndpointName=name)
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sm.describe_endpoint(EndpointName=name)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert wait_endpoint(sm, name)["EndpointStatus"] == "Failed"
    sm.delete_endpoint(EndpointName=name)
    with pytest.raises(ClientError, match="Could not find model"):
        sm.create_endpoint_config(EndpointConfigName=unique("c"), ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": "no-such-model", "InitialInstanceCount": 1,
            "InstanceType": "ml.t2.medium"}])


def test_lists_filter_sort_and_page_as_botocore_documents(sm):
    tag = uuid.uuid4().hex[:6]
    names = [f"list-{tag}-{letter}" for letter in "bca"]
    for name in names:  # created b, c, a: creation order is not name order
        sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": KMEANS})
    listed = sm.list_models(NameContains=tag.upper())["Models"]  # NameContains ignores case
    assert [m["ModelName"] for m in listed] == names[::-1]  # newest first: ListModels' default
    by_name = sm.list_models(NameContains=tag, SortBy="Name", SortOrder="Ascending")["Models"]
    assert [m["ModelName"] for m in by_name] == sorted(names)
    pages = sm.get_paginator("list_models").paginate(NameContains=tag, SortBy="Name", SortOrder="Ascending",
                                                     PaginationConfig={"PageSize": 1})
    assert [[m["ModelName"] for m in page["Models"]] for page in pages] == [[n] for n in sorted(names)]
    before = sm.describe_model(ModelName=names[1])["CreationTime"]
    assert [m["ModelName"] for m in sm.list_models(NameContains=tag, CreationTimeBefore=before)["Models"]] \
        == [names[0]]
    for bad in ({"NextToken": "not-a-token"}, {"NextToken": "eyJvZmZzZXQiOiAtMX0="}, {"MaxResults": 101},
                {"SortBy": "Status"}):
        with pytest.raises(ClientError) as refused:
            sm.list_models(**bad)
        assert refused.value.response["Error"]["Code"] == "ValidationException", bad
    assert sm.list_training_jobs(StatusEquals="Stopping", NameContains=tag)["TrainingJobSummaries"] == []


def test_tags_are_kept_listed_and_deleted(sm):
    name = unique("tagged")
    arn = sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": KMEANS},
                          Tags=[{"Key": "team", "Value": "data"}])["ModelArn"]
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "data"}]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "team", "Value": "ml"}, {"Key": "cost", "Value": "42"}])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "ml"}, {"Key": "cost", "Value": "42"}]
    sm.delete_tags(ResourceArn=arn, TagKeys=["team"])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "cost", "Value": "42"}]
    assert "Tags" not in sm.describe_model(ModelName=name)
    for bad in ({"ResourceArn": arn.replace(name.lower(), "no-such-model")},
                {"ResourceArn": "arn:aws:sagemaker:eu-west-1:000000000000:notebook-instance/x"}):
        with pytest.raises(ClientError) as refused:
            sm.list_tags(**bad)
        assert refused.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as refused:
        sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": ""} for i in range(50)])
    assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_sts_and_iam_answer_for_the_stacks_own_identity(stack):
    """What Airflow's "Test connection" (GetCallerIdentity) and SDKs validating a role (GetRole,
    and SimulatePrincipalPolicy for the SDK v3) call."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    me = boto3.client("sts").get_caller_identity()
    assert me["Account"] == "000000000000" and me["Arn"] == "arn:aws:iam::000000000000:user/ferry"
    assert AwsBaseHook(aws_conn_id="aws_default", client_type="sts").test_connection()[0] is True
    iam = boto3.client("iam")
    assert iam.get_role(RoleName="ferry-sagemaker")["Role"]["Arn"] == ROLE
    with pytest.raises(ClientError) as refused:
        iam.get_role(RoleName="someone-elses-role")
    assert refused.value.response["Error"]["Code"] == "NoSuchEntity"
    simulated = iam.simulate_principal_policy(PolicySourceArn=ROLE, ActionNames=["s3:GetObject", "sagemaker:*"],
                                              ResourceArns=["arn:aws:s3:::b/k", "*"])["EvaluationResults"]
    assert [(r["EvalActionName"], r["EvalResourceName"], r["EvalDecision"]) for r in simulated] == [
        ("s3:GetObject", "arn:aws:s3:::b/k", "allowed"), ("s3:GetObject", "*", "allowed"),
        ("sagemaker:*", "arn:aws:s3:::b/k", "allowed"), ("sagemaker:*", "*", "allowed")]
    with pytest.raises(ClientError) as refused:
        iam.simulate_principal_policy(PolicySourceArn="arn:aws:iam::000000000000:role/other", ActionNames=["s3:*"])
    assert refused.value.response["Error"]["Code"] == "NoSuchEntity"
    with pytest.raises(ClientError) as refused:
        boto3.client("sts").assume_role(RoleArn=ROLE, RoleSessionName="ferry-test")
    assert refused.value.response["Error"]["Code"] == "InvalidAction"
    wrong = boto3.client("sts", aws_access_key_id=stack.settings.credentials.aws_access_key_id,
                         aws_secret_access_key="not-the-secret", region_name="eu-west-1")
    with pytest.raises(ClientError) as refused:
        wrong.get_caller_identity()
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_state_survives_a_restart(stack, sm, trained):
    service = stack.service("sagemaker")
    service.stop()
    stack.up(["sagemaker"], echo=lambda line: None)
    job = sm.describe_training_job(TrainingJobName=trained["TrainingJobName"])
    assert job["TrainingJobStatus"] == "Completed"
    assert job["ModelArtifacts"] == trained["ModelArtifacts"]


# -- script mode (the scikit-learn framework image) ----------------------------------------------

USER_SCRIPT = """
import argparse, json, os, sys
from pathlib import Path

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, required=True)
    parser.add_argument("--fail", default="no")
    args = parser.parse_args()
    if args.fail == "yes":
        print("about to fail")
        print("ValueError: the data is all wrong")
        sys.exit(3)
    train = Path(os.environ["SM_CHANNEL_TRAIN"])
    model_dir = Path(os.environ["SM_MODEL_DIR"])
    seen = dict(os.environ)  # all of it: the test looks for the stack's secrets in it
    (model_dir / "model.json").write_text(json.dumps(
        {"scale": args.scale, "files": sorted(p.name for p in train.iterdir()), "env": seen, "argv": sys.argv[1:]}))
    print(f"loss={0.25 * args.scale}")


def model_fn(model_dir):
    return json.loads((Path(model_dir) / "model.json").read_text())


def predict_fn(data, model):
    return (np.asarray(data) * model["scale"]).sum(axis=1)


if __name__ == "__main__":
    main()
"""


def source_bundle(members: dict[str, str]) -> bytes:
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def user_code(s3) -> str:
    key = f"{unique('code')}/sourcedir.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=source_bundle({"train.py": USER_SCRIPT}))
    return f"s3://{BUCKET}/{key}"


def script_job(name: str, prefix: str, code: str, program: str = "train.py", **hyperparameters: str) -> dict:
    """As the SageMaker SDK sends it: every hyperparameter JSON-encoded."""
    request = job_request(name, prefix, {"sagemaker_program": json.dumps(program),
                                         "sagemaker_submit_directory": json.dumps(code),
                                         **{k: json.dumps(v) for k, v in hyperparameters.items()}}, SKLEARN)
    request["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "train:loss", "Regex": r"loss=([0-9.]+)"}]
    return request


def stack_secrets(stack) -> dict[str, str]:
    creds = stack.settings.credentials
    return {name: getattr(creds, name) for name in (
        "postgres_password", "aws_access_key_id", "aws_secret_access_key", "airflow_admin_password",
        "airflow_jwt_secret", "airflow_fernet_key", "mongo_password", "s3_sse_key")}


def test_script_mode_trains_with_sagemakers_environment_and_serves_with_the_users_functions(stack, sm, s3, blobs,
                                                                                            user_code):
    name = unique("script")
    sm.create_training_job(**script_job(name, blobs, user_code, scale="2"), Environment={"MY_SETTING": "on"})
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert [(m["MetricName"], m["Value"]) for m in job["FinalMetricDataList"]] == [("train:loss", 0.5)]
    import tarfile

    bucket, key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://").split("/", 1)
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
        model = json.loads(tar.extractfile("model.json").read())
    environment = model["env"]
    assert model["scale"] == 2.0 and model["argv"] == ["--scale", "2"]
    assert model["files"] == ["part-0", "part-1"]  # File mode keeps the objects' names
    assert json.loads(environment["SM_HPS"]) == {"scale": "2"} and environment["SM_HP_SCALE"] == "2"
    assert json.loads(environment["SM_CHANNELS"]) == ["train"] and environment["SM_CURRENT_HOST"] == "algo-1"
    assert environment["SM_MODULE_NAME"] == "train" and "SM_OUTPUT_DATA_DIR" in environment
    # The job's Environment, SageMaker's variables, and nothing of the stack's: no password, no key.
    assert environment["MY_SETTING"] == "on"
    leaked = [(secret, variable) for secret, value in stack_secrets(stack).items()
              for variable, text in environment.items() if value in text]
    assert not leaked, leaked
    assert not [variable for variable in environment if variable.startswith(("AIRFLOW", "AWS_", "PG", "FERRY"))]

    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": SKLEARN, "ModelDataUrl": job["ModelArtifacts"]["S3ModelArtifacts"],
        "Environment": {"SAGEMAKER_PROGRAM": "train.py", "SAGEMAKER_SUBMIT_DIRECTORY": user_code}})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert wait_endpoint(sm, name)["EndpointStatus"] == "InService"
    runtime = boto3.client("sagemaker-runtime")
    # The toolkit's default input_fn (csv, JSON) and output_fn (JSON) around the script's predict_fn.
    answer = runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body="1,2\n3,4")
    assert json.loads(answer["Body"].read()) == [6.0, 14.0] and answer["ContentType"] == "application/json"
    answer = runtime.invoke_endpoint(EndpointName=name, ContentType="application/json", Body="[[1, 1]]")
    assert json.loads(answer["Body"].read()) == [4.0]
    # The default output_fn answers in the Accept's format, as the inference toolkit's encoders do.
    answer = runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Accept="text/csv", Body="1,2\n3,4")
    assert (answer["Body"].read(), answer["ContentType"]) == (b"6.0\n14.0\n", "text/csv")
    answer = runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Accept="application/x-npy", Body="1,2")
    assert np.load(io.BytesIO(answer["Body"].read())).tolist() == [6.0]
    with pytest.raises(ClientError) as refused:
        runtime.invoke_endpoint(EndpointName=name, ContentType="image/gif", Body=b"GIF89a")
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert "input_fn refused" in refused.value.response["Error"]["Message"]
    sm.delete_endpoint(EndpointName=name)


SERVING_SCRIPT = """
import json, os

import helper  # a module beside the script, by its bare name, as the toolkit allows


def model_fn(model_dir):
    print("loading the model from", model_dir)
    return {"pid": os.getpid(), "model_dir": model_dir}


def transform_fn(model, body, content_type, accept):
    if json.loads(body).get("exit"):
        os._exit(7)  # the process dies mid-request, as a segfault or the OOM killer would
    return json.dumps({**model, "env": dict(os.environ), "module": __name__, "helper": helper.NAME,
                       "model_dir_exists": os.path.isdir(os.environ["SM_MODEL_DIR"])}), "application/json"
"""


def test_a_script_model_serves_in_a_process_of_its_own_with_its_environment(stack, sm, s3):
    """As SageMaker runs a model in a container of its own: the model's Environment in
    os.environ, nothing of the stack's (not even the S3 key pair the server holds); a process
    that dies fails its request and is started again; one that loses its server goes too."""
    from ferry.stack.process import read_pid

    name = unique("own-process")
    key = f"{name}/sourcedir.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=source_bundle({"serve.py": SERVING_SCRIPT,
                                                               "helper.py": "NAME = 'the helper'\n"}))
    s3.put_object(Bucket=BUCKET, Key=f"{name}/model.tar.gz", Body=source_bundle({"weights.txt": "1"}))
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": SKLEARN, "ModelDataUrl": f"s3://{BUCKET}/{name}/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "serve.py", "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{BUCKET}/{key}",
                        "MY_SERVING_SETTING": "blue"}})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert wait_endpoint(sm, name)["EndpointStatus"] == "InService"
    runtime = boto3.client("sagemaker-runtime")

    def ask(request: dict) -> dict:
        answer = runtime.invoke_endpoint(EndpointName=name, ContentType="application/json", Body=json.dumps(request))
        return json.loads(answer["Body"].read())

    seen = ask({})
    environment, server = seen["env"], read_pid(stack.service("endpoint").pid_file)
    assert environment["MY_SERVING_SETTING"] == "blue" and environment["SAGEMAKER_PROGRAM"] == "serve.py"
    assert seen["model_dir_exists"] and environment["SM_MODEL_DIR"] == seen["model_dir"]
    assert (seen["module"], seen["helper"]) == ("serve", "the helper")
    leaked = [(secret, variable) for secret, value in stack_secrets(stack).items()
              for variable, text in environment.items() if value in text]
    assert not leaked, leaked
    assert not [variable for variable in environment if variable.startswith(("AIRFLOW", "AWS_", "PG", "FERRY"))]
    first = seen["pid"]
    assert first != server and Path(f"/proc/{first}/stat").read_text().split()[3] == str(server)

    with pytest.raises(ClientError) as failed:
        ask({"exit": True})
    assert failed.value.response["Error"]["Code"] == "ModelError"
    assert "exited with status 7" in failed.value.response["Error"]["Message"]
    second = ask({})["pid"]
    assert second != first  # started again for the next request

    # The endpoint server killed outright: its model process goes with it, and comes back with it.
    service = stack.service("endpoint")
    os.kill(server, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{second}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{second}").exists()
    service.start()
    third = ask({})["pid"]
    assert third not in (first, second)
    sm.delete_endpoint(EndpointName=name)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{third}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{third}").exists()


def test_the_sagemaker_servers_run_without_the_stacks_other_secrets(stack):
    """They run users' code: no database password, Airflow key or connection in their environment."""
    from ferry.stack.process import read_pid

    # The S3 key pair they need (they read and write S3); every other secret stays out.
    others = {value for name, value in stack_secrets(stack).items() if not name.startswith("aws_")}
    for service in ("sagemaker", "endpoint"):
        pid = read_pid(stack.service(service).pid_file)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
        assert not [n for n in names if n.startswith(("AIRFLOW", "PG"))], (service, names)
        assert not [s for s in others if any(s.encode() in entry for entry in environ)], service


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["AlgorithmSpecification"].update(TrainingInputMode="Pipe"), "TrainingInputMode Pipe"),
    (lambda r: r["InputDataConfig"][0].update(InputMode="FastFile"), "InputMode FastFile"),
    (lambda r: r["InputDataConfig"][0].update(CompressionType="Gzip"), "only supported in Pipe input mode"),
    (lambda r: r["InputDataConfig"][0]["DataSource"]["S3DataSource"].update(S3DataType="AugmentedManifestFile"),
     "S3DataType AugmentedManifestFile"),
], ids=["pipe", "fastfile", "gzip-in-file-mode", "augmented-manifest"])
def test_input_modes_this_sagemaker_cannot_deliver_are_refused_not_changed(sm, blobs, change, message):
    request = job_request(unique("mode"), blobs, {"k": "3", "feature_dim": DIM})
    change(request)
    with pytest.raises(ClientError) as refused:
        sm.create_training_job(**request)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert message in refused.value.response["Error"]["Message"]


def test_a_manifest_file_channel_delivers_the_objects_it_lists(sm, s3, blobs, user_code):
    """As the SageMaker SDK's record_set writes it: a JSON list, a prefix first, then keys under it."""
    manifest_key = f"{blobs}/manifest"
    s3.put_object(Bucket=BUCKET, Key=manifest_key, Body=json.dumps(
        [{"prefix": f"s3://{BUCKET}/{blobs}/"}, "train/part-1"]).encode())
    name = unique("manifest")
    request = script_job(name, blobs, user_code, scale="1")
    request["InputDataConfig"][0]["DataSource"]["S3DataSource"].update(
        S3DataType="ManifestFile", S3Uri=f"s3://{BUCKET}/{manifest_key}")
    sm.create_training_job(**request)
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    import tarfile

    bucket, key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://").split("/", 1)
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
        assert json.loads(tar.extractfile("model.json").read())["files"] == ["train"]  # train/part-1 under the channel

    s3.put_object(Bucket=BUCKET, Key=manifest_key, Body=json.dumps(
        [{"prefix": f"s3://{BUCKET}/{blobs}/"}, "../../escape"]).encode())
    name = unique("manifest-bad")
    request["TrainingJobName"] = name
    sm.create_training_job(**request)
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Failed" and "cannot be a file under the channel" in job["FailureReason"]


def test_a_bad_job_environment_is_refused(sm, blobs):
    for environment in ({"1BAD": "x"}, {"GOOD": "x" * 513}, {f"V{i}": "x" for i in range(101)}):
        with pytest.raises(ClientError) as refused:
            sm.create_training_job(**job_request(unique("env"), blobs, {"k": "3", "feature_dim": DIM}),
                                   Environment=environment)
        assert refused.value.response["Error"]["Code"] == "ValidationException"


@pytest.mark.parametrize(
    ("program", "hyperparameters", "bundle", "reason"),
    [
        ("train.py", {"scale": "1", "fail": "yes"}, None,
         "ExecuteUserScriptError: train.py exited with status 3: ValueError: the data is all wrong"),
        ("../../../etc/passwd", {"scale": "1"}, None, "points outside the source directory"),
        ("missing.py", {"scale": "1"}, None, "is not in the source directory"),
        ("train.py", {"scale": "1"}, {"../escape.py": "print(1)"}, "outside the destination"),
        # A small gzip bomb: 100,001 empty files (a few hundred kB packed), refused before unpacking.
        ("train.py", {"scale": "1"}, "100001 members", "has more than 100,000 members"),
    ],
    ids=["script-fails", "program-climbs-out", "program-missing", "bundle-climbs-out", "bundle-too-many-members"],
)
def test_script_mode_failures_say_why(sm, s3, blobs, user_code, program, hyperparameters, bundle, reason):
    code = user_code
    if bundle == "100001 members":
        bundle = {"train.py": USER_SCRIPT, **{f"empty/{i}.txt": "" for i in range(100_001)}}
    if bundle is not None:
        key = f"{unique('hostile-code')}/sourcedir.tar.gz"
        s3.put_object(Bucket=BUCKET, Key=key, Body=source_bundle(bundle))
        code = f"s3://{BUCKET}/{key}"
    name = unique("script-bad")
    sm.create_training_job(**script_job(name, blobs, code, program, **hyperparameters))
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Failed" and reason in job["FailureReason"], job.get("FailureReason")
