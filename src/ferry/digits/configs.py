"""The SageMaker requests of the digits pipeline, shared by both backends.

The seed's configuration, fixed: its endpoint config named the model ``mnistclassifier`` while
the model was created as ``mnistclassifier-<timestamp>``, and its model had no container or
artifact. Here the model, endpoint config and endpoint all follow the training job's name and
its artifact. Names come from the DAG run (``run_after``: every Airflow 3 run has one, manual
runs have no logical date), so a rerun of a run addresses the same resources.
"""

from __future__ import annotations

from typing import Any

ENDPOINT_NAME = "mnistclassifier"
#: SageMaker's built-in KMeans image in eu-west-1 (the seed's); the local backend ignores it.
KMEANS_IMAGE = "438346466558.dkr.ecr.eu-west-1.amazonaws.com/kmeans:1"
#: A SageMaker execution role; on AWS set the Airflow Variable ferry_sagemaker_role_arn.
ROLE_ARN = "{{ var.value.get('ferry_sagemaker_role_arn', 'arn:aws:iam::000000000000:role/ferry-sagemaker') }}"
JOB_NAME = "mnistclassifier-{{ dag_run.run_after.strftime('%Y%m%d-%H%M%S') }}"
#: The job that actually ran (SageMakerTrainingOperator may add a suffix when the name is taken).
TRAINED_JOB = "{{ ti.xcom_pull(task_ids='sagemaker_train_model')['Training']['TrainingJobName'] }}"
MODEL_DATA = "{{ ti.xcom_pull(task_ids='sagemaker_train_model')['Training']['ModelArtifacts']['S3ModelArtifacts'] }}"


def training_config(bucket: str, hyperparameters: dict[str, str]) -> dict[str, Any]:
    """CreateTrainingJob: the train set's RecordIO under s3://bucket/mnist_data, output beside it."""
    return {
        "TrainingJobName": JOB_NAME,
        "AlgorithmSpecification": {"TrainingImage": KMEANS_IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": hyperparameters,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{bucket}/mnist_data",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/mnistclassifier-output"},
        "ResourceConfig": {"InstanceType": "ml.c4.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "RoleArn": ROLE_ARN,
        "StoppingCondition": {"MaxRuntimeInSeconds": 24 * 60 * 60},
    }


def endpoint_config() -> dict[str, Any]:
    """CreateModel + CreateEndpointConfig + CreateEndpoint for the trained job's artifact."""
    return {
        "Model": {
            "ModelName": TRAINED_JOB,
            "PrimaryContainer": {"Image": KMEANS_IMAGE, "ModelDataUrl": MODEL_DATA},
            "ExecutionRoleArn": ROLE_ARN,
        },
        "EndpointConfig": {
            "EndpointConfigName": TRAINED_JOB,
            "ProductionVariants": [
                {
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.t2.medium",
                    "ModelName": TRAINED_JOB,  # the seed's bug: it named "mnistclassifier" here
                    "VariantName": "AllTraffic",
                }
            ],
        },
        "Endpoint": {"EndpointConfigName": TRAINED_JOB, "EndpointName": ENDPOINT_NAME},
    }


def model_data_url(config: dict[str, Any]) -> str:
    """The artifact an endpoint request serves: Endpoint → EndpointConfig → Model → ModelDataUrl."""
    endpoint, endpoint_cfg, model = config["Endpoint"], config["EndpointConfig"], config["Model"]
    if endpoint["EndpointConfigName"] != endpoint_cfg["EndpointConfigName"]:
        raise ValueError("the endpoint names an endpoint config this request does not create")
    variant_models = {v["ModelName"] for v in endpoint_cfg["ProductionVariants"]}
    if model["ModelName"] not in variant_models:
        raise ValueError(f"the endpoint config serves {sorted(variant_models)}, "
                         f"but the model created is {model['ModelName']!r}")
    return model["PrimaryContainer"]["ModelDataUrl"]
