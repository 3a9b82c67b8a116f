"""The seed's handwritten-digit classifier (section 1): S3 → RecordIO-protobuf → train → endpoint.

Two DAGs, one per backend, with the same steps and requests:

- ``digits_classifier`` (local, the default): training runs on this machine under SageMaker's
  training contract and the model goes live on ferry's endpoint server, which the Chalice API
  (``ferry stack up`` starts both) calls. Param ``algorithm``: ``kmeans`` (the seed's) or
  ``svm`` (supervised, accurate).
- ``digits_classifier_sagemaker``: the amazon provider's SageMaker operators with the seed's
  configuration (its model-name bug fixed). Point ``aws_default`` at AWS, set the Variable
  ``ferry_sagemaker_role_arn`` and the bucket below; locally it runs against moto's control
  plane, which records the jobs but trains and serves nothing.
"""

from __future__ import annotations

import pendulum
from airflow.providers.amazon.aws.operators.s3 import S3CopyObjectOperator
from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator
from airflow.sdk import Param, dag, task

from ferry.digits.configs import endpoint_config, training_config
from ferry.digits.operators import LocalEndpointOperator, LocalTrainingOperator, ReusingSageMakerEndpointOperator

BUCKET = "ferry-digits"
SAMPLE_BUCKET = "sagemaker-sample-data-eu-west-1"


def copy_and_convert():
    download_mnist_data = S3CopyObjectOperator(
        task_id="download_mnist_data",
        source_bucket_name=SAMPLE_BUCKET,
        source_bucket_key="algorithms/kmeans/mnist/mnist.pkl.gz",
        dest_bucket_name=BUCKET,
        dest_bucket_key="mnist.pkl.gz",
    )

    @task
    def extract_mnist_data() -> dict:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from ferry.digits.convert import mnist_to_recordio

        return mnist_to_recordio(S3Hook(aws_conn_id="aws_default").get_conn(), BUCKET, "mnist.pkl.gz", "mnist_data")

    return download_mnist_data >> extract_mnist_data()


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"algorithm": Param("kmeans", enum=["kmeans", "svm"], description="kmeans (the seed's) or svm")},
    tags=["ferry", "seed", "digits"],
)
def digits_classifier():
    sagemaker_train_model = LocalTrainingOperator(
        task_id="sagemaker_train_model",
        config=training_config(BUCKET, {"k": "10", "feature_dim": "784", "algorithm": "{{ params.algorithm }}"}),
    )
    sagemaker_deploy_model = LocalEndpointOperator(task_id="sagemaker_deploy_model", config=endpoint_config())

    @task
    def evaluate_model() -> dict:
        """Accuracy of the live endpoint on the held-out test split, through sagemaker-runtime."""
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from ferry.digits.evaluate import endpoint_accuracy

        return endpoint_accuracy(
            S3Hook(aws_conn_id="aws_default").get_conn(),
            AwsBaseHook(aws_conn_id="aws_default", client_type="sagemaker-runtime").get_conn(),
            BUCKET,
        )

    copy_and_convert() >> sagemaker_train_model >> sagemaker_deploy_model >> evaluate_model()


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["ferry", "seed", "digits", "sagemaker"])
def digits_classifier_sagemaker():
    sagemaker_train_model = SageMakerTrainingOperator(
        task_id="sagemaker_train_model",
        config=training_config(BUCKET, {"k": "10", "feature_dim": "784"}),
        wait_for_completion=True,
        print_log=True,
        check_interval=10,
    )
    sagemaker_deploy_model = ReusingSageMakerEndpointOperator(
        task_id="sagemaker_deploy_model", config=endpoint_config(), wait_for_completion=True, check_interval=10)
    copy_and_convert() >> sagemaker_train_model >> sagemaker_deploy_model


digits_classifier()
digits_classifier_sagemaker()
