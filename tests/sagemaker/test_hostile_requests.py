"""Hostile and odd requests to the local SageMaker's pieces, called directly (no server): each
must get AWS's 4xx (ValidationException, a ClientError for the job), never a 500, a write
outside its directory, or a job failed that was not."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from sagemaker_training import encoders

from ferry.sagemaker import identity
from ferry.sagemaker.algorithms import AlgorithmError
from ferry.sagemaker.control_plane import ApiError, ControlPlane, validation
from ferry.sagemaker.listing import list_page
from ferry.sagemaker.script_mode import default_output_fn, training_environment
from ferry.sagemaker.store import Store
from ferry.sagemaker.worker import KIND, now

ITEMS = [{"ModelName": "a", "CreationTime": 1.0}, {"ModelName": "b", "CreationTime": 2.0}]


@pytest.mark.parametrize("request_", [
    {"SortBy": ["Name"]}, {"SortBy": {"x": 1}}, {"SortOrder": ["Ascending"]}, {"MaxResults": "10"},
    {"MaxResults": True}, {"NextToken": base64.urlsafe_b64encode(b"[" * 100_000).decode()},
    {"NextToken": "x" * 9000}, {"NextToken": 12},
])
def test_list_parameters_of_the_wrong_shape_are_validation_errors(request_):
    with pytest.raises(ApiError) as refused:
        list_page(list(ITEMS), request_, "Models", name="ModelName", validation=validation)
    assert refused.value.code == "ValidationException"


def test_absurd_timestamps_filter_nothing_out_rather_than_crash():
    page = list_page(list(ITEMS), {"CreationTimeAfter": 10**400, "CreationTimeBefore": "not a time"}, "Models",
                     name="ModelName", validation=validation)
    assert len(page["Models"]) == 2


def plane(tmp_path: Path) -> ControlPlane:
    return ControlPlane(Store(tmp_path / "state.sqlite"), access_key_id="k", secret_access_key="s",
                        runtime_url="http://127.0.0.1:9", region="eu-west-1", worker_env={})


def test_a_job_being_started_is_not_taken_for_an_orphan(tmp_path):
    control = plane(tmp_path)
    control.store.insert(KIND, "new", {"TrainingJobName": "new", "TrainingJobStatus": "InProgress",
                                       "CreationTime": now()})  # no worker pid yet
    control.fail_orphaned_jobs("orphaned")
    assert control.store.get(KIND, "new")["TrainingJobStatus"] == "InProgress"
    control.store.insert(KIND, "lost", {"TrainingJobName": "lost", "TrainingJobStatus": "InProgress",
                                        "CreationTime": now() - 3600})  # recorded, never started
    control.fail_orphaned_jobs("orphaned")
    assert control.store.get(KIND, "lost")["TrainingJobStatus"] == "Failed"


@pytest.mark.parametrize("channels", [
    [{"ChannelName": "../../../escaped"}], [{"ChannelName": ".."}], [{"ChannelName": "a/b"}], [{"ChannelName": ""}],
    [{"ChannelName": "train"}, {"ChannelName": "train"}], [{"ChannelName": None}], [{"ChannelName": "x" * 65}],
])
def test_channel_names_that_are_not_folder_names_are_refused(tmp_path, channels):
    source = {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/p"}}
    request = {"TrainingJobName": "j", "AlgorithmSpecification": {"TrainingImage": "x", "TrainingInputMode": "File"},
               "RoleArn": "r", "OutputDataConfig": {"S3OutputPath": "s3://b/o"}, "ResourceConfig": {},
               "StoppingCondition": {}, "InputDataConfig": [{**c, "DataSource": source} for c in channels]}
    with pytest.raises(ApiError) as refused:
        plane(tmp_path).sm_CreateTrainingJob(request)
    assert refused.value.code == "ValidationException"


@pytest.mark.parametrize("field", [{"AlgorithmSpecification": "x"}, {"HyperParameters": ["a"]},
                                   {"OutputDataConfig": "s3://b/o"}, {"OutputDataConfig": {"S3OutputPath": 1}},
                                   {"AlgorithmSpecification": {"TrainingImage": "x", "ContainerEntrypoint": "sh"}},
                                   {"AlgorithmSpecification": {"TrainingImage": "x", "ContainerEntrypoint": [1]}},
                                   {"AlgorithmSpecification": {"TrainingImage": "x", "ContainerArguments": ["a"*300]}},
                                   {"OutputDataConfig": {"S3OutputPath": "s3://b/o", "KmsKeyId": ["k"]}},
                                   {"InputDataConfig": [{"ChannelName": "t", "DataSource": [1]}]}])
def test_fields_of_the_wrong_type_are_validation_errors(tmp_path, field):
    request = {"TrainingJobName": "j", "AlgorithmSpecification": {"TrainingImage": "x"}, "RoleArn": "r",
               "OutputDataConfig": {"S3OutputPath": "s3://b/o"}, "ResourceConfig": {}, "StoppingCondition": {},
               **field}
    with pytest.raises(ApiError) as refused:
        plane(tmp_path).sm_CreateTrainingJob(request)
    assert refused.value.code == "ValidationException"


def test_two_keys_for_one_file_fail_the_job(tmp_path):
    from ferry.sagemaker.worker import download_prefix

    class Listing:
        def get_paginator(self, name):
            return self

        def paginate(self, **kwargs):
            return [{"Contents": [{"Key": "p/a"}, {"Key": "p//a"}]}]

        def download_file(self, bucket, key, path):
            Path(path).write_text(key)

    with pytest.raises(AlgorithmError, match="lands on the same file"):
        download_prefix(Listing(), "b", "p/", tmp_path)


def test_iam_role_names_outside_iams_pattern_get_a_well_formed_xml_error():
    with pytest.raises(identity.QueryError) as refused:
        identity.answer("iam", {"Action": "GetRole", "RoleName": "a\x01b\ufffe"}, "key")
    assert refused.value.code == "ValidationError"
    body = identity.error("iam", identity.QueryError(400, "X", "bad \x01 char \ufffe"))
    assert ElementTree.fromstring(body).find(".//{*}Code").text == "X"


@pytest.mark.parametrize("prediction", [{"labels": np.array([1, 2])}, [np.int64(3)], np.float32(0.5)])
def test_the_default_json_output_takes_numpy_values_anywhere_as_the_toolkit(prediction):
    body, _ = default_output_fn(prediction, "application/json")
    assert json.loads(body) == json.loads(encoders.array_to_json(prediction))


def test_the_module_name_of_a_script_in_a_folder_is_the_toolkits(tmp_path):
    assert training_environment(tmp_path, [], {}, "sub/train.py", "j")["SM_MODULE_NAME"] == "sub/train"


def test_names_differing_only_in_case_are_one_name(tmp_path):
    """SageMaker's names are case-insensitive (one ARN, lowercased): "Model1" then "model1" is
    a second create of one model. The model keeps the case it was created with."""
    control = plane(tmp_path)
    container = {"Image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kmeans:1"}
    arn = control.sm_CreateModel({"ModelName": "Model1", "PrimaryContainer": container})["ModelArn"]
    with pytest.raises(ApiError) as refused:
        control.sm_CreateModel({"ModelName": "model1", "PrimaryContainer": container})
    assert refused.value.code == "ValidationException" and "already existing" in refused.value.message
    described = control.sm_DescribeModel({"ModelName": "MODEL1"})
    assert (described["ModelName"], described["ModelArn"]) == ("Model1", arn)
    control.sm_DeleteModel({"ModelName": "mODEL1"})
    assert control.sm_ListModels({})["Models"] == []


def test_a_store_written_with_case_sensitive_names_is_read_case_insensitively(tmp_path):
    import sqlite3

    Store(tmp_path / "old.sqlite")  # the schema
    with sqlite3.connect(tmp_path / "old.sqlite") as conn:  # a row as an older ferry wrote it
        conn.execute("INSERT INTO resources VALUES ('Model', 'Model1', '{\"ModelName\": \"Model1\"}', 0)")
    assert Store(tmp_path / "old.sqlite").get("Model", "model1") == {"ModelName": "Model1"}


@pytest.mark.parametrize(("content_type", "columns"), [("text/csv", 3), ("text/csv;label_size=1", 3),
                                                        ("text/csv; label_size=0", 4)])
def test_training_csv_has_its_label_first_unless_label_size_is_0(tmp_path, content_type, columns):
    from ferry.sagemaker.algorithms import read_channel

    (tmp_path / "part.csv").write_text("1,2,3,4\n0,5,6,7\n")
    features, labels = read_channel([tmp_path / "part.csv"], content_type)
    assert features.shape == (2, columns) and (labels is None) == (columns == 4)


@pytest.mark.parametrize("content_type", ["text/csv;label_size=2", "text/csv;label_size=x"])
def test_training_csv_label_sizes_not_read_are_refused(tmp_path, content_type):
    from ferry.sagemaker.algorithms import read_channel

    (tmp_path / "part.csv").write_text("1,2,3,4\n")
    with pytest.raises(AlgorithmError):
        read_channel([tmp_path / "part.csv"], content_type)


@pytest.mark.parametrize(("value", "accepted"), [("True", True), ("False", True), ("maybe", False)])
def test_kmeans_takes_the_sdks_force_dense(value, accepted):
    """The SDK's KMeans always sends force_dense=True, which AWS's table does not list."""
    from ferry.sagemaker.algorithms import KMEANS_HYPERPARAMETERS, parse_hyperparameters

    given = {"k": "2", "feature_dim": "3", "force_dense": value}
    if accepted:
        assert parse_hyperparameters(KMEANS_HYPERPARAMETERS, given, "kmeans")["force_dense"] == value
    else:
        with pytest.raises(AlgorithmError):
            parse_hyperparameters(KMEANS_HYPERPARAMETERS, given, "kmeans")


def test_an_endpoint_deleted_by_another_case_is_removed_from_the_server_by_its_own(tmp_path):
    """The endpoint server serves the name as created (InvokeEndpoint is case-sensitive on AWS):
    DeleteEndpoint("myep") must remove "MyEp" there. The endpoint server is replaced by a
    recorder of the calls the control plane makes to it (no server in this test)."""
    import asyncio

    control = plane(tmp_path)
    calls = []
    control._runtime = lambda method, name, payload, missing_ok=False: calls.append((method, name))
    container = {"Image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kmeans:1", "ModelDataUrl": "s3://b/m.tar.gz"}

    async def scenario():
        control.sm_CreateModel({"ModelName": "m", "PrimaryContainer": container})
        control.sm_CreateEndpointConfig({"EndpointConfigName": "c", "ProductionVariants": [
            {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]})
        control.sm_CreateEndpoint({"EndpointName": "MyEp", "EndpointConfigName": "c"})
        await asyncio.gather(*control.pending)
        await control.sm_DeleteEndpoint({"EndpointName": "myep"})

    asyncio.run(scenario())
    assert calls == [("PUT", "MyEp"), ("DELETE", "MyEp")]
    assert control.sm_ListEndpoints({})["Endpoints"] == []


@pytest.mark.parametrize(("params", "code"), [
    ({}, "ValidationError"),
    ({"PolicySourceArn": identity.ROLE_ARN}, "ValidationError"),  # no ActionNames
    ({"PolicySourceArn": "arn:aws:iam::000000000000:role/x", "ActionNames.member.1": "s3:*"}, "NoSuchEntity"),
    ({"PolicySourceArn": identity.ROLE_ARN, **{f"ActionNames.member.{i}": "a" for i in range(1, 40)},
      **{f"ResourceArns.member.{i}": "r" for i in range(1, 40)}}, "InvalidInput"),
])
def test_simulate_principal_policy_refuses_what_iam_refuses(params, code):
    with pytest.raises(identity.QueryError) as refused:
        identity.answer("iam", {"Action": "SimulatePrincipalPolicy", **params}, "k")
    assert refused.value.code == code


def test_simulated_action_names_cannot_break_the_xml():
    body = identity.answer("iam", {"Action": "SimulatePrincipalPolicy", "PolicySourceArn": identity.ROLE_ARN,
                                   "ActionNames.member.2": "b</x>", "ActionNames.member.1": "a\x00&"}, "k")
    names = [e.text for e in ElementTree.fromstring(body).iter("{https://iam.amazonaws.com/doc/2010-05-08/}"
                                                                 "EvalActionName")]
    assert names == ["a?&", "b</x>"]  # in member order; a character XML cannot carry becomes ?


def test_a_job_directory_has_sagemakers_config_files(tmp_path):
    from ferry.sagemaker.script_mode import make_job_directories

    job = {"AlgorithmSpecification": {"TrainingInputMode": "File"}, "HyperParameters": {"C": "0.5"},
           "ResourceConfig": {"InstanceType": "ml.c5.xlarge"},
           "InputDataConfig": [{"ChannelName": "train", "ContentType": "text/csv",
                                "DataSource": {"S3DataSource": {"S3Uri": "s3://b/p"}}}]}
    make_job_directories(tmp_path, job, ["train"])
    config = tmp_path / "input" / "config"
    assert json.loads((config / "hyperparameters.json").read_text()) == {"C": "0.5"}
    assert json.loads((config / "inputdataconfig.json").read_text()) == {"train": {
        "TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None",
        "ContentType": "text/csv"}}
    resources = json.loads((config / "resourceconfig.json").read_text())
    assert resources["current_host"] == "algo-1" and resources["current_instance_type"] == "ml.c5.xlarge"
    assert (tmp_path / "model").is_dir() and (tmp_path / "output" / "data").is_dir()
