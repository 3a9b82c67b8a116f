"""The SageMaker requests of the digits pipeline, for each model it can train.

Models (the DAG's ``model`` param):

- ``sklearn`` (the default): ferry's accurate classifier (sagemaker_code/classifier.py) in
  script mode on SageMaker's scikit-learn image, code from ``sagemaker_submit_directory``, with
  a second channel ``synthetic`` of printed digits (ferry.digits.synthetic);
- ``kmeans``: the seed's built-in k-means, ``k=10``; it answers clusters, which the DAG maps to
  digits (ferry.digits.cluster_map);
- ``knn``: the built-in k-NN classifier over the 4,000 training digits.

The seed's configuration, fixed: its endpoint config named the model ``mnistclassifier`` while
the model was created as ``mnistclassifier-<timestamp>``, and its model had no container or
artifact. Here the model and endpoint config are named after the training job that made the
artifact, and the endpoint is ``mnistclassifier``.

Image URIs are SageMaker's registry entries for the connection's region (the SageMaker SDK's
``image_uris.retrieve`` gives the same); the local control plane knows them by name.
"""

from __future__ import annotations

from typing import Any

from ferry.digits.code_bundle import PROGRAM

ENDPOINT_NAME = "mnistclassifier"
MODELS = ("sklearn", "kmeans", "knn")
SKLEARN_VERSION = "1.2-1"
#: Account of each region's registry (SageMaker SDK, image_uri_config/kmeans.json and sklearn.json).
BUILTIN_ACCOUNTS = {"eu-west-1": "438346466558", "eu-west-2": "644912444149", "eu-central-1": "664544806723",
                    "us-east-1": "382416733822", "us-east-2": "404615174143", "us-west-2": "174872318107",
                    "ap-northeast-1": "351501993468"}
SKLEARN_ACCOUNTS = {"eu-west-1": "141502667606", "eu-west-2": "764974769150", "eu-central-1": "492215442770",
                    "us-east-1": "683313688378", "us-east-2": "257758044811", "us-west-2": "246618743249",
                    "ap-northeast-1": "354813040037"}
#: The script prints ``train:accuracy=0.99``; SageMaker turns it into a metric with this regex.
METRIC_DEFINITIONS = [{"Name": "train:accuracy", "Regex": r"train:accuracy=([0-9.]+)"}]


def image_uri(model: str, region: str) -> str:
    accounts = SKLEARN_ACCOUNTS if model == "sklearn" else BUILTIN_ACCOUNTS
    if region not in accounts:
        raise ValueError(f"no SageMaker image registry known here for region {region!r}; "
                         f"known: {', '.join(sorted(accounts))}")
    name = f"sagemaker-scikit-learn:{SKLEARN_VERSION}-cpu-py3" if model == "sklearn" else f"{model}:1"
    return f"{accounts[region]}.dkr.ecr.{region}.amazonaws.com/{name}"


def hyperparameters(model: str, code_uri: str) -> dict[str, str]:
    """Strings only, as SageMaker requires; each algorithm's own names."""
    if model == "kmeans":
        return {"k": "10", "feature_dim": "784"}
    if model == "knn":
        return {"k": "3", "feature_dim": "784", "predictor_type": "classifier", "sample_size": "4000"}
    if model == "sklearn":
        return {"sagemaker_program": PROGRAM, "sagemaker_submit_directory": code_uri, "c": "5", "pca": "40"}
    raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")


def channel(name: str, uri: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "ContentType": "application/x-recordio-protobuf",
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                        "S3DataDistributionType": "FullyReplicated"}},
    }


def training_request(model: str, *, bucket: str, code_uri: str, job_name: str, region: str,
                     role_arn: str) -> dict[str, Any]:
    """CreateTrainingJob: the train set's RecordIO under s3://bucket/mnist_data, output beside it."""
    algorithm = {"TrainingImage": image_uri(model, region), "TrainingInputMode": "File"}
    channels = [channel("train", f"s3://{bucket}/mnist_data")]
    if model == "sklearn":
        algorithm["MetricDefinitions"] = METRIC_DEFINITIONS
        channels.append(channel("synthetic", f"s3://{bucket}/synthetic_digits"))
    return {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": algorithm,
        "HyperParameters": hyperparameters(model, code_uri),
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/mnistclassifier-output"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "RoleArn": role_arn,
        "StoppingCondition": {"MaxRuntimeInSeconds": 60 * 60},
    }


def endpoint_request(training: dict[str, Any]) -> dict[str, Any]:
    """CreateModel + CreateEndpointConfig + CreateEndpoint for a finished job (DescribeTrainingJob's answer)."""
    name = training["TrainingJobName"]
    image = training["AlgorithmSpecification"]["TrainingImage"]
    container: dict[str, Any] = {"Image": image, "ModelDataUrl": training["ModelArtifacts"]["S3ModelArtifacts"]}
    if "sagemaker-scikit-learn" in image:
        # The script copied itself into the model (code/): serve from there, as the SageMaker SDK
        # does for a repacked model.
        container["Environment"] = {"SAGEMAKER_PROGRAM": PROGRAM, "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                                    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"}
    return {
        "Model": {"ModelName": name, "PrimaryContainer": container, "ExecutionRoleArn": training["RoleArn"]},
        "EndpointConfig": {
            "EndpointConfigName": name,
            "ProductionVariants": [
                {"InitialInstanceCount": 1, "InstanceType": "ml.m5.large", "ModelName": name,
                 "VariantName": "AllTraffic"}  # the seed's bug: it named "mnistclassifier" here
            ],
        },
        "Endpoint": {"EndpointConfigName": name, "EndpointName": ENDPOINT_NAME},
    }
